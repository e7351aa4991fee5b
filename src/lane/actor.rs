//! The lane actor: owns one lane's scanners and session, feeds every event through the pure
//! `session::step`, and carries the effects out through the lane's pipeline.
//!
//! What must stay true: every state change happens in a synchronous handler via `step`; network
//! and disk work runs on the pipeline and comes back as `CallAnswered`. When the actor stops for
//! any reason (a panic included) its `DeathNotice` tells the supervisor at once.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::effects::EffectDeps;
use super::handle::{CommandError, LaneCommand, LaneHandle};
use super::messages::{
    CallAnswered, InjectPanic, InjectScan, ScannerChanged, StoreChanged, VippsSignal,
};
use super::pipeline::{Work, spawn_pipeline};
use super::view::{
    CashierMessage, CustomerView, Ending, LaneEventKind, LaneSnapshot, PaymentView, ScannerView,
    SessionView,
};
use crate::config::{ScannerSettings, ScannerSource};
use crate::domain::LaneId;
use crate::metrics as m;
use crate::scanner::{SCAN_CHANNEL_CAPACITY, ScanKind, ScanReceived, ScannerHandle};
use crate::session::{
    self, Disposition, Effect, Event, Fact, Outcome, Session, SessionConfig, SessionId,
    TerminalEvent, Transition,
};

/// Sent to the supervisor when a lane actor is dropped.
#[derive(Debug)]
pub struct LaneDied {
    pub lane: LaneId,
    pub incarnation: u64,
    /// Why the incarnation ended; also the `reason` label of the restart counter.
    pub reason: m::RestartReason,
}

/// Dropped with the actor; tells the supervisor, even while unwinding from a panic.
pub struct DeathNotice {
    lane: LaneId,
    incarnation: u64,
    tx: mpsc::UnboundedSender<LaneDied>,
}

impl Drop for DeathNotice {
    fn drop(&mut self) {
        let reason = if std::thread::panicking() {
            m::RestartReason::Panic
        } else {
            m::RestartReason::Stopped
        };
        let _ = self.tx.send(LaneDied {
            lane: self.lane.clone(),
            incarnation: self.incarnation,
            reason,
        });
    }
}

/// Everything a lane incarnation is built from.
#[derive(Clone)]
pub struct LaneSpec {
    pub handle: LaneHandle,
    pub deps: EffectDeps,
    pub config: Arc<SessionConfig>,
    pub scanners: Vec<ScannerSettings>,
    /// True once the lane may take checkouts (in simulator mode: the demo members are in the
    /// club); the lane waits for it before it attaches.
    pub ready: tokio::sync::watch::Receiver<bool>,
}

pub struct LaneActor {
    spec: LaneSpec,
    session: Session,
    pipeline: Option<mpsc::Sender<Work>>,
    timer: Option<SpawnHandle>,
    scanners: Vec<ScannerHandle>,
    message: Option<CashierMessage>,
    /// The checkout that ended last, with its outcome, shown until the next one begins.
    last_session: Option<SessionView>,
    state_gauges: m::SessionStateGauges,
    _death: DeathNotice,
}

impl LaneActor {
    pub fn new(spec: LaneSpec, incarnation: u64, died: mpsc::UnboundedSender<LaneDied>) -> Self {
        let lane = spec.handle.id().clone();
        LaneActor {
            session: Session::new(lane.clone()),
            spec,
            pipeline: None,
            timer: None,
            scanners: vec![],
            message: None,
            last_session: None,
            state_gauges: m::SessionStateGauges::new(&lane),
            _death: DeathNotice {
                lane,
                incarnation,
                tx: died,
            },
        }
    }

    fn lane(&self) -> &LaneId {
        self.spec.handle.id()
    }

    /// Feeds one event through the state machine and carries out what it returns.
    fn feed(&mut self, event: Event, ctx: &mut Context<Self>) -> Disposition {
        let label = event.label();
        let t = session::step(&self.session, event, Instant::now(), &self.spec.config);
        if let Disposition::Invalid(invalid) = &t.disposition {
            tracing::warn!(lane = %self.lane(), event = label, ?invalid, "event has no transition in this state");
            m::session_invalid_transition(self.lane(), self.session.state_label());
        }
        self.apply(t, ctx)
    }

    fn apply(&mut self, t: Transition, ctx: &mut Context<Self>) -> Disposition {
        let before = self.session.snapshot();
        let message_before = self.message.clone();
        let mut ended = None;
        self.session = t.session;
        let after = self.session.snapshot();
        if after.session_id.is_some() && after.session_id != before.session_id {
            self.last_session = None;
        }
        if before.state != after.state {
            self.state_gauges.set(after.state);
        }
        // A read-back that only moves the payment's Vipps state (e.g. to CREATED) is news too.
        let mut changed = visible_change(&before, &after);
        for effect in t.effects {
            match effect {
                Effect::Persist { session, record } => {
                    // Drives the "payment stuck past its expiry" alert; PaymentFinished clears it.
                    if matches!(
                        record,
                        session::JournalRecord::PaymentRequested { attempt: 1, .. }
                    ) {
                        m::payment_pending(self.lane(), Some(std::time::SystemTime::now()));
                    }
                    self.work(Work::Persist { session, record })
                }
                Effect::NotifyTerminal(ev) => {
                    let message = cashier_message(&ev);
                    // A check-in result is a side note: it must not hide "member welcomed".
                    if matches!(ev, TerminalEvent::CheckIn { .. }) {
                        self.spec
                            .handle
                            .emit(LaneEventKind::CheckIn, Some(serde_json::json!(message)));
                    } else {
                        self.message = Some(message);
                        changed = true;
                    }
                }
                Effect::Record(fact) => self.record(fact),
                Effect::SessionEnded {
                    session,
                    outcome,
                    duration,
                } => {
                    self.ended(&outcome, duration);
                    self.last_session = self.session_view(&before, Some(outcome.label()));
                    changed = true;
                    let (durable, on_disk) = tokio::sync::oneshot::channel();
                    self.work(Work::Close {
                        session: session.clone(),
                        outcome: outcome.label(),
                        durable: Some(durable),
                    });
                    ended = Some((session, on_disk));
                }
                call => self.work(Work::Call(call)),
            }
        }
        // Only a payment's outcome is held: it is what the cashier hands over goods on, and what
        // a recovery could contradict. A checkout without one ends at once.
        if let Some((session, on_disk)) = ended.filter(|_| before.payment.is_some()) {
            self.hold_end(session, &before, message_before, on_disk, ctx);
        }
        self.schedule(ctx);
        if changed {
            self.publish(LaneEventKind::Changed, None);
        }
        t.disposition
    }

    /// Keeps the end of `session`'s payment from terminals until its journal records are on disk.
    fn hold_end(
        &mut self,
        session: SessionId,
        before: &session::Snapshot,
        shown_message: Option<CashierMessage>,
        on_disk: tokio::sync::oneshot::Receiver<()>,
        ctx: &mut Context<Self>,
    ) {
        let told_message = std::mem::replace(&mut self.message, shown_message);
        self.spec.handle.hold_end(Ending {
            session: session.as_str().to_owned(),
            state: before.state,
            view: self.session_view(before, None),
            told: self.last_session.take(),
            told_message,
        });
        ctx.spawn(
            async move { on_disk.await.is_ok() }
                .into_actor(self)
                .map(move |durable, act, _| act.tell_end(&session, durable)),
        );
    }

    /// Tells terminals how the held checkout ended, now that the journal holds it.
    fn tell_end(&mut self, session: &SessionId, durable: bool) {
        let Some(ending) = self.spec.handle.take_end(Some(session.as_str())) else {
            return;
        };
        if !durable {
            // Only a full pipeline or backlog loses a close (counted there); the cashier is
            // not left without an outcome for it.
            tracing::error!(lane = %self.lane(), %session, "the end of a checkout was not saved; told anyway");
        }
        self.last_session = ending.told;
        self.message = ending.told_message;
        self.publish(LaneEventKind::Changed, None);
    }

    fn work(&mut self, work: Work) {
        let Some(pipeline) = &self.pipeline else {
            tracing::error!(lane = %self.lane(), "effect pipeline missing");
            return;
        };
        // A full pipeline means the store is stuck; failing loudly beats losing ordering.
        if let Err(e) = pipeline.try_send(work) {
            tracing::error!(lane = %self.lane(), error = %e, "effect pipeline full or closed");
            m::queue_dropped(m::Queue::LanePipeline);
        }
    }

    /// One timer, at the session's next deadline.
    fn schedule(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        if let Some(at) = self.session.next_deadline() {
            let wait = at.saturating_duration_since(Instant::now());
            self.timer = Some(ctx.run_later(wait, |act, ctx| {
                act.timer = None;
                act.feed(Event::Tick, ctx);
            }));
        }
    }

    fn record(&mut self, fact: Fact) {
        let lane = self.spec.handle.id();
        match fact {
            Fact::MembershipChecked { result } => m::membership_checked(lane, result.label()),
            Fact::EnrollmentFinished { outcome } => m::enrollment_finished(lane, outcome.label()),
            Fact::PaymentFinished { outcome, captured } => {
                m::payment_finished(lane, outcome.label());
                if let Some(a) = captured {
                    m::amount_captured(a);
                }
            }
        }
    }

    fn ended(&self, outcome: &Outcome, duration: Duration) {
        m::session_finished(self.lane(), outcome.label(), duration);
        tracing::info!(lane = %self.lane(), outcome = outcome.label(), secs = duration.as_secs(), "session ended");
    }

    /// The view of the session in `s`; `outcome` is set once it has ended.
    fn session_view(&self, s: &session::Snapshot, outcome: Option<&str>) -> Option<SessionView> {
        s.session_id.as_ref().map(|id| SessionView {
            id: id.as_str().to_owned(),
            customer: s.customer.as_ref().map(|c| CustomerView {
                phone_number: c.masked(),
                member: s.membership.and_then(|m| m.is_member()),
            }),
            enrollment: s.enrollment.map(|e| e.label().to_owned()),
            payment: s.payment.as_ref().map(|p| PaymentView {
                reference: p.reference.to_string(),
                amount: p.amount,
                state: p.state.map_or("REQUESTED", |s| s.as_str()).to_owned(),
            }),
            outcome: outcome.map(str::to_owned),
        })
    }

    fn snapshot(&self) -> LaneSnapshot {
        let s = self.session.snapshot();
        let (state, session) = match self.spec.handle.held_view() {
            Some(held) if s.session_id.is_none() => held,
            _ => (s.state, self.session_view(&s, None)),
        };
        LaneSnapshot {
            lane: self.lane().clone(),
            up: true,
            state: state.to_owned(),
            session,
            last_session: self.last_session.clone(),
            message: self.message.clone(),
            scanners: self
                .scanners
                .iter()
                .map(|h| ScannerView {
                    role: format!("{:?}", h.role()).to_lowercase(),
                    source: format!("{:?}", h.source()).to_lowercase(),
                    state: h.state().as_str().to_owned(),
                })
                .collect(),
            terminal_connected: false,
        }
    }

    fn publish(&self, kind: LaneEventKind, data: Option<serde_json::Value>) {
        self.spec.handle.publish(self.snapshot(), kind, data);
    }

    /// A scan from any source: customer QR codes go to the session; product codes to the terminal.
    fn scan(&mut self, scan: ScanReceived, ctx: &mut Context<Self>) -> Result<(), CommandError> {
        m::scan_received(self.lane(), scan.kind.kind_label());
        match scan.kind {
            // Draining for shutdown: a customer QR would start a checkout.
            ScanKind::VippsQr(_) if self.spec.handle.is_draining() => {
                Err(CommandError::ShuttingDown)
            }
            // Nothing new starts while it could not be journalled.
            ScanKind::VippsQr(_) if !self.spec.deps.store.is_writable() => Err(store_unavailable()),
            // The last checkout's end is not on disk yet: it stays on screen until it is.
            ScanKind::VippsQr(_) if self.spec.handle.is_ending() => Err(CommandError::NotAllowed(
                "the last checkout is still being saved: scan again in a moment".into(),
            )),
            ScanKind::VippsQr(qr) => {
                let event = Event::CustomerQrScanned {
                    qr: qr.raw,
                    clear_text: qr.clear_text_msisdn,
                    session_id: SessionId::from_uuid(uuid::Uuid::new_v4()),
                };
                match self.feed(event, ctx) {
                    Disposition::Rejected(r) => Err(CommandError::NotAllowed(r.to_string())),
                    _ => Ok(()),
                }
            }
            ScanKind::Product(barcode) => {
                let data = serde_json::json!({"barcode": barcode.as_str(), "format": format!("{:?}", barcode.format()).to_lowercase()});
                self.spec.handle.emit(LaneEventKind::Scan, Some(data));
                Ok(())
            }
            ScanKind::Unknown => {
                tracing::info!(lane = %self.lane(), len = scan.scan.text.len(), "scan is neither a Vipps QR nor a product barcode");
                self.spec.handle.emit(
                    LaneEventKind::ScanRejected,
                    Some(serde_json::json!({"reason": "not a Vipps QR code or product barcode"})),
                );
                Err(CommandError::Invalid(
                    "not a Vipps QR code or a product barcode (EAN-13, EAN-8, UPC-A)".into(),
                ))
            }
        }
    }

    fn start_scanners(&mut self, ctx: &mut Context<Self>) {
        let (tx, rx) = mpsc::channel::<ScanReceived>(SCAN_CHANNEL_CAPACITY);
        for settings in &self.spec.scanners {
            if settings.source == ScannerSource::Terminal {
                continue;
            }
            match ScannerHandle::spawn(settings, tx.clone()) {
                Ok(h) => {
                    let mut states = h.subscribe();
                    let addr = ctx.address();
                    actix::spawn(async move {
                        while states.changed().await.is_ok() {
                            if addr.try_send(ScannerChanged).is_err() {
                                break;
                            }
                        }
                    });
                    self.scanners.push(h);
                }
                Err(e) => {
                    tracing::error!(lane = %self.lane(), error = %e, "scanner could not start")
                }
            }
        }
        ctx.add_stream(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|scan| (scan, rx))
        }));
    }
}

/// Why a new checkout, enrollment or payment is refused while the store cannot be written.
fn store_unavailable() -> CommandError {
    CommandError::StoreUnavailable(
        "lanehub cannot save to its database: take no new checkout until it can (see /readyz)"
            .into(),
    )
}

/// Whether a terminal would see the session differently; deadlines move on every poll and are
/// not shown, so they do not count.
fn visible_change(before: &session::Snapshot, after: &session::Snapshot) -> bool {
    let shown = |s: &session::Snapshot| {
        (
            s.state,
            s.session_id.clone(),
            s.customer.clone(),
            s.membership,
            s.payment.clone(),
        )
    };
    shown(before) != shown(after)
}

/// The cashier's message for a terminal event: a stable code and the session's sentence.
pub fn cashier_message(ev: &TerminalEvent) -> CashierMessage {
    CashierMessage {
        code: ev.code(),
        text: ev.message(),
    }
}

impl Actor for LaneActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(super::handle::MAILBOX_CAPACITY);
        self.pipeline = Some(spawn_pipeline(
            self.spec.deps.clone(),
            ctx.address().recipient(),
        ));
        self.start_scanners(ctx);
        self.follow_store(ctx);
        self.state_gauges.set(self.session.state_label());
        // Recovery must finish before any command is handled, so the actor waits for it.
        let store = self.spec.deps.store.clone();
        let lane = self.lane().clone();
        let mut ready = self.spec.ready.clone();
        ctx.wait(
            async move {
                // A closed channel means start-up gave up waiting: go on.
                let _ = ready.wait_for(|r| *r).await;
                store.open_sessions(&lane).await
            }
                .into_actor(self)
                .map(|result, act, ctx| {
                    match result {
                        Ok(open) => act.recover(open, ctx),
                        Err(e) => tracing::error!(lane = %act.lane(), error = %e, "could not read the journal; starting idle"),
                    }
                    act.spec.handle.attach(Some(ctx.address()));
                    act.publish(LaneEventKind::Snapshot, None);
                }),
        );
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        for s in &self.scanners {
            s.stop();
        }
    }
}

impl LaneActor {
    /// Feeds the store's writability to the session: a fault is told to the cashier, and what
    /// the session owes goes out the moment the store takes writes again.
    fn follow_store(&mut self, ctx: &mut Context<Self>) {
        let mut health = self.spec.deps.store.health();
        let addr = ctx.address();
        actix::spawn(async move {
            while health.changed().await.is_ok() {
                let now = health.borrow_and_update().clone();
                if addr.send(StoreChanged(now)).await.is_err() {
                    break;
                }
            }
        });
    }

    fn recover(&mut self, open: Vec<crate::store::SessionJournal>, ctx: &mut Context<Self>) {
        // A checkout is journalled with its customer, so one the previous incarnation showed
        // before it failed may have left no trace: nothing of it reached Vipps, and the terminal
        // is told it was interrupted rather than see it vanish.
        // One whose end the previous incarnation held is told as it ended once its end is on
        // disk (the writer finishes its queue after the actor is gone); while open it is
        // recovered below.
        let shown = self.spec.handle.snapshot().session;
        let held = self.spec.handle.take_end(None);
        let not_open =
            |v: &SessionView| v.outcome.is_none() && !open.iter().any(|j| j.session == v.id);
        if let Some(ending) = held.filter(|e| {
            shown
                .as_ref()
                .is_some_and(|v| v.id == e.session && not_open(v))
        }) {
            self.last_session = ending.told;
            self.message = ending.told_message;
        } else if let Some(mut view) = shown.filter(not_open) {
            tracing::info!(lane = %self.lane(), session = %view.id, "a checkout not yet journalled ended with the lane's failure");
            let ended = TerminalEvent::SessionEnded {
                outcome: Outcome::Interrupted,
                amount: None,
            };
            self.message = Some(cashier_message(&ended));
            view.outcome = Some(Outcome::Interrupted.label().to_owned());
            self.last_session = Some(view);
        }
        // Only the newest open session can be in flight; older ones were left by a crash between
        // ending and closing, and are closed here with the outcome they journalled.
        for journal in open {
            let Ok(session_id) = journal.session.parse::<SessionId>() else {
                tracing::error!(lane = %self.lane(), session = %journal.session, "journal session id unreadable; skipped");
                continue;
            };
            let records: Vec<session::JournalRecord> = journal
                .records
                .iter()
                .filter_map(|r| r.payload_as::<session::JournalRecord>().ok())
                .collect();
            // Ended, but lanehub stopped before the journal closed it: close it now, or every
            // later start would read it again.
            if let Some(outcome) = records.iter().find_map(|r| match r {
                session::JournalRecord::SessionEnded { outcome } => Some(outcome.label()),
                _ => None,
            }) {
                self.work(Work::Close {
                    session: session_id,
                    outcome,
                    durable: None,
                });
                continue;
            }
            let t = Session::recover(
                self.lane().clone(),
                session_id,
                &records,
                Instant::now(),
                &self.spec.config,
            );
            tracing::info!(lane = %self.lane(), state = t.session.state_label(), "session recovered from the journal");
            self.apply(t, ctx);
        }
    }
}

impl StreamHandler<ScanReceived> for LaneActor {
    fn handle(&mut self, scan: ScanReceived, ctx: &mut Context<Self>) {
        // Scanner input never harms the lane: a refused scan is only reported. Nobody answers a
        // scanner, so the terminal hears of it (an unreadable scan was announced already).
        if let Err(e) = self.scan(scan, ctx) {
            tracing::info!(lane = %self.lane(), error = %e, "scan refused");
            if !matches!(e, CommandError::Invalid(_)) {
                self.spec.handle.emit(
                    LaneEventKind::ScanRejected,
                    Some(serde_json::json!({"reason": e.to_string()})),
                );
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Context<Self>) {
        // The scanners' channel closes only when they all stopped; the lane itself goes on.
    }
}

impl Handler<LaneCommand> for LaneActor {
    type Result = Result<LaneSnapshot, CommandError>;

    fn handle(&mut self, cmd: LaneCommand, ctx: &mut Context<Self>) -> Self::Result {
        let disposition = match cmd {
            LaneCommand::Scan { text } => {
                let scan = ScanReceived::new(
                    crate::config::ScannerRole::Cashier,
                    ScannerSource::Terminal,
                    crate::scanner::Scan::from_text(text),
                    Instant::now(),
                );
                self.scan(scan, ctx)?;
                return Ok(self.snapshot());
            }
            LaneCommand::Enroll | LaneCommand::Pay(_) if self.spec.handle.is_draining() => {
                return Err(CommandError::ShuttingDown);
            }
            LaneCommand::Enroll | LaneCommand::Pay(_) if !self.spec.deps.store.is_writable() => {
                return Err(store_unavailable());
            }
            LaneCommand::Enroll => self.feed(Event::Enroll, ctx),
            LaneCommand::Pay(pay) => self.feed(Event::Pay(pay), ctx),
            LaneCommand::Cancel => self.feed(Event::Cancel, ctx),
            LaneCommand::Reset => self.feed(Event::Reset, ctx),
        };
        match disposition {
            Disposition::Rejected(r) => Err(CommandError::NotAllowed(r.to_string())),
            Disposition::Invalid(_) => Err(CommandError::NotAllowed(format!(
                "not possible while the lane is {}",
                self.session.state_label().replace('_', " ")
            ))),
            _ => Ok(self.snapshot()),
        }
    }
}

impl Handler<CallAnswered> for LaneActor {
    type Result = ();

    fn handle(&mut self, msg: CallAnswered, ctx: &mut Context<Self>) {
        // A Login the session no longer waits for (the cashier moved on while the call was in
        // flight) is still one Vipps asks the customer about: it goes to the enrollment
        // follower, not away. A token above all: Vipps hands it out once.
        let late = match &msg.0 {
            Event::LoginConsented {
                auth_req_id, token, ..
            } => Some((auth_req_id.clone(), Some(token.clone()))),
            Event::LoginStarted { auth_req_id, .. } => Some((auth_req_id.clone(), None)),
            _ => None,
        };
        let customer = late.as_ref().and_then(|_| self.session.snapshot().customer);
        let disposition = self.feed(msg.0, ctx);
        let Some((auth_req_id, token)) = late.filter(|_| disposition != Disposition::Applied)
        else {
            return;
        };
        let lane = self.lane().clone();
        let follower = &self.spec.deps.follower;
        let stored = match &token {
            Some(token) => futures_util::future::Either::Left(follower.consented_late(
                &lane,
                &auth_req_id,
                token,
            )),
            None => futures_util::future::Either::Right(follower.started_late(
                &lane,
                &auth_req_id,
                customer,
            )),
        };
        tracing::info!(lane = %lane, consented = token.is_some(), "a Login answer came after the session moved on; handed to the enrollment follower");
        actix::spawn(async move {
            if let Err(e) = stored.await {
                tracing::error!(lane = %lane, error = %e, "the late Login could not be handed over; the enrollment is lost");
            }
        });
    }
}

impl Handler<VippsSignal> for LaneActor {
    type Result = ();

    fn handle(&mut self, msg: VippsSignal, ctx: &mut Context<Self>) {
        self.feed(msg.0, ctx);
    }
}

impl Handler<StoreChanged> for LaneActor {
    type Result = ();

    fn handle(&mut self, StoreChanged(health): StoreChanged, ctx: &mut Context<Self>) {
        let event = if health.writable {
            Event::StoreWritable
        } else {
            Event::StoreFailed {
                detail: health.error.unwrap_or_default(),
            }
        };
        self.feed(event, ctx);
    }
}

impl Handler<ScannerChanged> for LaneActor {
    type Result = ();

    fn handle(&mut self, _: ScannerChanged, _ctx: &mut Context<Self>) {
        let connected = self
            .scanners
            .iter()
            .filter(|s| s.state() == crate::scanner::ScannerState::Enabled)
            .count();
        m::scanners_connected(self.lane(), connected);
        self.publish(LaneEventKind::Scanner, None);
    }
}

impl Handler<InjectScan> for LaneActor {
    type Result = bool;

    fn handle(&mut self, InjectScan(text): InjectScan, _ctx: &mut Context<Self>) -> bool {
        self.scanners
            .iter()
            .find(|s| s.source() == ScannerSource::Simulated)
            .is_some_and(|s| s.push(&text).is_ok())
    }
}

impl Handler<InjectPanic> for LaneActor {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _ctx: &mut Context<Self>) {
        panic!("lane {} panicked on request (test hook)", self.lane());
    }
}
