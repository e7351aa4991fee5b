//! The lane registry and the cheap handle callers use to reach a lane.
//!
//! A lane's slot outlives its actor: the snapshot channel, the event broadcast and the sequence
//! number stay when the supervisor rebuilds a crashed lane, so terminals keep their subscription.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use dashmap::DashMap;
use tokio::sync::{broadcast, watch};

use super::actor::LaneActor;
use super::messages::{InjectPanic, InjectScan, VippsSignal};
use super::view::{Ending, LaneEvent, LaneEventKind, LaneSnapshot, SessionView};
use crate::domain::LaneId;

/// How many events a slow WebSocket subscriber may lag before it must resync from a snapshot.
pub const EVENT_BUFFER: usize = 256;
/// Messages a lane's mailbox holds before senders wait (commands) or drop (signals).
pub const MAILBOX_CAPACITY: usize = 64;
/// How long a command may wait for the lane's answer.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(5);

/// What a terminal (or the scanner) asks a lane to do.
#[derive(Debug, Clone, actix::Message)]
#[rtype(result = "Result<LaneSnapshot, CommandError>")]
pub enum LaneCommand {
    /// A scan read by the terminal (or a simulated scanner).
    Scan {
        text: String,
    },
    Enroll,
    Pay(crate::session::PayRequest),
    Cancel,
    Reset,
}

impl LaneCommand {
    pub fn label(&self) -> &'static str {
        match self {
            LaneCommand::Scan { .. } => "scan",
            LaneCommand::Enroll => "enroll",
            LaneCommand::Pay(_) => "pay",
            LaneCommand::Cancel => "cancel",
            LaneCommand::Reset => "reset",
        }
    }
}

/// Why a lane refused or could not take a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// The session's state does not allow it; the text says why, for the cashier.
    #[error("{0}")]
    NotAllowed(String),
    /// The input is wrong (e.g. an unreadable scan); the text names what.
    #[error("{0}")]
    Invalid(String),
    #[error("lane {0} is down")]
    LaneDown(String),
    #[error("lane {0} did not answer in time")]
    Timeout(String),
    /// lanehub is draining for shutdown and starts nothing new.
    #[error("lanehub is shutting down")]
    ShuttingDown,
    /// The store cannot be written, so nothing new can be journalled.
    #[error("{0}")]
    StoreUnavailable(String),
}

impl CommandError {
    pub fn kind(&self) -> &'static str {
        match self {
            CommandError::NotAllowed(_) => "not_allowed",
            CommandError::Invalid(_) => "invalid",
            CommandError::LaneDown(_) => "lane_down",
            CommandError::Timeout(_) => "timeout",
            CommandError::ShuttingDown => "shutting_down",
            CommandError::StoreUnavailable(_) => "store_unavailable",
        }
    }
}

/// The state shared between a lane's actor (whichever incarnation) and its callers.
#[derive(Debug)]
pub struct LaneSlot {
    pub id: LaneId,
    snapshot: watch::Sender<LaneSnapshot>,
    /// Shared, so a lane's buffer of events costs a pointer per slot, not a snapshot, and each
    /// event is serialised once for all the lane's WebSockets (`LaneEvent::text`).
    events: broadcast::Sender<Arc<LaneEvent>>,
    /// The last event's sequence number. Held while numbering and sending an event, so events
    /// reach subscribers in `seq` order and a subscription starts exactly after a known `seq`.
    seq: Mutex<u64>,
    actor: Mutex<Option<Addr<LaneActor>>>,
    /// WebSockets open or being opened (what `api.max_websockets_per_lane` limits).
    sockets: AtomicUsize,
    /// WebSockets past their upgrade: what `terminal_connected` shows.
    terminals: AtomicUsize,
    terminal_events: Mutex<TerminalEvents>,
    up: AtomicBool,
    /// A checkout whose end is not durable yet; kept here so the next incarnation, after a
    /// failure, still knows what the last one was about to tell.
    ending: Mutex<Option<Ending>>,
    /// Set once lanehub drains for shutdown; every incarnation then refuses new checkouts.
    draining: AtomicBool,
}

/// A cheap, cloneable handle to one lane.
#[derive(Debug, Clone)]
pub struct LaneHandle(Arc<LaneSlot>);

impl LaneHandle {
    pub fn new(id: LaneId, initial: LaneSnapshot) -> Self {
        let (snapshot, _) = watch::channel(initial);
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        LaneHandle(Arc::new(LaneSlot {
            id,
            snapshot,
            events,
            seq: Mutex::new(0),
            actor: Mutex::new(None),
            sockets: AtomicUsize::new(0),
            terminals: AtomicUsize::new(0),
            terminal_events: Mutex::new(TerminalEvents::default()),
            up: AtomicBool::new(false),
            ending: Mutex::new(None),
            draining: AtomicBool::new(false),
        }))
    }

    pub fn id(&self) -> &LaneId {
        &self.0.id
    }

    /// The lane as it is now.
    pub fn snapshot(&self) -> LaneSnapshot {
        let mut s = self.0.snapshot.borrow().clone();
        s.up = self.0.up.load(Ordering::SeqCst);
        s.terminal_connected = self.0.terminals.load(Ordering::SeqCst) > 0;
        s
    }

    /// The current snapshot with its sequence number, and a receiver for every later event.
    pub fn subscribe(&self) -> (u64, LaneSnapshot, broadcast::Receiver<Arc<LaneEvent>>) {
        let seq = self
            .0
            .seq
            .lock()
            .expect("nothing panics while holding the seq lock");
        let rx = self.0.events.subscribe();
        (*seq, self.snapshot(), rx)
    }

    /// Sends a command to the lane's current actor and waits for its answer.
    pub async fn command(&self, cmd: LaneCommand) -> Result<LaneSnapshot, CommandError> {
        let actor = self
            .actor()
            .ok_or_else(|| CommandError::LaneDown(self.0.id.to_string()))?;
        match tokio::time::timeout(COMMAND_TIMEOUT, actor.send(cmd)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(CommandError::LaneDown(self.0.id.to_string())),
            Err(_) => Err(CommandError::Timeout(self.0.id.to_string())),
        }
    }

    /// Publishes a new snapshot and an event of `kind` to subscribers.
    pub fn publish(
        &self,
        snapshot: LaneSnapshot,
        kind: LaneEventKind,
        data: Option<serde_json::Value>,
    ) {
        self.0.snapshot.send_replace(snapshot);
        self.emit(kind, data);
    }

    /// Sends an event carrying the current snapshot.
    pub fn emit(&self, kind: LaneEventKind, data: Option<serde_json::Value>) {
        let mut seq = self
            .0
            .seq
            .lock()
            .expect("nothing panics while holding the seq lock");
        *seq += 1;
        // No subscribers is fine: the snapshot is kept for the next one.
        let event = LaneEvent::new(*seq, kind, self.snapshot(), data);
        let _ = self.0.events.send(Arc::new(event));
    }

    fn actor(&self) -> Option<Addr<LaneActor>> {
        self.0.actor.lock().expect("lane slot lock").clone()
    }

    /// Hands a webhook or login ping to the lane; false when the lane is down or its mailbox is
    /// full (polling then finds the change).
    pub fn signal(&self, event: crate::session::Event) -> bool {
        self.actor()
            .is_some_and(|a| a.try_send(VippsSignal(event)).is_ok())
    }

    /// Makes the lane's actor panic (test hook).
    pub fn inject_panic(&self) -> bool {
        self.actor()
            .is_some_and(|a| a.try_send(InjectPanic).is_ok())
    }

    /// Hands `text` to the lane's simulated scanner (test hook); false when the lane is down or
    /// has no simulated scanner.
    pub async fn inject_scan(&self, text: String) -> bool {
        match self.actor() {
            Some(actor) => actor.send(InjectScan(text)).await.unwrap_or(false),
            None => false,
        }
    }

    /// Attaches a (new) actor incarnation; `None` detaches it.
    pub fn attach(&self, actor: Option<Addr<LaneActor>>) {
        let up = actor.is_some();
        *self.0.actor.lock().expect("lane slot lock") = actor;
        self.0.up.store(up, Ordering::SeqCst);
        self.emit(
            if up {
                LaneEventKind::Up
            } else {
                LaneEventKind::Down
            },
            None,
        );
        crate::metrics::lane_up(&self.0.id, up);
    }

    /// The state and view of the checkout whose end waits for the disk, if any.
    pub fn held_view(&self) -> Option<(&'static str, Option<SessionView>)> {
        let held = self.0.ending.lock().expect("lane slot lock");
        held.as_ref().map(|e| (e.state, e.view.clone()))
    }

    pub fn is_ending(&self) -> bool {
        self.0.ending.lock().expect("lane slot lock").is_some()
    }

    /// Holds what the lane is about to tell of a checkout's end until it is durable.
    pub fn hold_end(&self, ending: Ending) {
        *self.0.ending.lock().expect("lane slot lock") = Some(ending);
    }

    /// Takes the held end of `session` (any when `None`).
    pub fn take_end(&self, session: Option<&str>) -> Option<Ending> {
        let mut held = self.0.ending.lock().expect("lane slot lock");
        if session.is_some_and(|s| held.as_ref().is_none_or(|e| e.session != s)) {
            return None;
        }
        held.take()
    }

    pub fn is_up(&self) -> bool {
        self.0.up.load(Ordering::SeqCst)
    }

    /// From now on the lane starts no new checkout, enrollment or payment (shutdown).
    pub fn set_draining(&self) {
        self.0.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.0.draining.load(Ordering::SeqCst)
    }

    /// Reserves one of the lane's `limit` WebSockets; `None` when all are taken.
    pub fn open_socket(&self, limit: usize) -> Option<TerminalSocket> {
        self.0
            .sockets
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        Some(TerminalSocket {
            lane: self.clone(),
            connected: false,
        })
    }

    /// Counts a terminal connecting or leaving. Only a change between none and some is an
    /// event, and at most one `terminal` event per `TERMINAL_EVENT_INTERVAL` goes out: a
    /// terminal that flaps yields one event per interval with the state at its end.
    fn terminal_connected(&self, connected: bool) {
        let n = if connected {
            self.0.terminals.fetch_add(1, Ordering::SeqCst) + 1
        } else {
            self.0
                .terminals
                .fetch_sub(1, Ordering::SeqCst)
                .saturating_sub(1)
        };
        crate::metrics::terminals_connected(&self.0.id, n);
        if n == usize::from(connected) {
            self.report_terminals();
        }
    }

    /// Emits a `terminal` event now, or schedules one for the end of the current interval.
    fn report_terminals(&self) {
        let mut report = self.0.terminal_events.lock().expect("terminal events lock");
        if report.pending {
            return;
        }
        let now = tokio::time::Instant::now();
        let due = report.last_at.map(|at| at + TERMINAL_EVENT_INTERVAL);
        match (due, tokio::runtime::Handle::try_current()) {
            (Some(due), Ok(runtime)) if now < due => {
                report.pending = true;
                let lane = self.clone();
                runtime.spawn(async move {
                    tokio::time::sleep_until(due).await;
                    let mut report = lane.0.terminal_events.lock().expect("terminal events lock");
                    report.pending = false;
                    lane.emit_terminals(&mut report);
                });
            }
            _ => self.emit_terminals(&mut report),
        }
    }

    /// Emits a `terminal` event if whether a terminal is connected differs from the last one.
    fn emit_terminals(&self, report: &mut TerminalEvents) {
        let connected = self.0.terminals.load(Ordering::SeqCst) > 0;
        if report.reported != connected {
            report.reported = connected;
            report.last_at = Some(tokio::time::Instant::now());
            self.emit(LaneEventKind::Terminal, None);
        }
    }
}

/// At most one `terminal` event per lane this often.
pub const TERMINAL_EVENT_INTERVAL: Duration = Duration::from_secs(1);

/// What the last `terminal` event said, and when.
#[derive(Debug, Default)]
struct TerminalEvents {
    reported: bool,
    last_at: Option<tokio::time::Instant>,
    /// An event is scheduled for the end of the interval.
    pending: bool,
}

/// One of a lane's WebSockets; dropping it frees its place and, once connected, counts the
/// terminal as gone.
#[derive(Debug)]
pub struct TerminalSocket {
    lane: LaneHandle,
    connected: bool,
}

impl TerminalSocket {
    /// The socket is open: the lane counts a terminal connected.
    pub fn connected(mut self) -> Self {
        self.connected = true;
        self.lane.terminal_connected(true);
        self
    }
}

impl Drop for TerminalSocket {
    fn drop(&mut self) {
        if self.connected {
            self.lane.terminal_connected(false);
        }
        self.lane.0.sockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Every lane, by id. Built from configuration at start.
#[derive(Debug, Default, Clone)]
pub struct Lanes(Arc<DashMap<LaneId, LaneHandle>>);

impl Lanes {
    pub fn insert(&self, handle: LaneHandle) {
        self.0.insert(handle.id().clone(), handle);
    }

    pub fn get(&self, id: &LaneId) -> Option<LaneHandle> {
        self.0.get(id).map(|h| h.clone())
    }

    /// All lanes, sorted by id.
    pub fn all(&self) -> Vec<LaneHandle> {
        let mut all: Vec<LaneHandle> = self.0.iter().map(|e| e.value().clone()).collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane() -> LaneHandle {
        let id: LaneId = "1".parse().expect("a valid lane id");
        let snapshot = LaneSnapshot::before_start(&id);
        LaneHandle::new(id, snapshot)
    }

    /// The `terminal` events received so far, as their `terminalConnected`.
    fn terminal_events(rx: &mut broadcast::Receiver<Arc<LaneEvent>>) -> Vec<bool> {
        let mut out = vec![];
        while let Ok(e) = rx.try_recv() {
            if e.kind == LaneEventKind::Terminal {
                out.push(e.snapshot.terminal_connected);
            }
        }
        out
    }

    #[test]
    fn a_lane_takes_at_most_its_limit_of_sockets() {
        let lane = lane();
        let first = lane.open_socket(2).expect("a first socket");
        let second = lane.open_socket(2).expect("a second socket");
        assert!(lane.open_socket(2).is_none());
        drop(first);
        let third = lane.open_socket(2).expect("a freed place is taken again");
        drop((second, third));
        assert_eq!(lane.0.sockets.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn an_event_is_serialised_once_for_all_its_subscribers() {
        let lane = lane();
        let (_, _, mut first) = lane.subscribe();
        let (_, _, mut second) = lane.subscribe();
        lane.emit(LaneEventKind::Changed, None);
        let (first, second) = (first.try_recv().unwrap(), second.try_recv().unwrap());
        let (a, b) = (first.text(), second.text());
        assert_eq!(a.as_ptr(), b.as_ptr(), "both sockets send the one text");
        let sent: serde_json::Value = serde_json::from_str(&a).unwrap();
        assert_eq!(sent, serde_json::to_value(&*first).unwrap());
        assert_eq!(
            (&sent["kind"], &sent["seq"]),
            (&"changed".into(), &1.into())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn terminal_events_are_coalesced() {
        let lane = lane();
        let (_, _, mut rx) = lane.subscribe();

        // The first terminal is reported at once; a second one is no news.
        let a = lane.open_socket(4).expect("a place").connected();
        let b = lane.open_socket(4).expect("a place").connected();
        assert_eq!(terminal_events(&mut rx), [true]);
        assert!(lane.snapshot().terminal_connected);
        drop(b);
        assert_eq!(terminal_events(&mut rx), Vec::<bool>::new());

        // A terminal flapping within the interval: nothing until its end, then one event
        // with the state at that time.
        drop(a);
        for _ in 0..10 {
            drop(lane.open_socket(4).expect("a place").connected());
        }
        assert!(!lane.snapshot().terminal_connected);
        assert_eq!(terminal_events(&mut rx), Vec::<bool>::new());
        tokio::time::advance(TERMINAL_EVENT_INTERVAL).await;
        tokio::task::yield_now().await;
        assert_eq!(terminal_events(&mut rx), [false]);

        // Flapping that ends where it started is no event at all.
        tokio::time::advance(TERMINAL_EVENT_INTERVAL).await;
        let c = lane.open_socket(4).expect("a place").connected();
        assert_eq!(terminal_events(&mut rx), [true]);
        drop(c);
        let _d = lane.open_socket(4).expect("a place").connected();
        tokio::time::advance(TERMINAL_EVENT_INTERVAL).await;
        tokio::task::yield_now().await;
        assert_eq!(terminal_events(&mut rx), Vec::<bool>::new());
    }
}
