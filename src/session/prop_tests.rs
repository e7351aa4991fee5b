//! Property tests: random scans, cashier commands, Vipps answers (duplicated, late, out of
//! order, or never), webhooks and ticks with advancing time never panic, keep every money
//! invariant, and always end the session once time runs past the deadlines.

use std::collections::HashMap;
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;

use super::*;
use crate::domain::{Amount, IdempotencyKey, LaneId, Msisdn, PaymentReference};

const QRS: [(&str, Option<&str>); 3] = [
    (
        "https://qr.vipps.no/28/2/01/031/4791234567?v=1",
        Some("4791234567"),
    ),
    (
        "https://qr.vipps.no/28/2/01/031/4798765432?v=1",
        Some("4798765432"),
    ),
    ("https://qr.vipps.no/p/token-of-a-finnish-customer", None),
];
const NUMBERS: [&str; 3] = ["4791234567", "4798765432", "358401234567"];

#[derive(Debug, Clone)]
enum Action {
    Qr(usize),
    Enroll,
    Pay {
        value: u64,
    },
    Cancel,
    Reset,
    /// Advance the clock, then tick.
    Wait {
        millis: u64,
    },
    /// Jump to the next deadline and tick, as the actor's timer would.
    TickAtDeadline,
    /// Answer the latest outstanding call (`None`) or any of them, in any order; `keep` leaves
    /// it outstanding so that it may be answered again.
    Answer {
        pick: Option<usize>,
        outcome: u8,
        keep: bool,
    },
    /// An answer of any kind to a call that was never made (odd `call`), or to an outstanding
    /// call (even `call`), often of the wrong kind.
    Stale {
        call: u64,
        outcome: u8,
    },
    Webhook {
        ours: bool,
    },
    LoginPing {
        ours: bool,
    },
}

/// One action from raw numbers: cheap to generate and to shrink (a tree of `prop_oneof!`
/// unions is slow to generate in debug builds). `pick` weighs the kinds of action.
fn action() -> impl Strategy<Value = Action> {
    (0u8..34, any::<u32>(), any::<u8>(), any::<u8>()).prop_map(|(pick, n, a, b)| match pick {
        0..=2 => Action::Qr(n as usize % QRS.len()),
        3..=5 => Action::Enroll,
        6..=8 => Action::Pay {
            value: match a % 4 {
                0 => 1,
                1 => 151,
                2 => 10_000,
                _ => 1 + u64::from(n) % 1_000_000,
            },
        },
        9 => Action::Cancel,
        10 => Action::Reset,
        11 | 12 => Action::Wait {
            millis: match a % 17 {
                0..=11 => u64::from(n) % 3_000,
                12..=15 => u64::from(n) % 120_000,
                _ => u64::from(n) % 1_200_000,
            },
        },
        13 | 14 => Action::TickAtDeadline,
        15..=30 => Action::Answer {
            pick: (a % 4 == 0).then_some(n as usize),
            // Half the time an answer that moves the flow forward (slots 0 to 5).
            outcome: if b % 2 == 0 {
                (b / 2 % 6) + (a / 16) * 16
            } else {
                a
            },
            keep: b % 7 == 1,
        },
        31 => Action::Stale {
            call: u64::from(n % 200),
            outcome: a,
        },
        32 => Action::Webhook { ours: a % 2 == 0 },
        _ => Action::LoginPing { ours: a % 2 == 0 },
    })
}

fn actions() -> impl Strategy<Value = Vec<Action>> {
    prop::collection::vec(action(), 0..150)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exchange,
    Lookup,
    CheckIn,
    StartLogin,
    PollLogin,
    Userinfo,
    Store,
    Create,
    Read,
    Capture,
    Cancel,
}

const KINDS: [Kind; 11] = [
    Kind::Exchange,
    Kind::Lookup,
    Kind::CheckIn,
    Kind::StartLogin,
    Kind::PollLogin,
    Kind::Userinfo,
    Kind::Store,
    Kind::Create,
    Kind::Read,
    Kind::Capture,
    Kind::Cancel,
];

fn call_kind(effect: &Effect) -> Option<(CallId, Kind)> {
    match effect {
        Effect::ExchangeQr { call, .. } => Some((*call, Kind::Exchange)),
        Effect::LookupMembership { call, .. } => Some((*call, Kind::Lookup)),
        Effect::SendCheckIn { call, .. } => Some((*call, Kind::CheckIn)),
        Effect::StartLogin { call, .. } => Some((*call, Kind::StartLogin)),
        Effect::PollLogin { call, .. } => Some((*call, Kind::PollLogin)),
        Effect::FetchUserinfo { call, .. } => Some((*call, Kind::Userinfo)),
        Effect::StoreMember { call, .. } => Some((*call, Kind::Store)),
        Effect::CreatePayment { call, .. } => Some((*call, Kind::Create)),
        Effect::ReadPayment { call, .. } => Some((*call, Kind::Read)),
        Effect::CapturePayment { call, .. } => Some((*call, Kind::Capture)),
        Effect::CancelPayment { call, .. } => Some((*call, Kind::Cancel)),
        Effect::Persist { .. }
        | Effect::NotifyTerminal(_)
        | Effect::Record(_)
        | Effect::SessionEnded { .. } => None,
    }
}

fn error(n: u8) -> CallError {
    match n % 3 {
        0 => CallError::Rejected {
            status: 400,
            detail: "refused".into(),
        },
        1 => CallError::Unknown {
            detail: "timeout".into(),
        },
        _ => CallError::Unavailable {
            detail: "circuit open".into(),
        },
    }
}

fn payment_state(n: u8) -> PaymentState {
    [
        PaymentState::Created,
        PaymentState::Authorized,
        PaymentState::Aborted,
        PaymentState::Expired,
        PaymentState::Terminated,
    ][usize::from(n) % 5]
}

/// A plausible aggregate for `amount`: nothing, captured in full, half, or cancelled.
fn aggregate(n: u8, amount: u64) -> Aggregate {
    let (captured, cancelled) = match n % 4 {
        0 => (0, 0),
        1 => (amount, 0),
        2 => (amount / 2, 0),
        _ => (0, amount),
    };
    Aggregate {
        authorized: amount,
        captured,
        cancelled,
        refunded: 0,
    }
}

/// An answer of kind `kind`: the low four bits of `outcome` pick the answer (slots 0 to 5 move
/// the flow forward, and successes get most of the 16), the high four bits its details.
fn answer(kind: Kind, call: CallId, outcome: u8, amount: u64) -> Event {
    let (slot, sub) = (outcome % 16, outcome / 16);
    let msisdn: Msisdn = NUMBERS[usize::from(sub) % NUMBERS.len()]
        .parse()
        .expect("test number is valid");
    match (kind, slot) {
        (Kind::Exchange, 0..=9) => Event::QrExchanged { call, msisdn },
        (Kind::Exchange, _) => Event::QrExchangeFailed {
            call,
            error: error(sub),
        },
        (Kind::Lookup, 0..=11) => Event::MembershipKnown {
            call,
            is_member: slot % 2 == 0,
        },
        (Kind::Lookup, _) => Event::MembershipLookupFailed {
            call,
            reason: "db".into(),
        },
        (Kind::CheckIn, 0..=9) => Event::CheckInSent { call },
        (Kind::CheckIn, _) => Event::CheckInFailed {
            call,
            error: error(sub),
        },
        (Kind::StartLogin, 0..=10) => Event::LoginStarted {
            call,
            auth_req_id: "req-1".into(),
            interval: Duration::from_secs(u64::from(sub % 8)),
            expires_in: Duration::from_secs(u64::from(sub) * 40),
        },
        (Kind::StartLogin, _) => Event::LoginStartFailed {
            call,
            error: error(sub),
        },
        (Kind::PollLogin, 0..=5) => Event::LoginConsented {
            call,
            auth_req_id: "req-1".into(),
            token: LoginAccessToken::new("login-token".into()),
        },
        (Kind::Userinfo, 0..=11) => Event::UserinfoFetched {
            call,
            userinfo: Userinfo {
                name: Some("Kari".into()),
                email: None,
                phone_number: Some(msisdn),
                consents: vec![],
            },
        },
        (Kind::Userinfo, 12) => Event::UserinfoFailed {
            call,
            error: CallError::Rejected {
                status: 401,
                detail: "expired".into(),
            },
        },
        (Kind::Userinfo, _) => Event::UserinfoFailed {
            call,
            error: error(sub),
        },
        (Kind::PollLogin, 6..=8) => Event::LoginPending { call },
        (Kind::PollLogin, 9) => Event::LoginSlowDown { call },
        (Kind::PollLogin, 10) => Event::LoginDenied { call },
        (Kind::PollLogin, 11) => Event::LoginExpired { call },
        (Kind::PollLogin, _) => Event::LoginFailed {
            call,
            error: error(sub),
        },
        (Kind::Store, 0..=11) => Event::MemberStored { call },
        (Kind::Store, _) => Event::MemberStoreFailed {
            call,
            reason: "disk".into(),
        },
        (Kind::Create, 0..=10) => Event::PaymentCreated { call },
        (Kind::Create, _) => Event::PaymentCreateFailed {
            call,
            error: error(sub),
        },
        (Kind::Read, 0..=11) => {
            let state = match slot {
                0..=3 | 8 => PaymentState::Authorized,
                4..=7 => PaymentState::Created,
                9 => PaymentState::Aborted,
                10 => PaymentState::Expired,
                _ => PaymentState::Terminated,
            };
            Event::PaymentStatus {
                call,
                state,
                aggregate: aggregate(sub, amount),
            }
        }
        (Kind::Read, 12) => Event::PaymentNotFound { call },
        (Kind::Read, _) => Event::PaymentReadFailed {
            call,
            error: error(sub),
        },
        (Kind::Capture, 0..=10) => Event::PaymentCaptured {
            call,
            state: PaymentState::Authorized,
            aggregate: aggregate(1, amount),
        },
        (Kind::Capture, 11) => Event::PaymentCaptured {
            call,
            state: PaymentState::Authorized,
            aggregate: aggregate(sub, amount),
        },
        (Kind::Capture, _) => Event::CaptureFailed {
            call,
            error: error(sub),
        },
        (Kind::Cancel, 0..=10) => Event::PaymentCancelled {
            call,
            state: payment_state(sub),
            aggregate: aggregate(sub, amount),
        },
        (Kind::Cancel, _) => Event::CancelFailed {
            call,
            error: error(sub),
        },
    }
}

/// Plays actions against a session like the lane actor would, checking every transition.
struct Driver {
    cfg: SessionConfig,
    lane: LaneId,
    now: Instant,
    session: Session,
    outstanding: Vec<(CallId, Kind)>,
    next_session: u32,
    /// The one (reference, key) each session created its payment with.
    creates: HashMap<SessionId, (PaymentReference, IdempotencyKey)>,
    last_create_at: HashMap<SessionId, Instant>,
    started: u32,
    ended: u32,
    highest_call: Option<u64>,
    /// What the run exercised: state labels entered and outcomes (with failure kinds) reached.
    seen_states: HashMap<&'static str, u32>,
    seen_outcomes: HashMap<String, u32>,
    invalid: u32,
}

impl Driver {
    fn new(now: Instant) -> Self {
        let lane: LaneId = "lane_7".parse().expect("test lane id is valid");
        Self {
            cfg: SessionConfig::default(),
            session: Session::new(lane.clone()),
            lane,
            now,
            outstanding: Vec::new(),
            next_session: 0,
            creates: HashMap::new(),
            last_create_at: HashMap::new(),
            started: 0,
            ended: 0,
            highest_call: None,
            seen_states: HashMap::new(),
            seen_outcomes: HashMap::new(),
            invalid: 0,
        }
    }

    fn amount(&self) -> u64 {
        self.session.payment_amount().map_or(10_000, |a| a.value)
    }

    fn play(&mut self, action: Action) -> Result<(), TestCaseError> {
        let event = match action {
            Action::Qr(i) => {
                let (qr, clear) = QRS[i];
                self.next_session += 1;
                Event::CustomerQrScanned {
                    qr: qr.into(),
                    clear_text: clear.map(|c| c.parse().expect("test number is valid")),
                    session_id: format!("prop{:08}", self.next_session)
                        .parse()
                        .expect("test session id is valid"),
                }
            }
            Action::Enroll => Event::Enroll,
            Action::Pay { value } => Event::Pay(PayRequest {
                amount: Amount::nok(value),
                description: "Groceries".into(),
                order_lines: None,
                receipt_number: None,
            }),
            Action::Cancel => Event::Cancel,
            Action::Reset => Event::Reset,
            Action::Wait { millis } => {
                self.now += Duration::from_millis(millis);
                Event::Tick
            }
            Action::TickAtDeadline => {
                if let Some(d) = self.session.next_deadline() {
                    self.now = self.now.max(d);
                }
                Event::Tick
            }
            Action::Answer {
                pick,
                outcome,
                keep,
            } => {
                if self.outstanding.is_empty() {
                    return Ok(());
                }
                let i = pick.map_or(self.outstanding.len() - 1, |p| p % self.outstanding.len());
                let (call, kind) = if keep {
                    self.outstanding[i]
                } else {
                    self.outstanding.remove(i)
                };
                answer(kind, call, outcome, self.amount())
            }
            Action::Stale { call, outcome } => {
                let kind = KINDS[usize::from(outcome) % KINDS.len()];
                let call = match self.outstanding.last() {
                    Some((outstanding, _)) if call % 2 == 0 => *outstanding,
                    _ => CallId(1_000_000 + call),
                };
                answer(kind, call, outcome, self.amount())
            }
            Action::Webhook { ours } => {
                let reference = match self.session.payment_reference() {
                    Some(r) if ours => r.clone(),
                    _ => "lh-elsewhere-00000000".parse().expect("valid reference"),
                };
                Event::WebhookReceived { reference }
            }
            Action::LoginPing { ours } => Event::LoginPinged {
                auth_req_id: if ours { "req-1" } else { "req-x" }.into(),
            },
        };
        self.feed(event)
    }

    fn feed(&mut self, event: Event) -> Result<(), TestCaseError> {
        let before = self.session.clone();
        let t = step(&before, event.clone(), self.now, &self.cfg);
        self.check(&before, &event, &t)?;
        for e in &t.effects {
            if let Some(call) = call_kind(e) {
                self.outstanding.push(call);
            }
        }
        self.session = t.session;
        Ok(())
    }

    fn check(
        &mut self,
        before: &Session,
        event: &Event,
        t: &Transition,
    ) -> Result<(), TestCaseError> {
        let fx = &t.effects;
        match &t.disposition {
            Disposition::Applied => {}
            Disposition::Ignored(_) | Disposition::Invalid(_) => {
                prop_assert_eq!(&t.session, before);
                prop_assert!(fx.is_empty());
                self.invalid += u32::from(matches!(t.disposition, Disposition::Invalid(_)));
            }
            Disposition::Rejected(_) => {
                prop_assert_eq!(&t.session, before);
                let told = matches!(
                    fx.as_slice(),
                    [Effect::NotifyTerminal(
                        TerminalEvent::CommandRejected { .. }
                    )]
                );
                prop_assert!(told, "a rejection is told to the cashier and nothing else");
            }
        }
        prop_assert!(STATE_LABELS.contains(&t.session.state_label()));
        // The actor schedules one timer: there must be one exactly while a session runs.
        prop_assert_eq!(t.session.next_deadline().is_some(), !t.session.is_idle());

        let sid = t.session.session_id().or(before.session_id()).cloned();
        for (i, e) in fx.iter().enumerate() {
            // Fresh, increasing call ids.
            if let Some((call, _)) = call_kind(e) {
                prop_assert!(
                    self.highest_call.is_none_or(|h| call.0 > h),
                    "call id reused"
                );
                self.highest_call = Some(call.0);
            }
            // Every money call is journalled first, with its key.
            if let Some(key) = e.idempotency_key() {
                let journalled = fx[..i].iter().any(|p| {
                    matches!(p, Effect::Persist { record, .. } if record.idempotency_key() == Some(key))
                });
                prop_assert!(journalled, "{e:?} not preceded by a Persist with its key");
            }
            let sid = sid.as_ref();
            match e {
                Effect::Persist { session, record } => {
                    prop_assert_eq!(Some(session), sid);
                    if matches!(
                        record,
                        JournalRecord::SessionStarted
                            | JournalRecord::SessionStartedIdentified { .. }
                    ) {
                        self.started += 1;
                    }
                }
                Effect::CreatePayment { request, .. } => {
                    let sid = sid.expect("a payment belongs to a session");
                    prop_assert_eq!(&request.reference, &payment_reference(&self.lane, sid));
                    prop_assert_eq!(
                        &request.idempotency_key,
                        &KeyedOperation::Create.key(sid, &payment_reference(&self.lane, sid))
                    );
                    let first = self.creates.entry(sid.clone()).or_insert_with(|| {
                        (request.reference.clone(), request.idempotency_key.clone())
                    });
                    prop_assert_eq!(
                        (&first.0, &first.1),
                        (&request.reference, &request.idempotency_key),
                        "one payment per session"
                    );
                    self.last_create_at.insert(sid.clone(), self.now);
                }
                Effect::CapturePayment {
                    idempotency_key: key,
                    amount,
                    ..
                } => {
                    let sid = sid.expect("a capture belongs to a session");
                    prop_assert_eq!(
                        key,
                        &KeyedOperation::Capture.key(sid, &payment_reference(&self.lane, sid))
                    );
                    prop_assert_eq!(Some(*amount), before.payment_amount());
                }
                Effect::CancelPayment {
                    idempotency_key: key,
                    cancel_transaction_only,
                    ..
                } => {
                    let sid = sid.expect("a cancel belongs to a session");
                    let op = if *cancel_transaction_only {
                        KeyedOperation::Cancel
                    } else {
                        KeyedOperation::CancelFull
                    };
                    prop_assert_eq!(key, &op.key(sid, &payment_reference(&self.lane, sid)));
                }
                _ => {}
            }
        }

        let ends: Vec<&Outcome> = fx
            .iter()
            .filter_map(|e| match e {
                Effect::SessionEnded { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect();
        prop_assert!(ends.len() <= 1);
        prop_assert_eq!(
            ends.len() == 1,
            !before.is_idle() && t.session.is_idle(),
            "a session ends exactly when the lane goes idle"
        );
        *self.seen_states.entry(t.session.state_label()).or_default() += 1;
        if let Some(outcome) = ends.first() {
            self.ended += 1;
            let name = match outcome {
                Outcome::Failed { reason } => format!("failed:{}", reason.kind()),
                other => other.label().to_owned(),
            };
            *self.seen_outcomes.entry(name).or_default() += 1;
            let last = matches!(fx.last(), Some(Effect::SessionEnded { .. }));
            prop_assert!(last, "SessionEnded is the last effect");
            let seen = match event {
                Event::PaymentStatus {
                    state, aggregate, ..
                }
                | Event::PaymentCaptured {
                    state, aggregate, ..
                }
                | Event::PaymentCancelled {
                    state, aggregate, ..
                } => Some((*state, *aggregate)),
                _ => None,
            };
            let amount = before.payment_amount().map(|a| a.value);
            match outcome {
                // Money decisions come from what Vipps reported, never from a guess.
                Outcome::Paid => prop_assert!(
                    seen.is_some_and(
                        |(s, a)| s == PaymentState::Authorized && Some(a.captured) == amount
                    ),
                    "paid without a full capture: {event:?}"
                ),
                Outcome::Declined => {
                    prop_assert!(seen.is_some_and(|(s, _)| s == PaymentState::Aborted))
                }
                Outcome::Expired => {
                    prop_assert!(seen.is_some_and(|(s, _)| s == PaymentState::Expired))
                }
                Outcome::Failed {
                    reason: FailReason::NoFinalState,
                } => {
                    let sid = sid.as_ref().expect("a payment belongs to a session");
                    let created = self.last_create_at[sid];
                    prop_assert!(
                        self.now >= created + self.cfg.payment_expiry + self.cfg.payment_margin,
                        "gave up before the payment's expiry"
                    );
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Feeds only ticks at each deadline, as the actor's timer would with Vipps silent.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        let start = self.now;
        let c = &self.cfg;
        let bound = [
            c.qr_exchange_timeout,
            c.membership_timeout,
            c.check_in_timeout,
            c.login_start_timeout,
            c.login_timeout,
            c.login_poll_timeout,
            c.login_recovery_window,
            c.member_store_timeout,
            c.payment_create_timeout,
            c.payment_expiry,
            c.payment_margin,
            c.payment_first_poll,
            c.payment_poll_interval,
            c.payment_read_timeout,
            c.final_read_window,
            c.capture_timeout,
            c.cancel_timeout,
            c.idle_timeout,
        ]
        .iter()
        .sum::<Duration>();
        for _ in 0..10_000 {
            let Some(deadline) = self.session.next_deadline() else {
                break;
            };
            self.now = self.now.max(deadline);
            let at = self.now;
            self.feed(Event::Tick)?;
            // A tick at a deadline must move it on, or the actor's timer would spin.
            prop_assert!(self.session.next_deadline().is_none_or(|d| d > at));
        }
        prop_assert!(
            self.session.is_idle(),
            "still {}",
            self.session.state_label()
        );
        prop_assert!(self.now <= start + bound, "took {:?}", self.now - start);
        prop_assert_eq!(
            self.started,
            self.ended,
            "every session that started ended once"
        );
        Ok(())
    }
}

proptest! {

    #[test]
    fn random_sessions_keep_every_invariant_and_always_end(actions in actions()) {
        let mut driver = Driver::new(Instant::now());
        for action in actions {
            driver.play(action)?;
        }
        driver.drain()?;
    }

    #[test]
    fn derived_names_are_valid_for_any_lane_and_session(
        lane in "[a-zA-Z0-9_-]{1,32}",
        session in "[a-zA-Z0-9]{8,32}",
    ) {
        let lane: LaneId = lane.parse().expect("generated lane id is valid");
        let session: SessionId = session.parse().expect("generated session id is valid");
        let reference = payment_reference(&lane, &session);
        prop_assert!(reference.as_str().len() <= 64);
        prop_assert!(reference.as_str().ends_with(session.as_str()));
        for op in [KeyedOperation::Create, KeyedOperation::Capture, KeyedOperation::Cancel, KeyedOperation::CancelFull] {
            prop_assert!(op.key(&session, &reference).as_str().len() <= 50);
        }
    }
}

/// Guards the generator: random runs must reach every state and the usual outcomes, or the
/// property test above would pass without testing much.
#[test]
fn the_random_runs_reach_every_state_and_the_usual_outcomes() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    let mut runner = TestRunner::deterministic();
    let strategy = actions();
    let mut states: HashMap<&'static str, u32> = HashMap::new();
    let mut outcomes: HashMap<String, u32> = HashMap::new();
    let mut invalid = 0;
    for _ in 0..256 {
        let actions = strategy
            .new_tree(&mut runner)
            .expect("the deterministic runner generates values")
            .current();
        let mut driver = Driver::new(Instant::now());
        for action in actions {
            driver.play(action).expect("invariants hold");
        }
        driver.drain().expect("the session ends");
        invalid += driver.invalid;
        for (state, n) in driver.seen_states {
            *states.entry(state).or_default() += n;
        }
        for (outcome, n) in driver.seen_outcomes {
            *outcomes.entry(outcome).or_default() += n;
        }
    }
    for state in STATE_LABELS {
        assert!(
            states.contains_key(state),
            "never reached {state}: {states:?}"
        );
    }
    assert!(invalid > 0, "never fed an invalid transition");
    for outcome in [
        "paid",
        "declined",
        "expired",
        "cancelled",
        "unavailable",
        "abandoned",
        "closed",
        "failed:no_final_state",
    ] {
        assert!(
            outcomes.contains_key(outcome),
            "never ended {outcome}: {outcomes:?}"
        );
    }
}
