//! Table tests: every legal transition, and the illegal ones that matter, one scenario each.

use std::time::Duration;

use tokio::time::Instant;

use super::*;
use crate::domain::{Amount, LaneId, Msisdn, PaymentReference};

const CLEAR_QR: &str = "https://qr.vipps.no/28/2/01/031/4791234567?v=1";
const TOKEN_QR: &str = "https://qr.vipps.no/p/abcdef123456";
const DUPLICATE: Disposition = Disposition::Ignored(IgnoreReason::DuplicateQr);
const OTHER_QR: &str = "https://qr.vipps.no/28/2/01/031/4798765432?v=1";

fn msisdn(s: &str) -> Msisdn {
    s.parse().expect("test number is valid")
}

fn sid(n: u32) -> SessionId {
    format!("session{n:04}")
        .parse()
        .expect("test session id is valid")
}

/// `qr` scanned, for session `n` if it starts one.
fn qr_scanned(qr: &str, clear: Option<&str>, n: u32) -> Event {
    Event::CustomerQrScanned {
        qr: qr.into(),
        clear_text: clear.map(msisdn),
        session_id: sid(n),
    }
}

fn lane_id() -> LaneId {
    "lane_1".parse().expect("test lane id is valid")
}

fn pay(value: u64) -> PayRequest {
    PayRequest {
        amount: Amount::nok(value),
        description: "Groceries".into(),
        order_lines: None,
        receipt_number: None,
    }
}

fn agg(authorized: u64, captured: u64, cancelled: u64) -> Aggregate {
    Aggregate {
        authorized,
        captured,
        cancelled,
        refunded: 0,
    }
}

/// The call id of the first effect of the named kind.
fn call_in(fx: &[Effect], kind: &str) -> Option<CallId> {
    fx.iter().find_map(|e| match (kind, e) {
        ("exchange", Effect::ExchangeQr { call, .. })
        | ("lookup", Effect::LookupMembership { call, .. })
        | ("check_in", Effect::SendCheckIn { call, .. })
        | ("start_login", Effect::StartLogin { call, .. })
        | ("poll_login", Effect::PollLogin { call, .. })
        | ("userinfo", Effect::FetchUserinfo { call, .. })
        | ("store", Effect::StoreMember { call, .. })
        | ("create", Effect::CreatePayment { call, .. })
        | ("read", Effect::ReadPayment { call, .. })
        | ("capture", Effect::CapturePayment { call, .. })
        | ("cancel", Effect::CancelPayment { call, .. }) => Some(*call),
        _ => None,
    })
}

fn ended_with(fx: &[Effect]) -> Option<Outcome> {
    fx.iter().find_map(|e| match e {
        Effect::SessionEnded { outcome, .. } => Some(outcome.clone()),
        _ => None,
    })
}

fn notified(fx: &[Effect], pred: impl Fn(&TerminalEvent) -> bool) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::NotifyTerminal(t) if pred(t)))
}

fn identified(number: &str, membership: Membership) -> JournalRecord {
    JournalRecord::CustomerIdentified {
        msisdn: msisdn(number),
        membership,
    }
}

/// Every record the effects journal, in order.
fn journalled(fx: &[Effect]) -> Vec<JournalRecord> {
    fx.iter()
        .filter_map(|e| match e {
            Effect::Persist { record, .. } => Some(record.clone()),
            _ => None,
        })
        .collect()
}

/// Whether the effects record a payment's end.
fn payment_finished(fx: &[Effect]) -> bool {
    fx.iter()
        .any(|e| matches!(e, Effect::Record(Fact::PaymentFinished { .. })))
}

/// Where the effects journal `record` for session 1.
fn journalled_at(fx: &[Effect], record: &JournalRecord) -> Option<usize> {
    fx.iter().position(|e| {
        matches!(e, Effect::Persist { session, record: r } if *session == sid(1) && r == record)
    })
}

/// Where the effects ask for the payment's creation.
fn create_at(fx: &[Effect]) -> Option<usize> {
    fx.iter()
        .position(|e| matches!(e, Effect::CreatePayment { .. }))
}

fn persisted(fx: &[Effect], kind: &str) -> Option<JournalRecord> {
    fx.iter().find_map(|e| match e {
        Effect::Persist { record, .. } if record.kind() == kind => Some(record.clone()),
        _ => None,
    })
}

/// A lane under test: a session, a clock built from a base instant, and the last effects.
struct Lane {
    cfg: SessionConfig,
    base: Instant,
    now: Instant,
    session: Session,
    fx: Vec<Effect>,
    /// The effects of the last refused event (`fx` keeps those before it).
    refused_fx: Vec<Effect>,
    disposition: Disposition,
}

impl Lane {
    fn new() -> Self {
        let base = Instant::now();
        Self {
            cfg: SessionConfig::default(),
            base,
            now: base,
            session: Session::new(lane_id()),
            fx: Vec::new(),
            refused_fx: Vec::new(),
            disposition: Disposition::Applied,
        }
    }

    fn feed(&mut self, event: Event) -> &mut Self {
        let t = step(&self.session, event, self.now, &self.cfg);
        self.session = t.session;
        self.fx = t.effects;
        self.disposition = t.disposition;
        self
    }

    /// Feeds `event` and asserts nothing changed.
    fn refused(&mut self, event: Event) -> Disposition {
        let before = self.session.clone();
        let t = step(&self.session, event, self.now, &self.cfg);
        assert_eq!(
            t.session, before,
            "a refused event must leave the session unchanged"
        );
        assert_ne!(t.disposition, Disposition::Applied);
        self.refused_fx = t.effects;
        self.disposition = t.disposition.clone();
        t.disposition
    }

    fn at(&mut self, since_base: Duration) -> &mut Self {
        self.now = self.base + since_base;
        self
    }

    fn advance(&mut self, d: Duration) -> &mut Self {
        self.now += d;
        self
    }

    fn tick(&mut self) -> &mut Self {
        self.feed(Event::Tick)
    }

    /// Moves the clock to the next deadline and ticks.
    fn tick_deadline(&mut self) -> &mut Self {
        let d = self
            .session
            .next_deadline()
            .expect("a running session has a deadline");
        self.now = self.now.max(d);
        self.tick()
    }

    /// The next token poll goes out and is answered with `answer`.
    fn poll_answered(&mut self, answer: impl FnOnce(CallId) -> Event) {
        self.tick_deadline();
        let call = self.call("poll_login");
        self.feed(answer(call));
    }

    fn call(&self, kind: &str) -> CallId {
        call_in(&self.fx, kind).unwrap_or_else(|| panic!("no {kind} call in {:#?}", self.fx))
    }

    fn label(&self) -> &'static str {
        self.session.state_label()
    }

    fn scan(&mut self, qr: &str, clear: Option<&str>, n: u32) -> &mut Self {
        self.feed(qr_scanned(qr, clear, n))
    }

    /// `identified()`, with the check-in answered.
    fn ready(member: bool) -> Self {
        let mut lane = Self::identified(member);
        let call = lane.call("check_in");
        lane.feed(Event::CheckInSent { call });
        lane
    }

    /// A token QR scanned: its exchange is pending.
    fn exchanging() -> Self {
        let mut lane = Self::new();
        lane.scan(TOKEN_QR, None, 1);
        lane
    }

    /// Idle → ReadyForPayment for 4791234567, check-in pending.
    fn identified(member: bool) -> Self {
        let mut lane = Self::new();
        lane.scan(CLEAR_QR, Some("4791234567"), 1);
        lane.exchanged("4791234567").looked_up(member);
        assert_eq!(lane.label(), "ready_for_payment");
        lane
    }

    /// The pending QR exchange answers `number`.
    fn exchanged(&mut self, number: &str) -> &mut Self {
        let call = self.call("exchange");
        self.feed(Event::QrExchanged {
            call,
            msisdn: msisdn(number),
        })
    }

    /// The pending membership lookup answers.
    fn looked_up(&mut self, is_member: bool) -> &mut Self {
        let call = self.call("lookup");
        self.feed(Event::MembershipKnown { call, is_member })
    }

    /// ReadyForPayment (non-member) → AwaitingConsent, Login interval 5 s, expiry 600 s.
    fn consent() -> Self {
        let mut lane = Self::ready(false);
        lane.feed(Event::Enroll);
        lane.login_started();
        assert_eq!(lane.label(), "awaiting_consent");
        lane
    }

    /// The Login start answers: `req-1`, interval 5 s, expiry 600 s.
    fn login_started(&mut self) -> &mut Self {
        let call = self.call("start_login");
        self.feed(Event::LoginStarted {
            call,
            auth_req_id: "req-1".into(),
            interval: Duration::from_secs(5),
            expires_in: Duration::from_secs(600),
        })
    }

    /// The customer consented (the token poll succeeded): userinfo is asked for.
    fn awaiting_userinfo() -> Self {
        let mut lane = Self::consent();
        lane.poll_answered(token_granted);
        lane
    }

    /// Token poll `poll` succeeds, then userinfo answers with `userinfo`.
    fn consented(&mut self, poll: CallId, userinfo: Userinfo) -> &mut Self {
        self.feed(token_granted(poll));
        let call = self.call("userinfo");
        self.feed(Event::UserinfoFetched { call, userinfo })
    }

    /// The next token poll succeeds; userinfo answers without details.
    fn consented_without_details(&mut self) -> &mut Self {
        self.tick_deadline();
        let call = self.call("poll_login");
        self.consented(call, no_details())
    }

    /// A member's payment of 100.00 NOK, created at base + 0.
    fn paying() -> Self {
        let mut lane = Self::ready(true);
        lane.feed(Event::Pay(pay(10_000)));
        let call = lane.call("create");
        lane.feed(Event::PaymentCreated { call });
        assert_eq!(lane.label(), "awaiting_payment");
        lane
    }

    /// `paying()`, then the first read-back at +5 s.
    fn reading() -> (Self, CallId) {
        let mut lane = Self::paying();
        lane.tick_deadline();
        let call = lane.call("read");
        (lane, call)
    }

    fn status(&mut self, call: CallId, state: PaymentState, aggregate: Aggregate) -> &mut Self {
        self.feed(Event::PaymentStatus {
            call,
            state,
            aggregate,
        })
    }

    /// `qr` scanned during the session; what the session did with it.
    fn rescan(&mut self, qr: &str, clear: Option<&str>) -> Disposition {
        self.refused(qr_scanned(qr, clear, 2))
    }

    /// The pending read-back answers.
    fn read_answered(&mut self, state: PaymentState, aggregate: Aggregate) -> &mut Self {
        let read = self.call("read");
        self.status(read, state, aggregate)
    }

    /// The pending capture fails with `error`.
    fn capture_failed(&mut self, error: CallError) -> &mut Self {
        let call = self.call("capture");
        self.feed(Event::CaptureFailed { call, error })
    }

    /// Pay for 1 kr; why the session refused it.
    fn pay_rejection(&mut self) -> Option<Rejection> {
        match self.refused(Event::Pay(pay(100))) {
            Disposition::Rejected(rejection) => Some(rejection),
            _ => None,
        }
    }

    /// The pending cancel answers.
    fn cancel_answered(&mut self, state: PaymentState, aggregate: Aggregate) -> &mut Self {
        let call = self.call("cancel");
        self.feed(Event::PaymentCancelled {
            call,
            state,
            aggregate,
        })
    }
}

fn token() -> LoginAccessToken {
    LoginAccessToken::new("login-access-token".into())
}

fn no_details() -> Userinfo {
    Userinfo {
        name: None,
        email: None,
        phone_number: None,
        consents: vec![],
    }
}

fn unknown() -> CallError {
    CallError::Unknown {
        detail: "timeout".into(),
    }
}

fn rejected() -> CallError {
    CallError::Rejected {
        status: 400,
        detail: "bad request".into(),
    }
}

fn unavailable() -> CallError {
    CallError::Unavailable {
        detail: "circuit open".into(),
    }
}

/// The token poll's answer: the customer consented to `req-1`.
fn token_granted(call: CallId) -> Event {
    Event::LoginConsented {
        call,
        auth_req_id: "req-1".into(),
        token: token(),
    }
}

/// The token poll's answer: denied.
fn denied(call: CallId) -> Event {
    Event::LoginDenied { call }
}

/// The token poll's answer: failed with `error()`.
fn failed(error: fn() -> CallError) -> impl FnOnce(CallId) -> Event {
    move |call| Event::LoginFailed {
        call,
        error: error(),
    }
}

// ---- identification -------------------------------------------------------------------------

#[test]
fn a_customer_qr_starts_a_session_and_exchanges_the_complete_text() {
    let mut lane = Lane::new();
    assert_eq!(lane.session.next_deadline(), None);
    lane.scan(CLEAR_QR, Some("4791234567"), 1);
    assert_eq!(lane.label(), "awaiting_qr_exchange");
    assert_eq!(lane.session.session_id(), Some(&sid(1)));
    // The start is journalled with the customer, once identified.
    assert_eq!(journalled(&lane.fx), []);
    assert!(lane.fx.contains(&Effect::ExchangeQr {
        call: lane.call("exchange"),
        qr: CLEAR_QR.into()
    }));
    assert_eq!(
        lane.session.next_deadline(),
        Some(lane.now + lane.cfg.qr_exchange_timeout)
    );
}

#[test]
fn a_new_checkout_journals_its_start_and_its_customer_in_one_record() {
    let mut lane = Lane::new();
    lane.scan(CLEAR_QR, Some("4791234567"), 1);
    lane.exchanged("4791234567");
    assert_eq!(journalled(&lane.fx), [], "a read journals nothing");
    lane.looked_up(true);
    assert_eq!(
        journalled(&lane.fx),
        [JournalRecord::SessionStartedIdentified {
            msisdn: msisdn("4791234567"),
            membership: Membership::Member,
        }]
    );
    assert!(
        matches!(&lane.fx[0], Effect::Persist { session, .. } if *session == sid(1)),
        "{:?}",
        lane.fx
    );
    // A later customer of the same session is journalled as such.
    lane.scan(OTHER_QR, Some("4798765432"), 2);
    assert_eq!(journalled(&lane.fx), [JournalRecord::CustomerReplaced]);
    lane.exchanged("4798765432");
    lane.looked_up(false);
    assert_eq!(
        journalled(&lane.fx),
        [identified("4798765432", Membership::NonMember)]
    );
}

#[test]
fn a_session_replaced_or_ended_before_its_customer_is_known_journals_its_start_first() {
    // Replaced during the QR exchange: the start, then the replacement.
    let mut lane = Lane::new();
    lane.scan(CLEAR_QR, Some("4791234567"), 1);
    lane.scan(OTHER_QR, Some("4798765432"), 2);
    assert_eq!(
        journalled(&lane.fx),
        [
            JournalRecord::SessionStarted,
            JournalRecord::CustomerReplaced
        ]
    );
    lane.exchanged("4798765432");
    lane.looked_up(true);
    assert_eq!(
        journalled(&lane.fx),
        [identified("4798765432", Membership::Member)]
    );
    // Cancelled during the membership lookup: the start, then the end.
    let mut lane = Lane::new();
    lane.scan(CLEAR_QR, Some("4791234567"), 1);
    lane.exchanged("4791234567");
    lane.feed(Event::Cancel);
    assert_eq!(
        journalled(&lane.fx),
        [
            JournalRecord::SessionStarted,
            JournalRecord::SessionEnded {
                outcome: Outcome::Cancelled
            }
        ]
    );
}

#[test]
fn an_exchanged_number_is_looked_up() {
    let mut lane = Lane::new();
    lane.scan(TOKEN_QR, None, 1);
    lane.exchanged("4512345678");
    assert_eq!(lane.label(), "awaiting_membership");
    assert!(lane.fx.contains(&Effect::LookupMembership {
        call: lane.call("lookup"),
        msisdn: msisdn("4512345678")
    }));
}

#[test]
fn a_failed_exchange_falls_back_to_the_clear_text_number() {
    for error in [rejected(), unknown(), unavailable()] {
        let mut lane = Lane::new();
        lane.scan(CLEAR_QR, Some("4791234567"), 1);
        let call = lane.call("exchange");
        let degraded = matches!(error, CallError::Unavailable { .. });
        lane.feed(Event::QrExchangeFailed { call, error });
        assert_eq!(lane.label(), "awaiting_membership");
        assert!(lane.fx.iter().any(|e| matches!(e, Effect::LookupMembership { msisdn: m, .. } if *m == msisdn("4791234567"))));
        assert_eq!(
            notified(&lane.fx, |t| matches!(
                t,
                TerminalEvent::VippsUnavailable {
                    payment_followed: false
                }
            )),
            degraded
        );
    }
    // A timed-out exchange falls back the same way.
    let mut lane = Lane::new();
    lane.scan(CLEAR_QR, Some("4791234567"), 1);
    lane.advance(Duration::from_secs(4)).tick();
    assert_eq!(lane.label(), "awaiting_qr_exchange");
    lane.tick_deadline();
    assert_eq!(lane.label(), "awaiting_membership");
}

#[test]
fn a_failed_exchange_without_a_number_ends_the_session() {
    let not_recognised = Outcome::Failed {
        reason: FailReason::QrNotRecognised,
    };
    let failed = |detail: &str| Outcome::Failed {
        reason: FailReason::IdentificationFailed {
            detail: detail.into(),
        },
    };
    let refused = |status, detail: &str| {
        Some(CallError::Rejected {
            status,
            detail: detail.into(),
        })
    };
    let cases = [
        (Some(rejected()), not_recognised.clone()),
        (refused(404, "unknown QR"), not_recognised),
        (refused(403, "forbidden"), failed("forbidden")),
        (Some(unknown()), failed("timeout")),
        (Some(unavailable()), Outcome::Unavailable),
        (None, failed("the QR exchange did not answer in time")),
    ];
    for (error, expected) in cases {
        let mut lane = Lane::new();
        lane.scan(TOKEN_QR, None, 1);
        match error {
            Some(error) => {
                let call = lane.call("exchange");
                lane.feed(Event::QrExchangeFailed { call, error });
            }
            None => {
                lane.tick_deadline();
            }
        }
        assert!(lane.session.is_idle());
        assert_eq!(ended_with(&lane.fx), Some(expected.clone()));
        assert!(matches!(lane.fx.last(), Some(Effect::SessionEnded { .. })));
        assert_eq!(
            persisted(&lane.fx, "session_ended"),
            Some(JournalRecord::SessionEnded { outcome: expected })
        );
        assert!(!payment_finished(&lane.fx));
    }
}

#[test]
fn known_membership_checks_in_and_makes_the_customer_ready() {
    // (number, lookup answer, expected membership, check-in sent with)
    let cases = [
        ("4791234567", Some(true), Membership::Member, Some(true)),
        (
            "4791234567",
            Some(false),
            Membership::NonMember,
            Some(false),
        ),
        ("4512345678", Some(true), Membership::Member, None),
        ("4791234567", None, Membership::Unknown, Some(false)),
    ];
    for (number, answer, membership, check_in) in cases {
        let mut lane = Lane::new();
        lane.scan(TOKEN_QR, None, 1);
        let call = lane.call("exchange");
        lane.feed(Event::QrExchanged {
            call,
            msisdn: msisdn(number),
        });
        let call = lane.call("lookup");
        match answer {
            Some(is_member) => lane.feed(Event::MembershipKnown { call, is_member }),
            None => lane.feed(Event::MembershipLookupFailed {
                call,
                reason: "db locked".into(),
            }),
        };
        assert_eq!(lane.label(), "ready_for_payment");
        assert_eq!(lane.session.membership(), Some(membership));
        assert_eq!(lane.session.customer(), Some(&msisdn(number)));
        assert!(lane.fx.contains(&Effect::Record(Fact::MembershipChecked {
            result: membership
        })));
        let sent = lane.fx.iter().find_map(|e| match e {
            Effect::SendCheckIn { is_member, .. } => Some(*is_member),
            _ => None,
        });
        assert_eq!(sent, check_in, "{number} {answer:?}");
        assert!(notified(
            &lane.fx,
            |t| matches!(t, TerminalEvent::CustomerIdentified { phone, .. } if phone == &mask(number))
        ));
    }
    // A lookup that never answers makes membership unknown.
    let mut lane = Lane::new();
    lane.scan(CLEAR_QR, Some("4791234567"), 1);
    lane.exchanged("4791234567");
    lane.tick_deadline();
    assert_eq!(lane.session.membership(), Some(Membership::Unknown));
}

fn mask(number: &str) -> String {
    msisdn(number).masked()
}

#[test]
fn check_in_is_best_effort_and_recorded_in_any_state() {
    // The answer arrives after the payment was requested: recorded, nothing else changes.
    let mut lane = Lane::identified(true);
    let check_in = lane.call("check_in");
    lane.feed(Event::Pay(pay(500)));
    lane.feed(Event::CheckInSent { call: check_in });
    assert_eq!(lane.disposition, Disposition::Applied);
    assert_eq!(lane.label(), "awaiting_payment_creation");
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::CheckIn {
            result: CheckInResult::Sent
        }));
    // A duplicate of that answer is stale.
    assert_eq!(
        lane.refused(Event::CheckInSent { call: check_in }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );

    // No answer: timed out at its deadline, and a late failure is stale.
    let mut lane = Lane::identified(false);
    let check_in = lane.call("check_in");
    lane.advance(lane.cfg.check_in_timeout).tick();
    assert_eq!(lane.label(), "ready_for_payment");
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::CheckIn {
            result: CheckInResult::TimedOut
        }));
    assert_eq!(
        lane.refused(Event::CheckInFailed {
            call: check_in,
            error: unknown()
        }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );
}

// ---- a new QR mid-session --------------------------------------------------------------------

#[test]
fn the_same_qr_again_is_ignored() {
    let mut lane = Lane::ready(true);
    assert_eq!(lane.rescan(CLEAR_QR, Some("4791234567")), DUPLICATE);
    // Another text with the same clear-text number is the same customer.
    assert_eq!(
        lane.rescan(&format!("{CLEAR_QR}&x=1"), Some("4791234567")),
        DUPLICATE
    );
    let mut lane = Lane::new();
    lane.scan(TOKEN_QR, None, 1);
    assert_eq!(lane.rescan(TOKEN_QR, None), DUPLICATE);
}

#[test]
fn another_customers_qr_before_payment_replaces_the_customer() {
    let mut lane = Lane::identified(true);
    let old_check_in = lane.call("check_in");
    lane.scan(OTHER_QR, Some("4798765432"), 2);
    assert_eq!(lane.label(), "awaiting_qr_exchange");
    assert_eq!(
        lane.session.session_id(),
        Some(&sid(1)),
        "same session, new customer"
    );
    assert!(persisted(&lane.fx, "customer_replaced").is_some());
    assert!(notified(&lane.fx, |t| *t == TerminalEvent::CustomerReplaced));
    assert!(
        lane.fx
            .iter()
            .any(|e| matches!(e, Effect::ExchangeQr { qr, .. } if qr == OTHER_QR))
    );
    // The previous customer's check-in answer no longer counts.
    assert_eq!(
        lane.refused(Event::CheckInSent { call: old_check_in }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );

    // While identifying: the first exchange's late answer is stale.
    let mut lane = Lane::new();
    lane.scan(TOKEN_QR, None, 1);
    let first = lane.call("exchange");
    lane.scan(OTHER_QR, Some("4798765432"), 2);
    assert_eq!(
        lane.refused(Event::QrExchanged {
            call: first,
            msisdn: msisdn("4791234567")
        }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );

    // During an enrollment: the enrollment is abandoned.
    let mut lane = Lane::consent();
    lane.scan(OTHER_QR, Some("4798765432"), 2);
    assert_eq!(lane.label(), "awaiting_qr_exchange");
    assert!(lane.fx.contains(&Effect::Record(Fact::EnrollmentFinished {
        outcome: EnrollmentOutcome::Abandoned
    })));
}

#[test]
fn another_customers_qr_after_pay_is_rejected() {
    let mut lane = Lane::paying();
    let d = lane.refused(qr_scanned(OTHER_QR, Some("4798765432"), 2));
    assert_eq!(d, Disposition::Rejected(Rejection::PaymentInProgress));
    assert!(notified(&lane.refused_fx, |t| matches!(
        t,
        TerminalEvent::CommandRejected {
            command: Command::CustomerQr,
            ..
        }
    )));
    // The paying customer's own QR is just a duplicate.
    assert_eq!(lane.rescan(CLEAR_QR, None), DUPLICATE);
}

// ---- enrollment ------------------------------------------------------------------------------

#[test]
fn enrollment_polls_at_the_interval_and_stores_the_new_member() {
    let mut lane = Lane::ready(false);
    lane.feed(Event::Enroll);
    assert_eq!(lane.label(), "awaiting_login_start");
    assert!(
        lane.fx.iter().any(
            |e| matches!(e, Effect::StartLogin { msisdn: m, .. } if *m == msisdn("4791234567"))
        )
    );
    lane.login_started();
    assert_eq!(
        persisted(&lane.fx, "enrollment_started"),
        Some(JournalRecord::EnrollmentStarted {
            msisdn: msisdn("4791234567"),
            auth_req_id: "req-1".into()
        })
    );
    let started = lane.now;
    // Never faster than the interval.
    assert_eq!(
        lane.session.next_deadline(),
        Some(started + Duration::from_secs(5))
    );
    lane.advance(Duration::from_secs(4)).tick();
    assert!(call_in(&lane.fx, "poll_login").is_none());
    lane.poll_answered(|call| Event::LoginPending { call });
    assert_eq!(
        lane.session.next_deadline(),
        Some(lane.now + Duration::from_secs(5))
    );
    // slow_down: 5 s more.
    lane.poll_answered(|call| Event::LoginSlowDown { call });
    assert_eq!(
        lane.session.next_deadline(),
        Some(lane.now + Duration::from_secs(10))
    );
    let userinfo = kari();
    lane.poll_answered(token_granted);
    // The consent (with the token Vipps hands out only once) is journalled before userinfo.
    assert_eq!(lane.label(), "awaiting_member_store");
    let consented = JournalRecord::EnrollmentConsented {
        login_token: Some(token()),
    };
    let consent = journalled_at(&lane.fx, &consented).expect("consent journalled");
    let fetch = lane
        .fx
        .iter()
        .position(|e| matches!(e, Effect::FetchUserinfo { token: t, .. } if *t == token()))
        .expect("userinfo fetched with the token");
    assert!(consent < fetch, "{:#?}", lane.fx);
    let call = lane.call("userinfo");
    lane.feed(Event::UserinfoFetched {
        call,
        userinfo: userinfo.clone(),
    });
    assert_eq!(lane.label(), "awaiting_member_store");
    // The userinfo is journalled before the member is stored.
    let fetched = JournalRecord::EnrollmentUserinfo {
        userinfo: userinfo.clone(),
    };
    let journalled = journalled_at(&lane.fx, &fetched).expect("userinfo journalled");
    let store = lane
        .fx
        .iter()
        .position(|e| matches!(e, Effect::StoreMember { .. }))
        .expect("member stored");
    assert!(journalled < store, "{:#?}", lane.fx);
    assert!(lane.fx.contains(&Effect::StoreMember {
        call: lane.call("store"),
        member: NewMember {
            msisdn: msisdn("4791234567"),
            userinfo
        }
    }));
    let call = lane.call("store");
    lane.feed(Event::MemberStored { call });
    assert_eq!(lane.label(), "ready_for_payment");
    assert_eq!(lane.session.is_member(), Some(true));
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::EnrollmentFinished {
            outcome: EnrollmentOutcome::Enrolled,
            name: Some("Kari Nordmann".into())
        }));
    assert!(lane.fx.contains(&Effect::Record(Fact::EnrollmentFinished {
        outcome: EnrollmentOutcome::Enrolled
    })));
}

#[test]
fn enrollment_that_does_not_succeed_leaves_a_non_member_ready_for_payment() {
    type Ending = fn(&mut Lane);
    let cases: [(&str, Ending, &str); 9] = [
        ("denied", |l| l.poll_answered(denied), "denied"),
        (
            "expired answer",
            |l| l.poll_answered(|call| Event::LoginExpired { call }),
            "expired",
        ),
        (
            "poll rejected",
            |l| l.poll_answered(failed(rejected)),
            "failed",
        ),
        (
            "poll unavailable",
            |l| l.poll_answered(failed(unavailable)),
            "unavailable",
        ),
        (
            "store failed",
            |l| {
                l.consented_without_details();
                let call = l.call("store");
                l.feed(Event::MemberStoreFailed {
                    call,
                    reason: "disk full".into(),
                });
            },
            "failed",
        ),
        (
            "store timed out",
            |l| {
                l.consented_without_details();
                l.tick_deadline();
            },
            "failed",
        ),
        (
            "no consent before the login timeout",
            |l| {
                let until = l.now + l.cfg.login_timeout;
                while l.label() == "awaiting_consent" {
                    l.tick_deadline();
                    if let Some(call) = call_in(&l.fx, "poll_login") {
                        l.feed(Event::LoginPending { call });
                    }
                }
                assert!(l.now >= until);
            },
            // Vipps keeps the Login open (600 s): the follower takes it over.
            "abandoned",
        ),
        (
            "polls never answer",
            |l| {
                while l.label() == "awaiting_consent" {
                    l.tick_deadline();
                }
            },
            "abandoned",
        ),
        (
            "lost poll is retried, then denied",
            |l| {
                l.poll_answered(failed(unknown));
                assert_eq!(l.label(), "awaiting_consent");
                l.poll_answered(denied);
            },
            "denied",
        ),
    ];
    for (name, ending, label) in cases {
        let mut lane = Lane::consent();
        ending(&mut lane);
        assert_eq!(lane.label(), "ready_for_payment", "{name}");
        assert_eq!(lane.session.is_member(), Some(false), "{name}");
        let outcome = lane.fx.iter().find_map(|e| match e {
            Effect::Record(Fact::EnrollmentFinished { outcome }) => Some(outcome.label()),
            _ => None,
        });
        assert_eq!(outcome, Some(label), "{name}");
        assert!(
            persisted(&lane.fx, "enrollment_finished").is_some(),
            "{name}"
        );
    }
    // Failing to start the login.
    for (error, label) in [
        (rejected(), "failed"),
        (unknown(), "failed"),
        (unavailable(), "unavailable"),
    ] {
        let mut lane = Lane::ready(false);
        lane.feed(Event::Enroll);
        let call = lane.call("start_login");
        lane.feed(Event::LoginStartFailed { call, error });
        assert_eq!(lane.label(), "ready_for_payment");
        assert!(lane.fx.iter().any(|e| matches!(e, Effect::Record(Fact::EnrollmentFinished { outcome }) if outcome.label() == label)));
    }
    let mut lane = Lane::ready(false);
    lane.feed(Event::Enroll).tick_deadline();
    assert_eq!(lane.label(), "ready_for_payment");
}

#[test]
fn the_server_expiry_shortens_the_consent_wait() {
    let mut lane = Lane::ready(false);
    lane.feed(Event::Enroll);
    let call = lane.call("start_login");
    let start = lane.now;
    lane.feed(Event::LoginStarted {
        call,
        auth_req_id: "req-1".into(),
        interval: Duration::from_secs(30),
        expires_in: Duration::from_secs(20),
    });
    lane.tick_deadline();
    assert_eq!(lane.now, start + Duration::from_secs(20));
    assert_eq!(lane.label(), "ready_for_payment");
    // Vipps' own expiry passed: nothing is left to follow.
    assert_eq!(enrollment_outcome(&lane.fx), Some("expired"));
}

fn enrollment_outcome(fx: &[Effect]) -> Option<&'static str> {
    fx.iter().find_map(|e| match e {
        Effect::Record(Fact::EnrollmentFinished { outcome }) => Some(outcome.label()),
        _ => None,
    })
}

#[test]
fn the_lanes_login_timeout_hands_a_login_vipps_keeps_open_to_the_follower() {
    let mut lane = Lane::consent();
    let start = lane.now;
    while lane.label() == "awaiting_consent" {
        lane.tick_deadline();
        if let Some(call) = call_in(&lane.fx, "poll_login") {
            lane.feed(Event::LoginPending { call });
        }
    }
    // The lane moves on at its own timeout, long before Vipps' 600 s.
    assert_eq!(lane.now, start + lane.cfg.login_timeout);
    assert!(lane.cfg.login_timeout < Duration::from_secs(600));
    assert_eq!(lane.label(), "ready_for_payment");
    assert_eq!(enrollment_outcome(&lane.fx), Some("abandoned"));
}

#[test]
fn a_login_ping_polls_at_once() {
    let mut lane = Lane::consent();
    lane.feed(Event::LoginPinged {
        auth_req_id: "req-1".into(),
    });
    assert!(call_in(&lane.fx, "poll_login").is_some());
    assert_eq!(
        lane.refused(Event::LoginPinged {
            auth_req_id: "req-1".into()
        }),
        Disposition::Ignored(IgnoreReason::CallInFlight)
    );
    assert_eq!(
        lane.refused(Event::LoginPinged {
            auth_req_id: "other".into()
        }),
        Disposition::Ignored(IgnoreReason::UnknownReference)
    );
}

#[test]
fn enroll_is_refused_with_a_reason() {
    let rejection = |lane: &mut Lane| lane.refused(Event::Enroll);
    assert_eq!(
        rejection(&mut Lane::new()),
        Disposition::Rejected(Rejection::NoCustomer)
    );
    let mut identifying = Lane::new();
    identifying.scan(TOKEN_QR, None, 1);
    assert_eq!(
        rejection(&mut identifying),
        Disposition::Rejected(Rejection::CustomerNotIdentified)
    );
    assert_eq!(
        rejection(&mut Lane::ready(true)),
        Disposition::Rejected(Rejection::AlreadyMember)
    );
    assert_eq!(
        rejection(&mut Lane::consent()),
        Disposition::Rejected(Rejection::EnrollmentInProgress)
    );
    assert_eq!(
        rejection(&mut Lane::paying()),
        Disposition::Rejected(Rejection::PaymentInProgress)
    );
    let mut unknown_membership = Lane::new();
    unknown_membership.scan(CLEAR_QR, Some("4791234567"), 1);
    unknown_membership.exchanged("4791234567");
    let call = unknown_membership.call("lookup");
    unknown_membership.feed(Event::MembershipLookupFailed {
        call,
        reason: "x".into(),
    });
    assert_eq!(
        rejection(&mut unknown_membership),
        Disposition::Rejected(Rejection::MembershipUnknown)
    );
}

// ---- paying ----------------------------------------------------------------------------------

#[test]
fn pay_journals_then_creates_with_derived_names() {
    let mut lane = Lane::ready(true);
    let request = PayRequest {
        amount: Amount::nok(2_500),
        description: "Socks".into(),
        order_lines: Some(vec![OrderLine {
            name: "Socks".into(),
            id: "7038010000010".into(),
            quantity: 2,
            unit_price: 1_250,
            total: 2_500,
            vat_percent: 25,
            vat_amount: 500,
        }]),
        receipt_number: Some("R-1001".into()),
    };
    lane.feed(Event::Pay(request.clone()));
    assert_eq!(lane.label(), "awaiting_payment_creation");
    let reference = payment_reference(&lane_id(), &sid(1));
    let key = key_of(1, KeyedOperation::Create);
    assert_eq!(reference.as_str(), "lh-lane-1-session0001");
    assert_eq!(key.as_str(), "session0001-create");
    let persist = lane
        .fx
        .iter()
        .position(|e| {
            matches!(
                e,
                Effect::Persist {
                    record: JournalRecord::PaymentRequested { .. },
                    ..
                }
            )
        })
        .expect("payment journalled");
    let create = create_at(&lane.fx).expect("payment created");
    assert!(persist < create, "Persist must come before CreatePayment");
    assert_eq!(
        lane.fx[persist],
        Effect::Persist {
            session: sid(1),
            record: JournalRecord::PaymentRequested {
                reference: reference.clone(),
                idempotency_key: key.clone(),
                amount: Amount::nok(2_500),
                msisdn: msisdn("4791234567"),
                description: "Socks".into(),
                receipt_number: Some("R-1001".into()),
                attempt: 1,
            }
        }
    );
    assert_eq!(
        lane.fx[create],
        Effect::CreatePayment {
            call: lane.call("create"),
            request: CreatePaymentRequest {
                reference: reference.clone(),
                idempotency_key: key,
                amount: Amount::nok(2_500),
                msisdn: msisdn("4791234567"),
                description: "Socks".into(),
                receipt: Some(Receipt {
                    order_lines: request.order_lines.clone().unwrap_or_default(),
                    pos_id: lane_id(),
                    receipt_number: Some("R-1001".into()),
                }),
            }
        }
    );
    assert_eq!(lane.session.payment_reference(), Some(&reference));
    assert_eq!(lane.session.payment_amount(), Some(Amount::nok(2_500)));
}

#[test]
fn an_invalid_payment_is_refused_naming_the_problem() {
    let line = OrderLine {
        name: "Milk".into(),
        id: "1".into(),
        quantity: 1,
        unit_price: 2_000,
        total: 2_000,
        vat_percent: 15,
        vat_amount: 261,
    };
    let with_line = |line: OrderLine, amount| PayRequest {
        order_lines: Some(vec![line]),
        ..pay(amount)
    };
    let cases: Vec<(PayRequest, &str)> = vec![
        (pay(0), "amount"),
        (
            PayRequest {
                description: "ab".into(),
                ..pay(100)
            },
            "description",
        ),
        (
            PayRequest {
                description: "x".repeat(101),
                ..pay(100)
            },
            "description",
        ),
        (
            PayRequest {
                order_lines: Some(vec![]),
                ..pay(100)
            },
            "at least one line",
        ),
        (
            PayRequest {
                order_lines: Some(vec![line.clone()]),
                ..pay(100)
            },
            "add up to 2000",
        ),
        (
            PayRequest {
                receipt_number: Some("1".into()),
                ..pay(100)
            },
            "needs orderLines",
        ),
        (
            PayRequest {
                order_lines: Some(vec![line.clone()]),
                receipt_number: Some("R 1001".into()),
                ..pay(2_000)
            },
            "receiptNumber",
        ),
        (
            with_line(
                OrderLine {
                    total: 1_999,
                    ..line.clone()
                },
                1_999,
            ),
            "orderLines[0].totalAmount",
        ),
        (
            PayRequest {
                description: "Gro\u{7}ceries".into(),
                ..pay(100)
            },
            "control characters",
        ),
        (pay(65_000_001), "amount.value"),
        (
            with_line(
                OrderLine {
                    vat_percent: 101,
                    ..line.clone()
                },
                2_000,
            ),
            "taxPercentage",
        ),
        (
            with_line(
                OrderLine {
                    vat_amount: 2_001,
                    ..line.clone()
                },
                2_000,
            ),
            "taxAmount",
        ),
        (
            with_line(
                OrderLine {
                    quantity: 0,
                    ..line.clone()
                },
                2_000,
            ),
            "quantity",
        ),
        (
            with_line(
                OrderLine {
                    name: " ".into(),
                    ..line.clone()
                },
                2_000,
            ),
            "name",
        ),
    ];
    for (request, needle) in cases {
        let mut lane = Lane::ready(true);
        match lane.refused(Event::Pay(request)) {
            Disposition::Rejected(Rejection::InvalidPayment { problem }) => {
                assert!(
                    problem.contains(needle),
                    "{problem:?} should mention {needle:?}"
                )
            }
            other => panic!("expected an invalid payment, got {other:?}"),
        }
    }
    let valid = with_line(line, 2_000);
    assert_eq!(valid.validate(), Ok(()));
}

#[test]
fn pay_is_refused_without_an_identified_customer_and_only_one_payment_per_session() {
    assert_eq!(
        Lane::new().refused(Event::Pay(pay(100))),
        Disposition::Rejected(Rejection::NoCustomer)
    );
    let mut identifying = Lane::new();
    identifying.scan(TOKEN_QR, None, 1);
    assert_eq!(
        identifying.pay_rejection(),
        Some(Rejection::CustomerNotIdentified)
    );
    // A second Pay in every payment state.
    let mut lane = Lane::ready(true);
    lane.feed(Event::Pay(pay(100)));
    assert_eq!(
        lane.pay_rejection(),
        Some(Rejection::PaymentAlreadyRequested)
    );
    let call = lane.call("create");
    lane.feed(Event::PaymentCreated { call });
    assert_eq!(
        lane.pay_rejection(),
        Some(Rejection::PaymentAlreadyRequested)
    );
    lane.tick_deadline();
    lane.read_answered(PaymentState::Authorized, agg(100, 0, 0));
    assert_eq!(lane.label(), "awaiting_capture");
    assert_eq!(
        lane.pay_rejection(),
        Some(Rejection::PaymentAlreadyRequested)
    );
    let mut cancelling = Lane::paying();
    cancelling.feed(Event::Cancel);
    assert_eq!(cancelling.label(), "awaiting_cancel");
    assert_eq!(
        cancelling.pay_rejection(),
        Some(Rejection::PaymentAlreadyRequested)
    );
}

#[test]
fn pay_during_consent_abandons_the_enrollment_but_waits_for_a_member_being_saved() {
    let mut lane = Lane::consent();
    lane.feed(Event::Pay(pay(100)));
    assert_eq!(lane.label(), "awaiting_payment_creation");
    let abandoned = lane
        .fx
        .iter()
        .position(|e| {
            *e == Effect::Record(Fact::EnrollmentFinished {
                outcome: EnrollmentOutcome::Abandoned,
            })
        })
        .expect("enrollment abandoned");
    let create = create_at(&lane.fx).expect("created");
    assert!(abandoned < create);

    let mut lane = Lane::consent();
    lane.poll_answered(token_granted);
    // Also while userinfo is on its way.
    assert_eq!(lane.pay_rejection(), Some(Rejection::EnrollmentFinishing));
    let call = lane.call("userinfo");
    lane.feed(Event::UserinfoFetched {
        call,
        userinfo: no_details(),
    });
    assert_eq!(lane.pay_rejection(), Some(Rejection::EnrollmentFinishing));
}

#[test]
fn a_created_payment_is_read_back_after_5_s_then_every_2_s() {
    let mut lane = Lane::paying();
    let created = lane.now;
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::PaymentAwaitingCustomer {
            amount: Amount::nok(10_000)
        }));
    assert!(persisted(&lane.fx, "payment_created").is_some());
    assert_eq!(
        lane.session.next_deadline(),
        Some(created + Duration::from_secs(5))
    );
    lane.tick_deadline();
    let read = lane.call("read");
    lane.advance(Duration::from_millis(300));
    lane.status(read, PaymentState::Created, agg(0, 0, 0));
    assert_eq!(lane.session.payment_state(), Some(PaymentState::Created));
    assert_eq!(
        lane.session.next_deadline(),
        Some(created + Duration::from_secs(7))
    );
    lane.tick_deadline();
    let read = lane.call("read");
    // A read that never answers is given up and sent again.
    lane.tick_deadline();
    assert_eq!(
        lane.now,
        created + Duration::from_secs(7) + lane.cfg.payment_read_timeout
    );
    assert_ne!(lane.call("read"), read);
}

#[test]
fn a_webhook_triggers_an_immediate_read_back() {
    let mut lane = Lane::paying();
    let reference = lane.session.payment_reference().cloned().expect("payment");
    lane.advance(Duration::from_secs(1));
    lane.feed(Event::WebhookReceived {
        reference: reference.clone(),
    });
    let read = lane.call("read");
    // Another delivery while reading: read once more right after this answer.
    lane.feed(Event::WebhookReceived {
        reference: reference.clone(),
    });
    assert!(lane.fx.is_empty());
    assert_eq!(
        lane.refused(Event::WebhookReceived {
            reference: reference.clone()
        }),
        Disposition::Ignored(IgnoreReason::CallInFlight)
    );
    lane.status(read, PaymentState::Created, agg(0, 0, 0));
    let again = lane.call("read");
    assert_ne!(again, read);
    // A webhook for another payment is not ours.
    let other: PaymentReference = "lh-lane-2-other0001".parse().expect("valid");
    assert_eq!(
        lane.refused(Event::WebhookReceived { reference: other }),
        Disposition::Ignored(IgnoreReason::UnknownReference)
    );
    assert_eq!(
        Lane::ready(true).refused(Event::WebhookReceived { reference }),
        Disposition::Ignored(IgnoreReason::UnknownReference)
    );
}

#[test]
fn an_authorised_payment_is_journalled_captured_and_checked() {
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Authorized, agg(10_000, 0, 0));
    assert_eq!(lane.label(), "awaiting_capture");
    let key = key_of(1, KeyedOperation::Capture);
    let persist = lane
        .fx
        .iter()
        .position(|e| matches!(e, Effect::Persist { record: JournalRecord::CaptureRequested { idempotency_key, .. }, .. } if *idempotency_key == key))
        .expect("capture journalled");
    let capture = lane
        .fx
        .iter()
        .position(|e| matches!(e, Effect::CapturePayment { idempotency_key, amount, .. } if *idempotency_key == key && *amount == Amount::nok(10_000)))
        .expect("capture sent");
    assert!(persist < capture);
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::PaymentAuthorised {
            amount: Amount::nok(10_000)
        }));
    let call = lane.call("capture");
    lane.advance(Duration::from_secs(1));
    lane.feed(Event::PaymentCaptured {
        call,
        state: PaymentState::Authorized,
        aggregate: agg(10_000, 10_000, 0),
    });
    assert!(lane.session.is_idle());
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Paid));
    assert!(lane.fx.contains(&Effect::Record(Fact::PaymentFinished {
        outcome: Outcome::Paid,
        captured: Some(Amount::nok(10_000))
    })));
    assert!(lane.fx.contains(&Effect::SessionEnded {
        session: sid(1),
        outcome: Outcome::Paid,
        duration: Duration::from_secs(6),
    }));
}

#[test]
fn a_capture_answer_with_another_amount_is_not_paid() {
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Authorized, agg(10_000, 0, 0));
    let call = lane.call("capture");
    lane.feed(Event::PaymentCaptured {
        call,
        state: PaymentState::Authorized,
        aggregate: agg(10_000, 5_000, 0),
    });
    assert_eq!(
        ended_with(&lane.fx),
        Some(Outcome::Failed {
            reason: FailReason::CaptureMismatch { captured: 5_000 }
        })
    );
}

#[test]
fn final_payment_states_end_the_session() {
    let cases = [
        (PaymentState::Aborted, Outcome::Declined),
        (PaymentState::Expired, Outcome::Expired),
        (PaymentState::Terminated, Outcome::Cancelled),
    ];
    for (state, outcome) in cases {
        let (mut lane, read) = Lane::reading();
        lane.status(read, state, agg(0, 0, 0));
        assert!(lane.session.is_idle());
        assert_eq!(ended_with(&lane.fx), Some(outcome.clone()));
        assert!(lane.fx.contains(&Effect::Record(Fact::PaymentFinished {
            outcome,
            captured: None
        })));
    }
}

#[test]
fn a_refused_or_unsent_create_ends_the_session() {
    let cases = [
        (
            rejected(),
            Outcome::Failed {
                reason: FailReason::PaymentRejected {
                    status: 400,
                    detail: "bad request".into(),
                },
            },
        ),
        (unavailable(), Outcome::Unavailable),
    ];
    for (error, outcome) in cases {
        let mut lane = Lane::ready(true);
        lane.feed(Event::Pay(pay(100)));
        let call = lane.call("create");
        lane.feed(Event::PaymentCreateFailed { call, error });
        assert!(lane.session.is_idle());
        assert_eq!(ended_with(&lane.fx), Some(outcome));
    }
}

#[test]
fn an_unknown_create_is_read_back_and_retried_with_the_same_key() {
    let mut lane = Lane::ready(true);
    lane.feed(Event::Pay(pay(100)));
    let first = lane.fx.iter().find_map(|e| match e {
        Effect::CreatePayment { request, .. } => Some(request.clone()),
        _ => None,
    });
    let call = lane.call("create");
    lane.feed(Event::PaymentCreateFailed {
        call,
        error: unknown(),
    });
    assert_eq!(lane.label(), "awaiting_payment");
    let read = lane.call("read");
    lane.feed(Event::PaymentNotFound { call: read });
    assert_eq!(lane.label(), "awaiting_payment_creation");
    let second = lane.fx.iter().find_map(|e| match e {
        Effect::CreatePayment { request, .. } => Some(request.clone()),
        _ => None,
    });
    assert_eq!(
        first, second,
        "a retry sends the same body with the same key"
    );
    assert!(matches!(
        persisted(&lane.fx, "payment_requested"),
        Some(JournalRecord::PaymentRequested { attempt: 2, .. })
    ));
    // Timed out this time: read back; found, so it is followed like any payment.
    lane.tick_deadline();
    lane.read_answered(PaymentState::Created, agg(0, 0, 0));
    assert_eq!(lane.label(), "awaiting_payment");

    // Never found after every attempt.
    let mut lane = Lane::ready(true);
    lane.feed(Event::Pay(pay(100)));
    for _ in 0..lane.cfg.max_create_attempts {
        let call = lane.call("create");
        lane.feed(Event::PaymentCreateFailed {
            call,
            error: unknown(),
        });
        let read = lane.call("read");
        lane.feed(Event::PaymentNotFound { call: read });
    }
    assert_eq!(
        ended_with(&lane.fx),
        Some(Outcome::Failed {
            reason: FailReason::PaymentNotCreated
        })
    );
}

#[test]
fn a_payment_is_never_failed_before_its_expiry() {
    // Vipps keeps answering CREATED: waiting until expiry + margin, then one last window.
    let (mut lane, mut read) = Lane::reading();
    let created = lane.base;
    let net = created + lane.cfg.payment_expiry + lane.cfg.payment_margin;
    loop {
        lane.status(read, PaymentState::Created, agg(0, 0, 0));
        assert_eq!(lane.label(), "awaiting_payment");
        lane.tick_deadline();
        read = lane.call("read");
        if lane.now >= net {
            break;
        }
    }
    assert_eq!(lane.now, net);
    assert_eq!(
        lane.label(),
        "awaiting_payment",
        "the safety net only reads back"
    );
    lane.status(read, PaymentState::Created, agg(0, 0, 0));
    assert_eq!(
        ended_with(&lane.fx),
        Some(Outcome::Failed {
            reason: FailReason::NoFinalState
        })
    );

    // A final state read at the safety net still counts.
    let (mut lane, _) = Lane::reading();
    lane.at(lane.cfg.payment_expiry + lane.cfg.payment_margin)
        .tick();
    lane.read_answered(PaymentState::Expired, agg(0, 0, 0));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Expired));

    // Nothing ever answers: given up after the final window.
    let mut lane = Lane::paying();
    while !lane.session.is_idle() {
        lane.tick_deadline();
    }
    assert_eq!(
        lane.now,
        lane.base + lane.cfg.payment_expiry + lane.cfg.payment_margin + lane.cfg.final_read_window
    );
    assert_eq!(
        ended_with(&lane.fx),
        Some(Outcome::Failed {
            reason: FailReason::NoFinalState
        })
    );
}

#[test]
fn capture_problems_are_read_back_and_retried_with_the_same_key() {
    let key = key_of(1, KeyedOperation::Capture);
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Authorized, agg(10_000, 0, 0));
    lane.capture_failed(unknown());
    assert_eq!(lane.label(), "awaiting_payment");
    lane.tick_deadline();
    lane.read_answered(PaymentState::Authorized, agg(10_000, 0, 0));
    assert!(lane.fx.iter().any(
        |e| matches!(e, Effect::CapturePayment { idempotency_key, .. } if *idempotency_key == key)
    ));
    // No answer at all this time: read back at the capture deadline, and it was captured.
    lane.tick_deadline();
    lane.read_answered(PaymentState::Authorized, agg(10_000, 10_000, 0));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Paid));

    // A 4xx: no more captures; the read-back decides.
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Authorized, agg(10_000, 0, 0));
    lane.capture_failed(rejected());
    lane.read_answered(PaymentState::Authorized, agg(10_000, 0, 0));
    assert!(matches!(
        ended_with(&lane.fx),
        Some(Outcome::Failed {
            reason: FailReason::CaptureFailed { .. }
        })
    ));
}

#[test]
fn cancel_before_authorisation_terminates_the_payment() {
    let mut lane = Lane::paying();
    lane.feed(Event::Cancel);
    assert_eq!(lane.label(), "awaiting_cancel");
    let key = key_of(1, KeyedOperation::Cancel);
    let persist = lane.fx.iter().position(|e| matches!(e, Effect::Persist { record: JournalRecord::CancelRequested { idempotency_key, cancel_transaction_only: true, .. }, .. } if *idempotency_key == key));
    let cancel = lane.fx.iter().position(|e| matches!(e, Effect::CancelPayment { idempotency_key, cancel_transaction_only: true, .. } if *idempotency_key == key));
    assert!(persist.is_some() && cancel.is_some() && persist < cancel);
    assert!(
        lane.session
            .snapshot()
            .payment
            .is_some_and(|p| p.cancel_requested)
    );
    assert_eq!(
        lane.refused(Event::Cancel),
        Disposition::Rejected(Rejection::CancelAlreadyRequested)
    );
    lane.cancel_answered(PaymentState::Terminated, agg(0, 0, 0));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Cancelled));
}

#[test]
fn an_authorisation_that_races_the_cancel_is_cancelled_in_full() {
    let mut lane = Lane::paying();
    lane.feed(Event::Cancel);
    let call = lane.call("cancel");
    lane.feed(Event::CancelFailed {
        call,
        error: rejected(),
    });
    lane.read_answered(PaymentState::Authorized, agg(10_000, 0, 0));
    assert_eq!(lane.label(), "awaiting_cancel");
    let key = key_of(1, KeyedOperation::CancelFull);
    assert!(
        persisted(&lane.fx, "cancel_requested").is_some_and(|r| r.idempotency_key() == Some(&key))
    );
    assert!(lane.fx.iter().any(|e| matches!(e, Effect::CancelPayment { idempotency_key, cancel_transaction_only: false, .. } if *idempotency_key == key)));
    assert!(
        !lane
            .fx
            .iter()
            .any(|e| matches!(e, Effect::CapturePayment { .. }))
    );
    lane.cancel_answered(PaymentState::Authorized, agg(10_000, 0, 10_000));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Cancelled));

    // Already captured: the cancel came too late, and the session says so.
    let mut lane = Lane::paying();
    lane.feed(Event::Cancel);
    lane.cancel_answered(PaymentState::Authorized, agg(10_000, 10_000, 0));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Paid));
}

#[test]
fn a_cancel_while_creating_is_sent_once_the_payment_exists() {
    let mut lane = Lane::ready(true);
    lane.feed(Event::Pay(pay(100)));
    let create = lane.call("create");
    lane.feed(Event::Cancel);
    assert_eq!(lane.label(), "awaiting_payment_creation");
    assert!(notified(&lane.fx, |t| *t == TerminalEvent::CancelRequested));
    assert_eq!(
        lane.refused(Event::Cancel),
        Disposition::Rejected(Rejection::CancelAlreadyRequested)
    );
    lane.feed(Event::PaymentCreated { call: create });
    assert_eq!(lane.label(), "awaiting_cancel");
    assert!(lane.fx.iter().any(|e| matches!(
        e,
        Effect::CancelPayment {
            cancel_transaction_only: true,
            ..
        }
    )));
}

#[test]
fn cancel_and_reset_without_a_payment_end_the_session_at_once() {
    type Build = fn() -> Lane;
    let cases: [(Build, Event, Outcome); 6] = [
        (|| Lane::ready(true), Event::Cancel, Outcome::Cancelled),
        (|| Lane::ready(true), Event::Reset, Outcome::Closed),
        (Lane::consent, Event::Cancel, Outcome::Cancelled),
        (Lane::consent, Event::Reset, Outcome::Closed),
        (Lane::exchanging, Event::Cancel, Outcome::Cancelled),
        (Lane::exchanging, Event::Reset, Outcome::Closed),
    ];
    for (build, event, outcome) in cases {
        let mut lane = build();
        lane.feed(event);
        assert!(lane.session.is_idle());
        assert_eq!(ended_with(&lane.fx), Some(outcome));
        assert!(!payment_finished(&lane.fx));
    }
}

#[test]
fn reset_never_forgets_a_payment_and_cancel_cannot_stop_a_capture() {
    let mut lane = Lane::paying();
    assert_eq!(
        lane.refused(Event::Reset),
        Disposition::Rejected(Rejection::PaymentInProgress)
    );
    assert!(notified(&lane.refused_fx, |t| matches!(
        t,
        TerminalEvent::CommandRejected {
            command: Command::Reset,
            ..
        }
    )));
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Authorized, agg(10_000, 0, 0));
    assert_eq!(
        lane.refused(Event::Reset),
        Disposition::Rejected(Rejection::PaymentInProgress)
    );
    assert_eq!(
        lane.refused(Event::Cancel),
        Disposition::Rejected(Rejection::CaptureInProgress)
    );
    assert_eq!(
        Lane::new().refused(Event::Cancel),
        Disposition::Rejected(Rejection::NoSession)
    );
    assert_eq!(
        Lane::new().refused(Event::Reset),
        Disposition::Ignored(IgnoreReason::NoSession)
    );
}

#[test]
fn an_idle_ready_session_is_abandoned() {
    let mut lane = Lane::ready(true);
    let ready_at = lane.now;
    lane.tick_deadline();
    assert_eq!(lane.now, ready_at + lane.cfg.idle_timeout);
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Abandoned));
}

#[test]
fn vipps_unavailable_is_told_once_and_the_payment_still_followed() {
    let (mut lane, read) = Lane::reading();
    lane.feed(Event::PaymentReadFailed {
        call: read,
        error: unavailable(),
    });
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::VippsUnavailable {
            payment_followed: true
        }));
    assert_eq!(lane.label(), "awaiting_payment");
    lane.tick_deadline();
    let read = lane.call("read");
    lane.feed(Event::PaymentReadFailed {
        call: read,
        error: unavailable(),
    });
    assert!(lane.fx.is_empty(), "told once: {:?}", lane.fx);
    lane.tick_deadline();
    lane.read_answered(PaymentState::Created, agg(0, 0, 0));
    assert!(notified(&lane.fx, |t| *t == TerminalEvent::VippsAvailable));
}

// ---- store faults ------------------------------------------------------------------------------

fn not_journalled<'a>(lane: &'a mut Lane, kind: &str) -> &'a mut Lane {
    let call = lane.call(kind);
    lane.feed(Event::JournalWriteFailed {
        call,
        detail: "database or disk is full".into(),
    })
}

fn store_unavailable(fx: &[Effect]) -> bool {
    notified(fx, |t| matches!(t, TerminalEvent::StoreUnavailable))
}

/// `reading()`, then the customer approves: the capture is asked for.
fn capturing() -> Lane {
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Authorized, agg(10_000, 0, 0));
    assert_eq!(lane.label(), "awaiting_capture");
    lane
}

#[test]
fn a_capture_the_store_cannot_journal_is_owed_and_never_ends_the_session() {
    let mut lane = capturing();
    not_journalled(&mut lane, "capture");
    assert_eq!(lane.label(), "awaiting_capture");
    assert!(
        store_unavailable(&lane.fx),
        "the cashier hears nothing is final"
    );
    assert_eq!(ended_with(&lane.fx), None);
    // Far more failed writes than capture attempts: a store fault never uses them up.
    for _ in 0..(lane.cfg.max_capture_attempts * 3) {
        lane.tick_deadline();
        assert!(persisted(&lane.fx, "capture_requested").is_some());
        assert!(
            !store_unavailable(&lane.fx),
            "told once, not at every retry"
        );
        assert!(!notified(&lane.fx, |t| matches!(
            t,
            TerminalEvent::PaymentAuthorised { .. }
        )));
        not_journalled(&mut lane, "capture");
        assert_eq!(lane.label(), "awaiting_capture");
        assert_eq!(ended_with(&lane.fx), None);
    }
    // The store is back: the capture goes out at once, as the first attempt.
    lane.feed(Event::StoreWritable);
    match persisted(&lane.fx, "capture_requested") {
        Some(JournalRecord::CaptureRequested { attempt, .. }) => assert_eq!(attempt, 1),
        other => panic!("capture not journalled again: {other:?}"),
    }
    let call = lane.call("capture");
    lane.feed(Event::PaymentCaptured {
        call,
        state: PaymentState::Authorized,
        aggregate: agg(10_000, 10_000, 0),
    });
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Paid));
}

#[test]
fn owed_calls_are_retried_with_a_capped_doubling_backoff() {
    let mut lane = capturing();
    let mut waits = vec![];
    for _ in 0..8 {
        not_journalled(&mut lane, "capture");
        let due = lane.session.next_deadline().expect("a deadline");
        waits.push(due.saturating_duration_since(lane.now).as_secs());
        lane.tick_deadline();
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
}

#[test]
fn a_create_the_store_cannot_journal_is_sent_once_the_store_takes_writes() {
    let mut lane = Lane::ready(true);
    lane.feed(Event::Pay(pay(10_000)));
    not_journalled(&mut lane, "create");
    assert_eq!(lane.label(), "awaiting_payment_creation");
    assert!(store_unavailable(&lane.fx));
    // Waiting for the store is not a create timeout: no read-back of a payment never sent.
    lane.tick_deadline();
    assert_eq!(call_in(&lane.fx, "read"), None);
    not_journalled(&mut lane, "create");
    lane.feed(Event::StoreWritable);
    match persisted(&lane.fx, "payment_requested") {
        Some(JournalRecord::PaymentRequested { attempt, .. }) => assert_eq!(attempt, 1),
        other => panic!("create not journalled again: {other:?}"),
    }
    let call = lane.call("create");
    lane.feed(Event::PaymentCreated { call });
    assert_eq!(lane.label(), "awaiting_payment");
    assert!(notified(&lane.fx, |t| matches!(
        t,
        TerminalEvent::StoreAvailable
    )));
    assert!(notified(&lane.fx, |t| matches!(
        t,
        TerminalEvent::PaymentAwaitingCustomer { .. }
    )));
}

#[test]
fn a_cancel_while_a_never_sent_create_is_owed_ends_at_once() {
    let mut lane = Lane::ready(true);
    lane.feed(Event::Pay(pay(10_000)));
    not_journalled(&mut lane, "create");
    lane.feed(Event::Cancel);
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Cancelled));
    assert_eq!(
        call_in(&lane.fx, "cancel"),
        None,
        "Vipps knows of no payment"
    );
}

#[test]
fn a_cancel_while_a_capture_is_owed_is_journalled_and_carried_out_before_the_outcome() {
    let mut lane = capturing();
    not_journalled(&mut lane, "capture");
    lane.feed(Event::Cancel);
    assert_eq!(lane.label(), "awaiting_cancel");
    assert_eq!(ended_with(&lane.fx), None);
    match persisted(&lane.fx, "cancel_requested") {
        Some(JournalRecord::CancelRequested {
            cancel_transaction_only,
            idempotency_key,
            ..
        }) => {
            assert!(!cancel_transaction_only, "authorised: cancelled in full");
            assert_eq!(
                idempotency_key,
                idempotency_key_for(KeyedOperation::CancelFull)
            );
        }
        other => panic!("cancel not journalled: {other:?}"),
    }
    // The cancel cannot be journalled either: owed like the capture, nothing final yet.
    not_journalled(&mut lane, "cancel");
    assert_eq!(lane.label(), "awaiting_cancel");
    assert_eq!(ended_with(&lane.fx), None);
    lane.feed(Event::StoreWritable);
    assert_eq!(
        call_in(&lane.fx, "capture"),
        None,
        "never captured after a cancel"
    );
    lane.cancel_answered(PaymentState::Authorized, agg(10_000, 0, 10_000));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Cancelled));
}

fn idempotency_key_for(op: KeyedOperation) -> crate::domain::IdempotencyKey {
    key_of(1, op)
}

/// The key of `op` for session `n` on lane 1.
fn key_of(n: u32, op: KeyedOperation) -> crate::domain::IdempotencyKey {
    op.key(&sid(n), &payment_reference(&lane_id(), &sid(n)))
}

#[test]
fn a_store_fault_while_following_a_payment_is_told_once_and_its_end_too() {
    let mut lane = Lane::paying();
    lane.feed(Event::StoreFailed {
        detail: "database or disk is full".into(),
    });
    assert!(store_unavailable(&lane.fx));
    assert_eq!(lane.label(), "awaiting_payment");
    lane.refused(Event::StoreFailed {
        detail: "database or disk is full".into(),
    });
    lane.feed(Event::StoreWritable);
    assert!(notified(&lane.fx, |t| matches!(
        t,
        TerminalEvent::StoreAvailable
    )));
    lane.refused(Event::StoreWritable);
}

#[test]
fn store_signals_without_a_session_change_nothing() {
    let mut lane = Lane::new();
    lane.refused(Event::StoreFailed {
        detail: "database or disk is full".into(),
    });
    lane.refused(Event::StoreWritable);
}

// ---- stale, duplicate and invalid --------------------------------------------------------------

#[test]
fn answers_to_calls_not_awaited_are_ignored() {
    let (mut lane, read) = Lane::reading();
    lane.status(read, PaymentState::Created, agg(0, 0, 0));
    // The same answer again, and answers to calls never made.
    assert_eq!(
        lane.refused(Event::PaymentStatus {
            call: read,
            state: PaymentState::Authorized,
            aggregate: agg(10_000, 0, 0)
        }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );
    assert_eq!(
        lane.refused(Event::PaymentCaptured {
            call: CallId(999),
            state: PaymentState::Authorized,
            aggregate: agg(10_000, 10_000, 0)
        }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );
    assert_eq!(
        Lane::new().refused(Event::QrExchanged {
            call: CallId(0),
            msisdn: msisdn("4791234567")
        }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );
}

#[test]
fn an_answer_of_the_wrong_kind_is_an_invalid_transition() {
    let mut lane = Lane::new();
    lane.scan(TOKEN_QR, None, 1);
    let call = lane.call("exchange");
    assert_eq!(
        lane.refused(Event::MembershipKnown {
            call,
            is_member: true
        }),
        Disposition::Invalid(InvalidTransition {
            state: "awaiting_qr_exchange",
            event: "membership_known"
        })
    );
    let (mut lane, read) = Lane::reading();
    assert_eq!(
        lane.refused(Event::PaymentCaptured {
            call: read,
            state: PaymentState::Authorized,
            aggregate: agg(1, 1, 0)
        }),
        Disposition::Invalid(InvalidTransition {
            state: "awaiting_payment",
            event: "payment_captured"
        })
    );
    assert!(lane.refused_fx.is_empty());
    // The pending check-in's call answered as something else, and the other way round.
    let mut lane = Lane::identified(true);
    let check_in = lane.call("check_in");
    lane.feed(Event::Pay(pay(100)));
    let create = lane.call("create");
    assert_eq!(
        lane.refused(Event::PaymentCreated { call: check_in }),
        Disposition::Invalid(InvalidTransition {
            state: "awaiting_payment_creation",
            event: "payment_created"
        })
    );
    assert_eq!(
        lane.refused(Event::CheckInSent { call: create }),
        Disposition::Invalid(InvalidTransition {
            state: "awaiting_payment_creation",
            event: "check_in_sent"
        })
    );
}

// ---- recovery --------------------------------------------------------------------------------

fn requested(attempt: u32) -> JournalRecord {
    JournalRecord::PaymentRequested {
        reference: payment_reference(&lane_id(), &sid(7)),
        idempotency_key: key_of(7, KeyedOperation::Create),
        amount: Amount::nok(4_200),
        msisdn: msisdn("4791234567"),
        description: "Groceries".into(),
        receipt_number: None,
        attempt,
    }
}

/// A session whose member was identified, as journalled by older versions (two records) and by
/// this one (one record).
fn started_member_journals() -> [Vec<JournalRecord>; 2] {
    [
        vec![
            JournalRecord::SessionStarted,
            identified("4791234567", Membership::Member),
        ],
        vec![JournalRecord::SessionStartedIdentified {
            msisdn: msisdn("4791234567"),
            membership: Membership::Member,
        }],
    ]
}

fn recover(records: &[JournalRecord]) -> Lane {
    let mut lane = Lane::new();
    let t = Session::recover(lane_id(), sid(7), records, lane.now, &lane.cfg);
    assert_eq!(t.disposition, Disposition::Applied);
    lane.session = t.session;
    lane.fx = t.effects;
    lane
}

#[test]
fn recovery_reads_a_payment_in_flight_back_and_finishes_it_with_the_journalled_keys() {
    let key = key_of(7, KeyedOperation::Capture);
    for started in started_member_journals() {
        let records = [started, vec![requested(1)]].concat();
        let mut lane = recover(&records);
        assert_eq!(lane.label(), "awaiting_payment");
        assert_eq!(lane.session.session_id(), Some(&sid(7)));
        assert_eq!(lane.session.membership(), Some(Membership::Member));
        lane.read_answered(PaymentState::Authorized, agg(4_200, 0, 0));
        assert!(lane.fx.iter().any(|e| matches!(e, Effect::CapturePayment { idempotency_key, amount, .. } if *idempotency_key == key && *amount == Amount::nok(4_200))));
    }
    let records = vec![
        JournalRecord::SessionStarted,
        identified("4791234567", Membership::Member),
        requested(1),
    ];

    // Not found after a restart: never created again.
    let mut lane = recover(&records);
    let read = lane.call("read");
    lane.feed(Event::PaymentNotFound { call: read });
    assert!(
        !lane
            .fx
            .iter()
            .any(|e| matches!(e, Effect::CreatePayment { .. }))
    );
    assert_eq!(
        ended_with(&lane.fx),
        Some(Outcome::Failed {
            reason: FailReason::PaymentNotCreated
        })
    );

    // A capture already sent: a captured read-back is paid.
    let capture = JournalRecord::CaptureRequested {
        reference: payment_reference(&lane_id(), &sid(7)),
        idempotency_key: key.clone(),
        amount: Amount::nok(4_200),
        attempt: 1,
    };
    let mut lane = recover(&[
        requested(1),
        JournalRecord::PaymentCreated {
            reference: payment_reference(&lane_id(), &sid(7)),
        },
        capture,
    ]);
    lane.read_answered(PaymentState::Authorized, agg(4_200, 4_200, 0));
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Paid));

    // A cashier cancel was in flight: an authorised payment is cancelled in full.
    let cancel = JournalRecord::CancelRequested {
        reference: payment_reference(&lane_id(), &sid(7)),
        idempotency_key: key_of(7, KeyedOperation::Cancel),
        cancel_transaction_only: true,
        attempt: 1,
    };
    let mut lane = recover(&[requested(1), cancel]);
    lane.read_answered(PaymentState::Authorized, agg(4_200, 0, 0));
    assert!(lane.fx.iter().any(|e| matches!(
        e,
        Effect::CancelPayment {
            cancel_transaction_only: false,
            ..
        }
    )));
}

#[test]
fn recovery_of_the_rest() {
    // Ended, or nothing at all: idle, nothing to do.
    for records in [
        vec![],
        vec![
            JournalRecord::SessionStarted,
            requested(1),
            JournalRecord::SessionEnded {
                outcome: Outcome::Paid,
            },
        ],
    ] {
        let lane = recover(&records);
        assert!(lane.session.is_idle());
        assert!(lane.fx.is_empty());
    }
    // An enrollment in flight: polled once more.
    let mut lane = recover(&[
        JournalRecord::SessionStarted,
        JournalRecord::EnrollmentStarted {
            msisdn: msisdn("4791234567"),
            auth_req_id: "req-9".into(),
        },
    ]);
    assert_eq!(lane.label(), "awaiting_consent");
    assert!(
        lane.fx
            .iter()
            .any(|e| matches!(e, Effect::PollLogin { auth_req_id, .. } if auth_req_id == "req-9"))
    );
    let call = lane.call("poll_login");
    lane.feed(Event::LoginDenied { call });
    assert_eq!(lane.label(), "ready_for_payment");
    // Nothing in flight: closed as interrupted.
    for started in started_member_journals() {
        let lane = recover(&started);
        assert!(lane.session.is_idle());
        assert_eq!(ended_with(&lane.fx), Some(Outcome::Interrupted));
    }
}

fn kari() -> Userinfo {
    Userinfo {
        name: Some("Kari Nordmann".into()),
        email: Some("kari@example.com".into()),
        phone_number: Some(msisdn("4791234567")),
        consents: vec![Consent {
            id: "email".into(),
            accepted: true,
            required: false,
            text: None,
        }],
    }
}

/// The journal of an enrollment, up to and including `after_start`.
fn enrollment_journal(after_start: &[JournalRecord]) -> Vec<JournalRecord> {
    let mut records = vec![
        JournalRecord::SessionStarted,
        JournalRecord::CustomerIdentified {
            msisdn: msisdn("4791234567"),
            membership: Membership::NonMember,
        },
        JournalRecord::EnrollmentStarted {
            msisdn: msisdn("4791234567"),
            auth_req_id: "req-9".into(),
        },
    ];
    records.extend_from_slice(after_start);
    records
}

#[test]
fn recovery_after_consent_finishes_the_enrollment_instead_of_polling_again() {
    let consented = JournalRecord::EnrollmentConsented {
        login_token: Some(token()),
    };
    // Consent journalled, userinfo not: userinfo with the journalled token, never a token poll.
    let mut lane = recover(&enrollment_journal(std::slice::from_ref(&consented)));
    assert_eq!(lane.label(), "awaiting_member_store");
    assert!(call_in(&lane.fx, "poll_login").is_none(), "{:#?}", lane.fx);
    assert!(
        lane.fx
            .iter()
            .any(|e| matches!(e, Effect::FetchUserinfo { token: t, .. } if *t == token()))
    );
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::SessionRecovered { payment: None }));
    let call = lane.call("userinfo");
    lane.feed(Event::UserinfoFetched {
        call,
        userinfo: kari(),
    });
    assert_eq!(
        persisted(&lane.fx, "enrollment_userinfo"),
        Some(JournalRecord::EnrollmentUserinfo { userinfo: kari() })
    );
    let call = lane.call("store");
    assert!(lane.fx.contains(&Effect::StoreMember {
        call,
        member: NewMember {
            msisdn: msisdn("4791234567"),
            userinfo: kari(),
        },
    }));
    lane.feed(Event::MemberStored { call });
    assert_eq!(lane.label(), "ready_for_payment");
    assert_eq!(lane.session.is_member(), Some(true));
    assert_eq!(
        persisted(&lane.fx, "enrollment_finished"),
        Some(JournalRecord::EnrollmentFinished {
            outcome: EnrollmentOutcome::Enrolled
        })
    );

    // Userinfo journalled too: the member is stored straight away, with no Vipps call at all.
    // The consent reads back as the store leaves it then: its token erased.
    let mut lane = recover(&enrollment_journal(&[
        JournalRecord::EnrollmentConsented { login_token: None },
        JournalRecord::EnrollmentUserinfo { userinfo: kari() },
    ]));
    assert_eq!(lane.label(), "awaiting_member_store");
    assert!(call_in(&lane.fx, "poll_login").is_none());
    assert!(call_in(&lane.fx, "userinfo").is_none());
    let call = lane.call("store");
    lane.feed(Event::MemberStored { call });
    assert!(notified(&lane.fx, |t| *t
        == TerminalEvent::EnrollmentFinished {
            outcome: EnrollmentOutcome::Enrolled,
            name: Some("Kari Nordmann".into())
        }));

    // Finished already: nothing in flight, the session is closed as interrupted.
    let lane = recover(&enrollment_journal(&[
        consented,
        JournalRecord::EnrollmentUserinfo { userinfo: kari() },
        JournalRecord::EnrollmentFinished {
            outcome: EnrollmentOutcome::Enrolled,
        },
    ]));
    assert!(lane.session.is_idle());
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Interrupted));
}

#[test]
fn a_consent_whose_token_expired_before_userinfo_fails_with_a_clear_reason() {
    let mut lane = recover(&enrollment_journal(&[JournalRecord::EnrollmentConsented {
        login_token: Some(token()),
    }]));
    let call = lane.call("userinfo");
    lane.feed(Event::UserinfoFailed {
        call,
        error: CallError::Rejected {
            status: 401,
            detail: "unauthorized".into(),
        },
    });
    let outcome = EnrollmentOutcome::Failed {
        detail: enroll::USERINFO_TOKEN_EXPIRED.into(),
    };
    assert_eq!(lane.label(), "ready_for_payment");
    assert_eq!(lane.session.is_member(), Some(false));
    assert_eq!(
        persisted(&lane.fx, "enrollment_finished"),
        Some(JournalRecord::EnrollmentFinished {
            outcome: outcome.clone()
        })
    );
    let told = TerminalEvent::EnrollmentFinished {
        outcome,
        name: None,
    };
    assert_eq!(
        told.message(),
        "Enrollment failed: the customer consented, but the Vipps login expired before the \
         member was saved: enroll again"
    );
    assert!(notified(&lane.fx, |t| *t == told));
}

#[test]
fn a_lost_userinfo_answer_is_asked_again_with_the_same_token_a_few_times() {
    let mut lane = Lane::awaiting_userinfo();
    // Lost, then timed out: each time userinfo again (the token is not polled for again).
    let call = lane.call("userinfo");
    lane.feed(Event::UserinfoFailed {
        call,
        error: unknown(),
    });
    let again = lane.call("userinfo");
    assert_ne!(again, call);
    lane.tick_deadline();
    let third = lane.call("userinfo");
    assert_ne!(third, again);
    assert!(call_in(&lane.fx, "poll_login").is_none());
    // Out of attempts: failed, the customer stays a non-member ready to pay.
    lane.feed(Event::UserinfoFailed {
        call: third,
        error: unavailable(),
    });
    assert_eq!(lane.label(), "ready_for_payment");
    assert_eq!(
        persisted(&lane.fx, "enrollment_finished"),
        Some(JournalRecord::EnrollmentFinished {
            outcome: EnrollmentOutcome::Unavailable
        })
    );
    // A store answer while userinfo is awaited is a bug, not a race.
    let mut lane = Lane::awaiting_userinfo();
    let call = lane.call("userinfo");
    assert!(matches!(
        lane.refused(Event::MemberStored { call }),
        Disposition::Invalid(_)
    ));
}

#[test]
fn a_consented_enrollment_cannot_be_dropped_by_the_cashier_while_it_finishes() {
    let mut lane = Lane::awaiting_userinfo();
    for event in [
        Event::Cancel,
        Event::Reset,
        Event::CustomerQrScanned {
            qr: OTHER_QR.into(),
            clear_text: Some(msisdn("4798765432")),
            session_id: sid(2),
        },
    ] {
        assert_eq!(
            lane.refused(event),
            Disposition::Rejected(Rejection::EnrollmentFinishing)
        );
        assert!(
            !lane
                .refused_fx
                .iter()
                .any(|e| matches!(e, Effect::Persist { .. })),
            "{:#?}",
            lane.refused_fx
        );
    }
    // Once the member is stored, Cancel works as usual.
    let call = lane.call("userinfo");
    lane.feed(Event::UserinfoFetched {
        call,
        userinfo: kari(),
    });
    let call = lane.call("store");
    lane.feed(Event::MemberStored { call });
    lane.feed(Event::Cancel);
    assert_eq!(ended_with(&lane.fx), Some(Outcome::Cancelled));
}

#[test]
fn a_token_from_a_poll_that_had_timed_out_is_still_taken() {
    let mut lane = Lane::consent();
    lane.tick_deadline();
    let first = lane.call("poll_login");
    // The poll does not answer in time: polled again.
    while call_in(&lane.fx, "poll_login").is_none_or(|c| c == first) {
        lane.tick_deadline();
    }
    assert_eq!(lane.label(), "awaiting_consent");
    // The first poll's token arrives late; for another login it is stale, for this one it is the
    // consent (Vipps will not hand it out again).
    assert_eq!(
        lane.refused(Event::LoginConsented {
            call: first,
            auth_req_id: "req-other".into(),
            token: token(),
        }),
        Disposition::Ignored(IgnoreReason::StaleAnswer)
    );
    lane.feed(token_granted(first));
    assert_eq!(lane.disposition, Disposition::Applied);
    assert_eq!(lane.label(), "awaiting_member_store");
    assert!(persisted(&lane.fx, "enrollment_consented").is_some());
    assert!(call_in(&lane.fx, "userinfo").is_some());
}

#[test]
fn the_login_token_is_journalled_but_never_shown_by_debug() {
    let record = JournalRecord::EnrollmentConsented {
        login_token: Some(token()),
    };
    let json = serde_json::to_value(&record).expect("serialisable");
    assert_eq!(
        json,
        serde_json::json!({"kind": "enrollment_consented", "login_token": "login-access-token"})
    );
    let back: JournalRecord = serde_json::from_value(json).expect("deserialisable");
    assert_eq!(back, record);
    for shown in [
        format!("{record:?}"),
        format!(
            "{:?}",
            Effect::FetchUserinfo {
                call: CallId(3),
                token: token()
            }
        ),
        format!("{:?}", Lane::consent().session),
    ] {
        assert!(!shown.contains("login-access-token"), "{shown}");
    }
    let lane = Lane::awaiting_userinfo();
    let shown = format!("{:?} {:?}", lane.session, lane.fx);
    assert!(shown.contains("[redacted]"), "{shown}");
    assert!(!shown.contains("login-access-token"), "{shown}");

    let userinfo = JournalRecord::EnrollmentUserinfo { userinfo: kari() };
    let json = serde_json::to_value(&userinfo).expect("serialisable");
    assert_eq!(json["kind"], "enrollment_userinfo");
    assert_eq!(json["userinfo"]["name"], "Kari Nordmann");
    let back: JournalRecord = serde_json::from_value(json).expect("deserialisable");
    assert_eq!(back, userinfo);
}

#[test]
fn a_journal_of_the_previous_version_still_recovers() {
    // Rows as the version before consent journalling wrote them (JSON as stored).
    let rows = [
        r#"{"kind":"session_started"}"#,
        r#"{"kind":"customer_identified","msisdn":"4791234567","membership":"non_member"}"#,
        r#"{"kind":"enrollment_started","msisdn":"4791234567","auth_req_id":"req-9"}"#,
    ];
    let records: Vec<JournalRecord> = rows
        .iter()
        .map(|r| serde_json::from_str(r).expect("an old row still parses"))
        .collect();
    let lane = recover(&records);
    assert_eq!(lane.label(), "awaiting_consent");
    assert!(
        lane.fx
            .iter()
            .any(|e| matches!(e, Effect::PollLogin { auth_req_id, .. } if auth_req_id == "req-9"))
    );
    // And the existing records keep their shape.
    assert_eq!(
        serde_json::to_string(&records[2]).expect("serialisable"),
        rows[2]
    );
}

// ---- names, records, labels ------------------------------------------------------------------

/// Keys already sent or stored must keep their names: a renamed key is a second request to Vipps.
#[test]
fn every_keyed_operation_keeps_its_key_and_stored_name() {
    let session: SessionId = "a".repeat(32).parse().expect("32 chars");
    let lane: LaneId = "1".parse().expect("a lane id");
    let reference = payment_reference(&lane, &session);
    let a = session.as_str();
    let cases = [
        (KeyedOperation::Create, "create", format!("{a}-create")),
        (KeyedOperation::Capture, "capture", format!("{a}-capture")),
        (KeyedOperation::Cancel, "cancel", format!("{a}-cancel")),
        (
            KeyedOperation::CancelFull,
            "cancel-full",
            format!("{a}-cancel-full"),
        ),
        (
            KeyedOperation::LateCancel(PaymentState::Created),
            "late_cancel_created",
            format!("{a}-lc-created"),
        ),
        (
            KeyedOperation::LateCancel(PaymentState::Authorized),
            "late_cancel_authorized",
            format!("{a}-lc-authorized"),
        ),
        // The first 12 bytes of SHA-256 of `{reference}|{refunded before}|{amount}`.
        (
            KeyedOperation::Refund {
                refunded_before: 2500,
                amount: 1000,
            },
            "refund",
            "888f5a47db3ca9c6bffd117a-rf".to_owned(),
        ),
    ];
    assert_eq!(reference.as_str(), format!("lh-1-{a}"));
    for (op, stored, key) in cases {
        assert_eq!(op.as_str(), stored);
        assert_eq!(op.key(&session, &reference).as_str(), key, "{op:?}");
    }
    // A refund after another one, or of another amount, is another refund.
    let refund = |refunded_before, amount| {
        KeyedOperation::Refund {
            refunded_before,
            amount,
        }
        .key(&session, &reference)
    };
    assert_ne!(refund(2500, 1000), refund(3500, 1000));
    assert_ne!(refund(2500, 1000), refund(2500, 999));
}

#[test]
fn derived_names_fit_vipps_patterns() {
    let long_lane: LaneId = "a_b".repeat(10).parse().expect("30 chars");
    let long_session: SessionId = "x".repeat(32).parse().expect("32 chars");
    let reference = payment_reference(&long_lane, &long_session);
    assert!(reference.as_str().len() <= 64);
    assert!(
        reference.as_str().starts_with("lh-a-ba-ba-b"),
        "{reference}"
    );
    assert!(reference.as_str().ends_with(long_session.as_str()));
    let states = [
        PaymentState::Created,
        PaymentState::Authorized,
        PaymentState::Aborted,
        PaymentState::Expired,
        PaymentState::Terminated,
    ];
    let ops = [
        KeyedOperation::Create,
        KeyedOperation::Capture,
        KeyedOperation::Cancel,
        KeyedOperation::CancelFull,
        KeyedOperation::Refund {
            refunded_before: u64::MAX,
            amount: u64::MAX,
        },
    ];
    for op in ops
        .into_iter()
        .chain(states.map(KeyedOperation::LateCancel))
    {
        assert!(op.key(&long_session, &reference).as_str().len() <= 50);
        assert!(op.as_str().len() <= 32, "stored operation names are labels");
    }
    // Deterministic: the same inputs give the same names.
    assert_eq!(payment_reference(&long_lane, &long_session), reference);
    for bad in ["short", "has-dash-123", &"x".repeat(33), "ünïcode123"] {
        assert!(bad.parse::<SessionId>().is_err(), "{bad}");
    }
    let from_uuid = SessionId::from_uuid(uuid::Uuid::nil());
    assert_eq!(from_uuid.as_str().len(), 32);
}

#[test]
fn journal_records_round_trip_as_tagged_json() {
    let records = vec![
        JournalRecord::SessionStarted,
        requested(2),
        JournalRecord::EnrollmentFinished {
            outcome: EnrollmentOutcome::Failed { detail: "x".into() },
        },
        JournalRecord::SessionEnded {
            outcome: Outcome::Failed {
                reason: FailReason::PaymentRejected {
                    status: 422,
                    detail: "no".into(),
                },
            },
        },
    ];
    for record in records {
        let json = serde_json::to_value(&record).expect("serialisable");
        assert_eq!(json["kind"], record.kind());
        let back: JournalRecord = serde_json::from_value(json).expect("deserialisable");
        assert_eq!(back, record);
    }
    let json = serde_json::to_string(&requested(1)).expect("serialisable");
    assert!(
        json.contains(r#""amount":{"currency":"NOK","value":4200}"#),
        "{json}"
    );
}

#[test]
fn every_state_label_is_listed_and_snapshots_show_the_session() {
    let lanes = [
        Lane::new(),
        Lane::ready(true),
        Lane::consent(),
        Lane::paying(),
    ];
    for lane in &lanes {
        assert!(STATE_LABELS.contains(&lane.label()));
    }
    assert_eq!(state_labels().len(), 11);
    let snap = Lane::paying().session.snapshot();
    assert_eq!(snap.state, "awaiting_payment");
    assert_eq!(snap.customer, Some(msisdn("4791234567")));
    assert_eq!(snap.membership, Some(Membership::Member));
    let payment = snap.payment.expect("payment");
    assert_eq!(payment.amount, Amount::nok(10_000));
    assert!(!payment.cancel_requested);
}

#[test]
fn terminal_events_serialise_with_a_tag_and_read_as_cashier_messages() {
    let ended = TerminalEvent::SessionEnded {
        outcome: Outcome::Paid,
        amount: Some(Amount::nok(23_990)),
    };
    let json = serde_json::to_value(&ended).expect("serialisable");
    assert_eq!(json["event"], "session_ended");
    assert_eq!(json["outcome"]["outcome"], "paid");
    assert_eq!(ended.message(), "Payment approved 239.90 NOK");
    let rejected = TerminalEvent::CommandRejected {
        command: Command::Reset,
        rejection: Rejection::PaymentInProgress,
    };
    let json = serde_json::to_value(&rejected).expect("serialisable");
    assert_eq!(json["rejection"]["kind"], "payment_in_progress");
    assert_eq!(
        rejected.message(),
        "reset refused: a payment is in progress: wait for it or cancel it"
    );
    let identified = TerminalEvent::CustomerIdentified {
        phone: msisdn("4791234567").masked(),
        membership: Membership::NonMember,
    };
    assert!(identified.message().contains("47******67"));
    assert!(!identified.message().contains("4791234567"));
}

// ---- the enrollment as the terminal shows it ------------------------------------------------

fn enrollment_shown(lane: &Lane) -> Option<&'static str> {
    lane.session
        .snapshot()
        .enrollment
        .map(EnrollmentProgress::label)
}

#[test]
fn the_enrollment_view_follows_the_session_and_keeps_its_outcome_until_the_customer_changes() {
    let mut lane = Lane::ready(false);
    assert_eq!(enrollment_shown(&lane), None);
    lane.feed(Event::Enroll);
    assert_eq!(enrollment_shown(&lane), Some("starting"));
    lane.login_started();
    assert_eq!(enrollment_shown(&lane), Some("awaiting_consent"));
    lane.poll_answered(|call| Event::LoginDenied { call });
    assert_eq!(lane.label(), "ready_for_payment");
    assert_eq!(enrollment_shown(&lane), Some("denied"));
    // The outcome stays while the customer pays …
    lane.feed(Event::Pay(pay(10_000)));
    assert_eq!(enrollment_shown(&lane), Some("denied"));
    // … and is a stale answer once another customer replaces them.
    let mut lane = Lane::consent();
    lane.scan(OTHER_QR, Some("4798765432"), 1);
    assert_eq!(enrollment_shown(&lane), None);
}

#[test]
fn paying_while_the_customer_has_not_consented_shows_the_enrollment_abandoned() {
    let mut lane = Lane::consent();
    lane.feed(Event::Pay(pay(10_000)));
    assert_eq!(lane.label(), "awaiting_payment_creation");
    assert_eq!(enrollment_shown(&lane), Some("abandoned"));
}

#[test]
fn a_recovered_payment_shows_how_its_enrollment_ended() {
    let enrolled = recover(&enrollment_journal(&[
        JournalRecord::EnrollmentFinished {
            outcome: EnrollmentOutcome::Enrolled,
        },
        requested(1),
    ]));
    assert_eq!(enrolled.label(), "awaiting_payment");
    assert_eq!(enrollment_shown(&enrolled), Some("enrolled"));
    assert_eq!(enrolled.session.is_member(), Some(true));
}
