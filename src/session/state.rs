//! The session's state: an enum named for what the lane waits for, with its deadlines.
//!
//! Fields are private to the session module: the only way to a new state is `step` (or
//! `Session::recover`). Every state but `Idle` has a deadline, so `next_deadline` is `Some`
//! exactly while a session runs and a lane that hears nothing still reaches a final state.

use tokio::time::Instant;

use crate::domain::{Amount, LaneId, Msisdn, PaymentReference};

use super::effect::{CreatePaymentRequest, EnrollmentOutcome, Membership};
use super::event::{LoginAccessToken, PaymentState};
use super::ids::{CallId, SessionId};

/// One lane's session: idle, or one checkout in progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub(super) lane: LaneId,
    /// The next `CallId` to hand out; never reused while the lane runs.
    pub(super) next_call: u64,
    pub(super) state: State,
}

/// What the lane waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    Idle,
    AwaitingQrExchange {
        ctx: Ctx,
        clear_text: Option<Msisdn>,
        call: CallId,
        deadline: Instant,
    },
    AwaitingMembership {
        ctx: Ctx,
        msisdn: Msisdn,
        call: CallId,
        deadline: Instant,
    },
    ReadyForPayment {
        ctx: Ctx,
        customer: Customer,
        abandon_at: Instant,
    },
    AwaitingLoginStart {
        ctx: Ctx,
        customer: Customer,
        call: CallId,
        deadline: Instant,
    },
    AwaitingConsent {
        ctx: Ctx,
        customer: Customer,
        login: Login,
    },
    /// Consent is journalled: finishing the enrollment (userinfo, then the member store).
    AwaitingMemberStore {
        ctx: Ctx,
        customer: Customer,
        stage: Finishing,
        call: CallId,
        deadline: Instant,
    },
    AwaitingPaymentCreation {
        ctx: Ctx,
        customer: Customer,
        payment: Payment,
        call: CallId,
        deadline: Instant,
    },
    AwaitingPayment {
        ctx: Ctx,
        customer: Customer,
        payment: Payment,
        follow: Follow,
    },
    AwaitingCapture {
        ctx: Ctx,
        customer: Customer,
        payment: Payment,
        follow: Follow,
        call: CallId,
        deadline: Instant,
    },
    AwaitingCancel {
        ctx: Ctx,
        customer: Customer,
        payment: Payment,
        follow: Follow,
        call: CallId,
        deadline: Instant,
    },
}

/// Every state label, in flow order: the values of `lanehub_lane_session_state{state}`.
pub const STATE_LABELS: [&str; 11] = [
    "idle",
    "awaiting_qr_exchange",
    "awaiting_membership",
    "ready_for_payment",
    "awaiting_login_start",
    "awaiting_consent",
    "awaiting_member_store",
    "awaiting_payment_creation",
    "awaiting_payment",
    "awaiting_capture",
    "awaiting_cancel",
];

/// Every state label (see `STATE_LABELS`).
pub fn state_labels() -> &'static [&'static str] {
    &STATE_LABELS
}

/// What every state of a running session knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ctx {
    pub id: SessionId,
    pub started_at: Instant,
    /// The current customer's QR text, to recognise the same QR scanned again.
    pub qr: String,
    pub check_in: CheckIn,
    /// A Vipps call failed fast; the terminal was told and will be told when calls work again.
    pub vipps_degraded: bool,
    /// The store could not be written; the terminal was told nothing is final yet.
    pub store_down: bool,
    /// The state's keyed call was not sent (its journal write failed) and is owed.
    pub owed: Option<super::store_fault::Owed>,
    /// How this customer's enrollment ended, once it has.
    pub enrollment: Option<EnrollmentOutcome>,
    /// Whether the journal holds the session's start. A new checkout journals it with its
    /// customer's identification, in one record (`SessionStartedIdentified`).
    pub start_journalled: bool,
}

/// The best-effort check-in, followed beside the main flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum CheckIn {
    NotSent,
    Pending { call: CallId, deadline: Instant },
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Customer {
    pub msisdn: Msisdn,
    pub membership: Membership,
}

/// A pending call that is given up (not failed) at `timeout_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pending {
    pub call: CallId,
    pub timeout_at: Instant,
}

/// Waiting for the customer's Login consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Login {
    pub auth_req_id: String,
    pub interval: std::time::Duration,
    pub next_poll: Instant,
    pub poll: Option<Pending>,
    pub expires_at: Instant,
    /// Whether `expires_at` is Vipps' own expiry; otherwise the lane stops waiting first
    /// (`login_timeout`, or the recovery window) while the Login stays open at Vipps.
    pub vipps_expiry: bool,
}

/// How far a consented enrollment has got; each stage's input is journalled before its call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Finishing {
    /// Fetching userinfo with the journalled token; `attempts` sent so far.
    Userinfo {
        token: LoginAccessToken,
        attempts: u32,
    },
    /// Storing the member from the journalled userinfo.
    Store { name: Option<String> },
}

/// The session's one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Payment {
    pub reference: PaymentReference,
    pub amount: Amount,
    /// The create body, for retries; `None` for a payment recovered from the journal, which is
    /// never created again (the customer may have left).
    pub request: Option<CreatePaymentRequest>,
    /// When the latest create was sent (or the payment was recovered).
    pub created_at: Instant,
    /// Vipps answered 201, or a read-back found the payment.
    pub confirmed: bool,
    /// A create attempt's outcome was unknown, so the payment may exist.
    pub maybe_created: bool,
    pub create_attempts: u32,
    pub capture_attempts: u32,
    pub cancel: CancelIntent,
    pub last_state: Option<PaymentState>,
    pub last_error: Option<String>,
}

/// Whether the cashier asked to cancel, and how far that got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CancelIntent {
    None,
    /// `cancelTransactionOnly: true`; `attempts` sent so far (0: not yet sent).
    TransactionOnly {
        attempts: u32,
    },
    /// The payment was authorised meanwhile: a full cancel.
    Full {
        attempts: u32,
    },
}

/// How the session follows a created payment to its final state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Follow {
    /// Expiry plus margin: the safety net that starts the final read-back.
    pub deadline: Instant,
    pub next_poll: Instant,
    pub read: Option<Pending>,
    /// A webhook arrived while a read was in flight: read again as soon as it answers.
    pub reread: bool,
    /// Set when the safety net fired: give up at this instant.
    pub give_up_at: Option<Instant>,
}

/// The session context of a state, borrowed as the state is: every state but `Idle` has one.
macro_rules! session_ctx {
    ($state:expr) => {
        match $state {
            State::Idle => None,
            State::AwaitingQrExchange { ctx, .. }
            | State::AwaitingMembership { ctx, .. }
            | State::ReadyForPayment { ctx, .. }
            | State::AwaitingLoginStart { ctx, .. }
            | State::AwaitingConsent { ctx, .. }
            | State::AwaitingMemberStore { ctx, .. }
            | State::AwaitingPaymentCreation { ctx, .. }
            | State::AwaitingPayment { ctx, .. }
            | State::AwaitingCapture { ctx, .. }
            | State::AwaitingCancel { ctx, .. } => Some(ctx),
        }
    };
}

impl State {
    pub(super) fn label(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::AwaitingQrExchange { .. } => "awaiting_qr_exchange",
            State::AwaitingMembership { .. } => "awaiting_membership",
            State::ReadyForPayment { .. } => "ready_for_payment",
            State::AwaitingLoginStart { .. } => "awaiting_login_start",
            State::AwaitingConsent { .. } => "awaiting_consent",
            State::AwaitingMemberStore { .. } => "awaiting_member_store",
            State::AwaitingPaymentCreation { .. } => "awaiting_payment_creation",
            State::AwaitingPayment { .. } => "awaiting_payment",
            State::AwaitingCapture { .. } => "awaiting_capture",
            State::AwaitingCancel { .. } => "awaiting_cancel",
        }
    }

    pub(super) fn ctx(&self) -> Option<&Ctx> {
        session_ctx!(self)
    }

    pub(super) fn ctx_mut(&mut self) -> Option<&mut Ctx> {
        session_ctx!(self)
    }

    pub(super) fn customer(&self) -> Option<&Customer> {
        match self {
            State::Idle | State::AwaitingQrExchange { .. } | State::AwaitingMembership { .. } => {
                None
            }
            State::ReadyForPayment { customer, .. }
            | State::AwaitingLoginStart { customer, .. }
            | State::AwaitingConsent { customer, .. }
            | State::AwaitingMemberStore { customer, .. }
            | State::AwaitingPaymentCreation { customer, .. }
            | State::AwaitingPayment { customer, .. }
            | State::AwaitingCapture { customer, .. }
            | State::AwaitingCancel { customer, .. } => Some(customer),
        }
    }

    pub(super) fn payment(&self) -> Option<&Payment> {
        match self {
            State::Idle
            | State::AwaitingQrExchange { .. }
            | State::AwaitingMembership { .. }
            | State::ReadyForPayment { .. }
            | State::AwaitingLoginStart { .. }
            | State::AwaitingConsent { .. }
            | State::AwaitingMemberStore { .. } => None,
            State::AwaitingPaymentCreation { payment, .. }
            | State::AwaitingPayment { payment, .. }
            | State::AwaitingCapture { payment, .. }
            | State::AwaitingCancel { payment, .. } => Some(payment),
        }
    }

    /// Whether `call` is the state's own pending call.
    pub(super) fn awaits_own(&self, call: CallId) -> bool {
        match self {
            State::Idle | State::ReadyForPayment { .. } => false,
            State::AwaitingQrExchange { call: c, .. }
            | State::AwaitingMembership { call: c, .. }
            | State::AwaitingLoginStart { call: c, .. }
            | State::AwaitingMemberStore { call: c, .. }
            | State::AwaitingPaymentCreation { call: c, .. }
            | State::AwaitingCapture { call: c, .. }
            | State::AwaitingCancel { call: c, .. } => *c == call,
            State::AwaitingConsent { login, .. } => login.poll.is_some_and(|p| p.call == call),
            State::AwaitingPayment { follow, .. } => follow.read.is_some_and(|p| p.call == call),
        }
    }

    /// Whether `call` is the pending check-in.
    pub(super) fn awaits_check_in(&self, call: CallId) -> bool {
        matches!(
            self.ctx().map(|c| &c.check_in),
            Some(CheckIn::Pending { call: c, .. }) if *c == call
        )
    }

    /// The earliest instant at which this state (not its check-in) has something to do.
    pub(super) fn own_deadline(&self) -> Option<Instant> {
        match self {
            State::Idle => None,
            State::AwaitingQrExchange { deadline, .. }
            | State::AwaitingMembership { deadline, .. }
            | State::AwaitingLoginStart { deadline, .. }
            | State::AwaitingMemberStore { deadline, .. }
            | State::AwaitingPaymentCreation { deadline, .. }
            | State::AwaitingCapture { deadline, .. }
            | State::AwaitingCancel { deadline, .. } => Some(*deadline),
            State::ReadyForPayment { abandon_at, .. } => Some(*abandon_at),
            State::AwaitingConsent { login, .. } => {
                let poll = login.poll.map_or(login.next_poll, |p| p.timeout_at);
                Some(poll.min(login.expires_at))
            }
            State::AwaitingPayment { follow, .. } => {
                let poll = follow.read.map_or(follow.next_poll, |p| p.timeout_at);
                let net = follow.give_up_at.unwrap_or(follow.deadline);
                Some(poll.min(net))
            }
        }
    }
}

/// A read-only view of a session for terminals, metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: &'static str,
    pub session_id: Option<SessionId>,
    /// Full number: mask it (`Display` does) before it reaches a log.
    pub customer: Option<Msisdn>,
    pub membership: Option<Membership>,
    pub payment: Option<PaymentSnapshot>,
    pub enrollment: Option<EnrollmentProgress>,
    pub next_deadline: Option<Instant>,
}

/// Where the customer's enrollment stands, as the terminal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnrollmentProgress {
    Starting,
    AwaitingConsent,
    StoringMember,
    /// Ended, with the outcome's label (`enrolled`, `abandoned`, …).
    Ended(&'static str),
}

impl EnrollmentProgress {
    pub fn label(self) -> &'static str {
        match self {
            EnrollmentProgress::Starting => "starting",
            EnrollmentProgress::AwaitingConsent => "awaiting_consent",
            EnrollmentProgress::StoringMember => "storing_member",
            EnrollmentProgress::Ended(outcome) => outcome,
        }
    }
}

/// The session's payment as last seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentSnapshot {
    pub reference: PaymentReference,
    pub amount: Amount,
    /// The latest state Vipps reported, if any.
    pub state: Option<PaymentState>,
    pub cancel_requested: bool,
}

impl Session {
    /// An idle session for a lane.
    pub fn new(lane: LaneId) -> Self {
        Self {
            lane,
            next_call: 0,
            state: State::Idle,
        }
    }

    pub fn lane(&self) -> &LaneId {
        &self.lane
    }

    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    /// The current state's label (one of `STATE_LABELS`).
    pub fn state_label(&self) -> &'static str {
        self.state.label()
    }

    pub fn session_id(&self) -> Option<&SessionId> {
        self.state.ctx().map(|c| &c.id)
    }

    /// The identified customer's number.
    pub fn customer(&self) -> Option<&Msisdn> {
        self.state.customer().map(|c| &c.msisdn)
    }

    fn enrollment(&self) -> Option<EnrollmentProgress> {
        match &self.state {
            State::AwaitingLoginStart { .. } => Some(EnrollmentProgress::Starting),
            State::AwaitingConsent { .. } => Some(EnrollmentProgress::AwaitingConsent),
            State::AwaitingMemberStore { .. } => Some(EnrollmentProgress::StoringMember),
            state => state
                .ctx()
                .and_then(|c| c.enrollment.as_ref())
                .map(|o| EnrollmentProgress::Ended(o.label())),
        }
    }

    pub fn membership(&self) -> Option<Membership> {
        self.state.customer().map(|c| c.membership)
    }

    /// `Some(true)` for a member, `Some(false)` for a non-member, `None` if not known.
    pub fn is_member(&self) -> Option<bool> {
        self.membership().and_then(Membership::is_member)
    }

    pub fn payment_reference(&self) -> Option<&PaymentReference> {
        self.state.payment().map(|p| &p.reference)
    }

    pub fn payment_amount(&self) -> Option<Amount> {
        self.state.payment().map(|p| p.amount)
    }

    /// The latest payment state Vipps reported.
    pub fn payment_state(&self) -> Option<PaymentState> {
        self.state.payment().and_then(|p| p.last_state)
    }

    /// When the actor must feed the next `Tick`; `None` only while idle.
    pub fn next_deadline(&self) -> Option<Instant> {
        let check_in = match self.state.ctx().map(|c| &c.check_in) {
            Some(CheckIn::Pending { deadline, .. }) => Some(*deadline),
            Some(CheckIn::NotSent | CheckIn::Done) | None => None,
        };
        match (self.state.own_deadline(), check_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state_label(),
            session_id: self.session_id().cloned(),
            customer: self.customer().cloned(),
            membership: self.membership(),
            payment: self.state.payment().map(|p| PaymentSnapshot {
                reference: p.reference.clone(),
                amount: p.amount,
                state: p.last_state,
                cancel_requested: p.cancel != CancelIntent::None,
            }),
            enrollment: self.enrollment(),
            next_deadline: self.next_deadline(),
        }
    }
}

/// When the actor must feed the next `Tick`; `None` only while idle.
pub fn next_deadline(session: &Session) -> Option<Instant> {
    session.next_deadline()
}
