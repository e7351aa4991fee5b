//! What a step asks the lane actor to do, and how a session ends.
//!
//! The actor executes effects in order. A Vipps call that follows a `Persist` in the same list is
//! sent only after that `Persist` is durable; if the write fails, the actor skips the call and
//! feeds its failure event with `CallError::Unavailable` (the call was certainly not sent).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::{Amount, IdempotencyKey, LaneId, Msisdn, PaymentReference};

use super::event::{LoginAccessToken, OrderLine, Userinfo};
use super::ids::{CallId, SessionId};
use super::journal::JournalRecord;

/// One thing for the actor to do; calls carry the `CallId` their answer must echo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Exchange the complete QR text for a phone number (`POST /qr/v1/exchange`).
    ExchangeQr { call: CallId, qr: String },
    /// Look the customer up in lanehub's own loyalty store.
    LookupMembership { call: CallId, msisdn: Msisdn },
    /// Best-effort check-in; only sent for Norwegian numbers with known membership.
    SendCheckIn {
        call: CallId,
        msisdn: Msisdn,
        is_member: bool,
    },
    /// Start Vipps Login from the phone number (CIBA).
    StartLogin { call: CallId, msisdn: Msisdn },
    /// Poll the token endpoint once.
    PollLogin { call: CallId, auth_req_id: String },
    /// Fetch userinfo with the Login access token (follows the journalled consent).
    FetchUserinfo {
        call: CallId,
        token: LoginAccessToken,
    },
    /// Store the new member with their consents.
    StoreMember { call: CallId, member: NewMember },
    /// Write a journal row for this session; durable before any Vipps call after it.
    Persist {
        session: SessionId,
        record: JournalRecord,
    },
    /// `POST /epayment/v1/payments`.
    CreatePayment {
        call: CallId,
        request: CreatePaymentRequest,
    },
    /// `GET /epayment/v1/payments/{reference}`.
    ReadPayment {
        call: CallId,
        reference: PaymentReference,
    },
    /// `POST …/capture` of the full amount.
    CapturePayment {
        call: CallId,
        reference: PaymentReference,
        idempotency_key: IdempotencyKey,
        amount: Amount,
    },
    /// `POST …/cancel`.
    CancelPayment {
        call: CallId,
        reference: PaymentReference,
        idempotency_key: IdempotencyKey,
        cancel_transaction_only: bool,
    },
    /// Tell the lane's terminals.
    NotifyTerminal(TerminalEvent),
    /// A fact to count (the session-end fact is `SessionEnded`).
    Record(Fact),
    /// The session is over; the lane is idle again.
    SessionEnded {
        session: SessionId,
        outcome: Outcome,
        /// Since the session started, or since it was recovered from the journal.
        duration: Duration,
    },
}

impl Effect {
    /// The call this effect asks for, if it is a call.
    pub fn call(&self) -> Option<CallId> {
        match self {
            Effect::ExchangeQr { call, .. }
            | Effect::LookupMembership { call, .. }
            | Effect::SendCheckIn { call, .. }
            | Effect::StartLogin { call, .. }
            | Effect::PollLogin { call, .. }
            | Effect::FetchUserinfo { call, .. }
            | Effect::StoreMember { call, .. }
            | Effect::CreatePayment { call, .. }
            | Effect::ReadPayment { call, .. }
            | Effect::CapturePayment { call, .. }
            | Effect::CancelPayment { call, .. } => Some(*call),
            Effect::Persist { .. }
            | Effect::NotifyTerminal(_)
            | Effect::Record(_)
            | Effect::SessionEnded { .. } => None,
        }
    }

    /// The idempotency key of a payment modification or create, if this is one.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        match self {
            Effect::CreatePayment { request, .. } => Some(&request.idempotency_key),
            Effect::CapturePayment {
                idempotency_key, ..
            }
            | Effect::CancelPayment {
                idempotency_key, ..
            } => Some(idempotency_key),
            Effect::ExchangeQr { .. }
            | Effect::LookupMembership { .. }
            | Effect::SendCheckIn { .. }
            | Effect::StartLogin { .. }
            | Effect::PollLogin { .. }
            | Effect::FetchUserinfo { .. }
            | Effect::StoreMember { .. }
            | Effect::Persist { .. }
            | Effect::ReadPayment { .. }
            | Effect::NotifyTerminal(_)
            | Effect::Record(_)
            | Effect::SessionEnded { .. } => None,
        }
    }
}

/// Everything ePayment create needs; kept so a retry sends exactly the same body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatePaymentRequest {
    pub reference: PaymentReference,
    pub idempotency_key: IdempotencyKey,
    pub amount: Amount,
    /// `customer.phoneNumber`; the flow is `PUSH_MESSAGE`, `CUSTOMER_PRESENT`, `WALLET`.
    pub msisdn: Msisdn,
    pub description: String,
    /// Attached at creation (it can be sent only once).
    pub receipt: Option<Receipt>,
}

/// The receipt sent with the payment; `bottomLine.currency` is the payment's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub order_lines: Vec<OrderLine>,
    /// `bottomLine.posId`.
    pub pos_id: LaneId,
    pub receipt_number: Option<String>,
}

/// A new member to store, with what they consented to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewMember {
    /// The number the session identified (the one Login was started for).
    pub msisdn: Msisdn,
    pub userinfo: Userinfo,
}

/// Whether the customer is in the loyalty club.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Membership {
    Member,
    NonMember,
    /// The lookup failed or timed out: no check-in, no enrollment offer.
    Unknown,
}

impl Membership {
    pub const LABELS: [&'static str; 3] = ["member", "non_member", "unknown"];

    pub fn label(self) -> &'static str {
        match self {
            Membership::Member => "member",
            Membership::NonMember => "non_member",
            Membership::Unknown => "unknown",
        }
    }

    /// `Some(true)` for members, `Some(false)` for non-members, `None` when unknown.
    pub fn is_member(self) -> Option<bool> {
        match self {
            Membership::Member => Some(true),
            Membership::NonMember => Some(false),
            Membership::Unknown => None,
        }
    }
}

/// How the best-effort check-in went; never blocks anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckInResult {
    Sent,
    Failed,
    TimedOut,
    /// Not sent: the number is not Norwegian or membership is unknown.
    Skipped,
}

/// How an enrollment ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EnrollmentOutcome {
    Enrolled,
    Denied,
    Expired,
    Failed {
        detail: String,
    },
    /// Vipps could not be reached.
    Unavailable,
    /// Ended by the cashier (pay, cancel, reset), a new customer's QR, or the lane's
    /// `login_timeout` while the Login is still open at Vipps: the late-enrollment follower
    /// takes over, and a consent given later still enrolls the customer.
    Abandoned,
}

impl EnrollmentOutcome {
    pub const LABELS: [&'static str; 6] = [
        "enrolled",
        "denied",
        "expired",
        "failed",
        "unavailable",
        "abandoned",
    ];

    pub fn label(&self) -> &'static str {
        match self {
            EnrollmentOutcome::Enrolled => "enrolled",
            EnrollmentOutcome::Denied => "denied",
            EnrollmentOutcome::Expired => "expired",
            EnrollmentOutcome::Failed { .. } => "failed",
            EnrollmentOutcome::Unavailable => "unavailable",
            EnrollmentOutcome::Abandoned => "abandoned",
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Captured in full.
    Paid,
    /// The customer declined (ABORTED).
    Declined,
    /// The customer did not act in time (EXPIRED).
    Expired,
    /// Cancelled by the cashier, before or after authorisation (nothing was captured).
    Cancelled,
    Failed {
        reason: FailReason,
    },
    /// Vipps could not be reached and no payment exists: take another payment method.
    Unavailable,
    /// No cashier action for the idle timeout.
    Abandoned,
    /// The cashier ended the session without a Vipps payment (e.g. paid by card).
    Closed,
    /// The lane restarted during the session and nothing was in flight.
    Interrupted,
}

impl Outcome {
    pub const LABELS: [&'static str; 9] = [
        "paid",
        "declined",
        "expired",
        "cancelled",
        "failed",
        "unavailable",
        "abandoned",
        "closed",
        "interrupted",
    ];

    /// The `outcome` metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Paid => "paid",
            Outcome::Declined => "declined",
            Outcome::Expired => "expired",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed { .. } => "failed",
            Outcome::Unavailable => "unavailable",
            Outcome::Abandoned => "abandoned",
            Outcome::Closed => "closed",
            Outcome::Interrupted => "interrupted",
        }
    }
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailReason {
    /// The QR exchange refused the QR and it holds no clear-text number.
    QrNotRecognised,
    /// The QR exchange did not answer and the QR holds no clear-text number.
    IdentificationFailed { detail: String },
    /// ePayment create answered a final 4xx.
    PaymentRejected { status: u16, detail: String },
    /// The payment never appeared, after every create attempt or after a restart.
    PaymentNotCreated,
    /// Authorised but not captured; the reservation is left to expire or the back office.
    CaptureFailed { detail: String },
    /// Vipps reports a captured amount other than the payment's amount.
    CaptureMismatch { captured: u64 },
    /// Authorised, the cashier cancelled, and cancelling failed: money is still reserved.
    CancelFailed { detail: String },
    /// No final state even after the payment's expiry and a final read-back.
    NoFinalState,
}

impl FailReason {
    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            FailReason::QrNotRecognised => "qr_not_recognised",
            FailReason::IdentificationFailed { .. } => "identification_failed",
            FailReason::PaymentRejected { .. } => "payment_rejected",
            FailReason::PaymentNotCreated => "payment_not_created",
            FailReason::CaptureFailed { .. } => "capture_failed",
            FailReason::CaptureMismatch { .. } => "capture_mismatch",
            FailReason::CancelFailed { .. } => "cancel_failed",
            FailReason::NoFinalState => "no_final_state",
        }
    }
}

/// Facts the actor counts (sessions are counted from `Effect::SessionEnded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fact {
    /// `lanehub_membership_checks_total{result}`.
    MembershipChecked { result: Membership },
    /// `lanehub_enrollments_total{outcome}`.
    EnrollmentFinished { outcome: EnrollmentOutcome },
    /// `lanehub_payments_total{outcome}`; `captured` feeds the captured-amount counter.
    PaymentFinished {
        outcome: Outcome,
        captured: Option<Amount>,
    },
}

/// A cashier command, as named in rejections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    CustomerQr,
    Enroll,
    Pay,
    Cancel,
    Reset,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::CustomerQr => "customer_qr",
            Command::Enroll => "enroll",
            Command::Pay => "pay",
            Command::Cancel => "cancel",
            Command::Reset => "reset",
        }
    }
}

/// Why a cashier command (or a customer QR) was refused; the state is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Rejection {
    #[error("no customer: scan the customer's Vipps QR first")]
    NoCustomer,
    #[error("no session to cancel")]
    NoSession,
    #[error("the customer is still being identified: try again in a moment")]
    CustomerNotIdentified,
    #[error("the customer is already a member")]
    AlreadyMember,
    #[error("membership could not be looked up, so enrollment is not offered")]
    MembershipUnknown,
    #[error("an enrollment is already in progress")]
    EnrollmentInProgress,
    #[error("the new member is being saved: try again in a moment")]
    EnrollmentFinishing,
    #[error("a payment is in progress: wait for it or cancel it")]
    PaymentInProgress,
    #[error("this session already has a payment; one payment per session")]
    PaymentAlreadyRequested,
    #[error("the payment is being captured and can no longer be cancelled here")]
    CaptureInProgress,
    #[error("cancelling is already requested")]
    CancelAlreadyRequested,
    #[error("invalid payment: {problem}")]
    InvalidPayment { problem: String },
}

impl Rejection {
    /// A bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::NoCustomer => "no_customer",
            Rejection::NoSession => "no_session",
            Rejection::CustomerNotIdentified => "customer_not_identified",
            Rejection::AlreadyMember => "already_member",
            Rejection::MembershipUnknown => "membership_unknown",
            Rejection::EnrollmentInProgress => "enrollment_in_progress",
            Rejection::EnrollmentFinishing => "enrollment_finishing",
            Rejection::PaymentInProgress => "payment_in_progress",
            Rejection::PaymentAlreadyRequested => "payment_already_requested",
            Rejection::CaptureInProgress => "capture_in_progress",
            Rejection::CancelAlreadyRequested => "cancel_already_requested",
            Rejection::InvalidPayment { .. } => "invalid_payment",
        }
    }
}

/// What the lane's terminals are told; `message()` is a default cashier text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum TerminalEvent {
    /// A customer QR started a session.
    CustomerScanned,
    /// A different customer's QR replaced the customer; identification restarts.
    CustomerReplaced,
    CustomerIdentified {
        /// Masked (`47******67`).
        phone: String,
        membership: Membership,
    },
    CheckIn {
        result: CheckInResult,
    },
    EnrollmentRequested,
    /// The customer has a consent request in the Vipps app.
    EnrollmentAwaitingConsent,
    EnrollmentFinished {
        outcome: EnrollmentOutcome,
        /// The new member's name, for a welcome.
        name: Option<String>,
    },
    PaymentRequested {
        amount: Amount,
    },
    /// Vipps accepted the request; the customer has it in the app.
    PaymentAwaitingCustomer {
        amount: Amount,
    },
    /// The customer approved; capturing.
    PaymentAuthorised {
        amount: Amount,
    },
    CancelRequested,
    /// Calls to Vipps fail fast; an existing payment is still followed.
    VippsUnavailable {
        payment_followed: bool,
    },
    VippsAvailable,
    /// The store cannot be written: nothing is final, no goods, no other payment yet.
    StoreUnavailable,
    /// The store takes writes again; the session carries on.
    StoreAvailable,
    /// A session was rebuilt from the journal after a restart.
    SessionRecovered {
        payment: Option<Amount>,
    },
    CommandRejected {
        command: Command,
        rejection: Rejection,
    },
    SessionEnded {
        outcome: Outcome,
        amount: Option<Amount>,
    },
}

/// The stable code of a cashier message: what a terminal switches on (the text is for people).
/// Serialised in snake case, e.g. `payment_approved`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CashierCode {
    CustomerScanned,
    CustomerReplaced,
    MemberWelcomed,
    NonMember,
    MembershipUnknown,
    CheckInSent,
    CheckInFailed,
    EnrollmentStarted,
    EnrollmentAwaitingConsent,
    EnrollmentCompleted,
    EnrollmentDeclined,
    EnrollmentExpired,
    EnrollmentAbandoned,
    VippsUnavailable,
    EnrollmentFailed,
    PaymentRequested,
    PaymentAuthorised,
    CancelRequested,
    VippsAvailable,
    StoreUnavailable,
    StoreAvailable,
    SessionRecovered,
    CommandRejected,
    PaymentApproved,
    PaymentDeclined,
    PaymentExpired,
    PaymentCancelled,
    QrNotRecognised,
    PaymentFailed,
    SessionAbandoned,
    SessionClosed,
    SessionInterrupted,
}

impl CashierCode {
    /// Every code, as sent.
    pub const LABELS: [&'static str; 32] = [
        "customer_scanned",
        "customer_replaced",
        "member_welcomed",
        "non_member",
        "membership_unknown",
        "check_in_sent",
        "check_in_failed",
        "enrollment_started",
        "enrollment_awaiting_consent",
        "enrollment_completed",
        "enrollment_declined",
        "enrollment_expired",
        "enrollment_abandoned",
        "vipps_unavailable",
        "enrollment_failed",
        "payment_requested",
        "payment_authorised",
        "cancel_requested",
        "vipps_available",
        "store_unavailable",
        "store_available",
        "session_recovered",
        "command_rejected",
        "payment_approved",
        "payment_declined",
        "payment_expired",
        "payment_cancelled",
        "qr_not_recognised",
        "payment_failed",
        "session_abandoned",
        "session_closed",
        "session_interrupted",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CashierCode::CustomerScanned => "customer_scanned",
            CashierCode::CustomerReplaced => "customer_replaced",
            CashierCode::MemberWelcomed => "member_welcomed",
            CashierCode::NonMember => "non_member",
            CashierCode::MembershipUnknown => "membership_unknown",
            CashierCode::CheckInSent => "check_in_sent",
            CashierCode::CheckInFailed => "check_in_failed",
            CashierCode::EnrollmentStarted => "enrollment_started",
            CashierCode::EnrollmentAwaitingConsent => "enrollment_awaiting_consent",
            CashierCode::EnrollmentCompleted => "enrollment_completed",
            CashierCode::EnrollmentDeclined => "enrollment_declined",
            CashierCode::EnrollmentExpired => "enrollment_expired",
            CashierCode::EnrollmentAbandoned => "enrollment_abandoned",
            CashierCode::VippsUnavailable => "vipps_unavailable",
            CashierCode::EnrollmentFailed => "enrollment_failed",
            CashierCode::PaymentRequested => "payment_requested",
            CashierCode::PaymentAuthorised => "payment_authorised",
            CashierCode::CancelRequested => "cancel_requested",
            CashierCode::VippsAvailable => "vipps_available",
            CashierCode::StoreUnavailable => "store_unavailable",
            CashierCode::StoreAvailable => "store_available",
            CashierCode::SessionRecovered => "session_recovered",
            CashierCode::CommandRejected => "command_rejected",
            CashierCode::PaymentApproved => "payment_approved",
            CashierCode::PaymentDeclined => "payment_declined",
            CashierCode::PaymentExpired => "payment_expired",
            CashierCode::PaymentCancelled => "payment_cancelled",
            CashierCode::QrNotRecognised => "qr_not_recognised",
            CashierCode::PaymentFailed => "payment_failed",
            CashierCode::SessionAbandoned => "session_abandoned",
            CashierCode::SessionClosed => "session_closed",
            CashierCode::SessionInterrupted => "session_interrupted",
        }
    }
}

impl TerminalEvent {
    /// The stable code terminals switch on.
    pub fn code(&self) -> CashierCode {
        use CashierCode as C;
        match self {
            TerminalEvent::CustomerScanned => C::CustomerScanned,
            TerminalEvent::CustomerReplaced => C::CustomerReplaced,
            TerminalEvent::CustomerIdentified { membership, .. } => match membership {
                Membership::Member => C::MemberWelcomed,
                Membership::NonMember => C::NonMember,
                Membership::Unknown => C::MembershipUnknown,
            },
            TerminalEvent::CheckIn { result } => match result {
                CheckInResult::Sent => C::CheckInSent,
                _ => C::CheckInFailed,
            },
            TerminalEvent::EnrollmentRequested => C::EnrollmentStarted,
            TerminalEvent::EnrollmentAwaitingConsent => C::EnrollmentAwaitingConsent,
            TerminalEvent::EnrollmentFinished { outcome, .. } => match outcome {
                EnrollmentOutcome::Enrolled => C::EnrollmentCompleted,
                EnrollmentOutcome::Denied => C::EnrollmentDeclined,
                EnrollmentOutcome::Expired => C::EnrollmentExpired,
                EnrollmentOutcome::Abandoned => C::EnrollmentAbandoned,
                EnrollmentOutcome::Unavailable => C::VippsUnavailable,
                EnrollmentOutcome::Failed { .. } => C::EnrollmentFailed,
            },
            TerminalEvent::PaymentRequested { .. } => C::PaymentRequested,
            TerminalEvent::PaymentAwaitingCustomer { .. } => C::PaymentRequested,
            TerminalEvent::PaymentAuthorised { .. } => C::PaymentAuthorised,
            TerminalEvent::CancelRequested => C::CancelRequested,
            TerminalEvent::VippsUnavailable { .. } => C::VippsUnavailable,
            TerminalEvent::VippsAvailable => C::VippsAvailable,
            TerminalEvent::StoreUnavailable => C::StoreUnavailable,
            TerminalEvent::StoreAvailable => C::StoreAvailable,
            TerminalEvent::SessionRecovered { .. } => C::SessionRecovered,
            TerminalEvent::CommandRejected { .. } => C::CommandRejected,
            TerminalEvent::SessionEnded { outcome, .. } => match outcome {
                Outcome::Paid => C::PaymentApproved,
                Outcome::Declined => C::PaymentDeclined,
                Outcome::Expired => C::PaymentExpired,
                Outcome::Cancelled => C::PaymentCancelled,
                Outcome::Failed {
                    reason: FailReason::QrNotRecognised,
                } => C::QrNotRecognised,
                Outcome::Failed { .. } => C::PaymentFailed,
                Outcome::Unavailable => C::VippsUnavailable,
                Outcome::Abandoned => C::SessionAbandoned,
                Outcome::Closed => C::SessionClosed,
                Outcome::Interrupted => C::SessionInterrupted,
            },
        }
    }

    /// A short default message for the cashier.
    pub fn message(&self) -> String {
        match self {
            TerminalEvent::CustomerScanned => "Vipps QR scanned: identifying the customer".into(),
            TerminalEvent::CustomerReplaced => {
                "New customer QR: identifying the new customer".into()
            }
            TerminalEvent::CustomerIdentified { phone, membership } => match membership {
                Membership::Member => format!("Member {phone} welcomed"),
                Membership::NonMember => {
                    format!("Customer {phone} is not a member: offer enrollment")
                }
                Membership::Unknown => format!("Customer {phone}: membership could not be checked"),
            },
            TerminalEvent::CheckIn { result } => match result {
                CheckInResult::Sent => "Check-in shown in the customer's app".into(),
                CheckInResult::Failed => "Check-in failed (continue as normal)".into(),
                CheckInResult::TimedOut => "Check-in did not answer (continue as normal)".into(),
                CheckInResult::Skipped => "Check-in skipped".into(),
            },
            TerminalEvent::EnrollmentRequested => "Enrollment: asking Vipps".into(),
            TerminalEvent::EnrollmentAwaitingConsent => {
                "Enrollment: waiting for the customer to consent in Vipps".into()
            }
            TerminalEvent::EnrollmentFinished { outcome, name } => match outcome {
                EnrollmentOutcome::Enrolled => match name {
                    Some(name) => format!("Welcome to the club, {name}!"),
                    None => "New member enrolled".into(),
                },
                EnrollmentOutcome::Denied => "Enrollment declined by the customer".into(),
                EnrollmentOutcome::Expired => {
                    "Enrollment expired: the customer did not answer".into()
                }
                EnrollmentOutcome::Failed { detail } => format!("Enrollment failed: {detail}"),
                EnrollmentOutcome::Unavailable => "Enrollment failed: Vipps is unavailable".into(),
                EnrollmentOutcome::Abandoned => {
                    "Enrollment no longer awaited here: a consent in Vipps still enrolls".into()
                }
            },
            TerminalEvent::PaymentRequested { amount } => format!("Requesting payment of {amount}"),
            TerminalEvent::PaymentAwaitingCustomer { amount } => {
                format!("Waiting for the customer to approve {amount} in Vipps")
            }
            TerminalEvent::PaymentAuthorised { amount } => format!("Approved: capturing {amount}"),
            TerminalEvent::CancelRequested => "Cancelling the payment".into(),
            TerminalEvent::VippsUnavailable { payment_followed } => {
                if *payment_followed {
                    "Vipps is unavailable: still following the payment".into()
                } else {
                    "Vipps is unavailable: take another payment method".into()
                }
            }
            TerminalEvent::VippsAvailable => "Vipps is available again".into(),
            TerminalEvent::StoreUnavailable => {
                "lanehub cannot save: do not hand over goods yet, do not take another payment yet"
                    .into()
            }
            TerminalEvent::StoreAvailable => "lanehub can save again: carrying on".into(),
            TerminalEvent::SessionRecovered { payment } => match payment {
                Some(amount) => format!("Lane restarted: checking the payment of {amount}"),
                None => "Lane restarted: resuming the session".into(),
            },
            TerminalEvent::CommandRejected { command, rejection } => {
                format!("{} refused: {rejection}", command.as_str())
            }
            TerminalEvent::SessionEnded { outcome, amount } => {
                let amount = amount.map(|a| format!(" {a}")).unwrap_or_default();
                match outcome {
                    Outcome::Paid => format!("Payment approved{amount}"),
                    Outcome::Declined => "Payment declined by the customer".into(),
                    Outcome::Expired => "Payment expired: the customer did not answer".into(),
                    Outcome::Cancelled => "Cancelled".into(),
                    Outcome::Failed { reason } => match reason {
                        FailReason::QrNotRecognised => "QR not recognised: ask the customer to show their Vipps QR again".into(),
                        FailReason::IdentificationFailed { .. } => "Could not identify the customer: scan again or take another payment method".into(),
                        FailReason::PaymentRejected { detail, .. } => format!("Payment refused by Vipps: {detail}"),
                        FailReason::PaymentNotCreated => "The payment request did not reach Vipps: take another payment method".into(),
                        FailReason::CaptureFailed { .. } => "Approved but not captured: check the back office".into(),
                        FailReason::CaptureMismatch { .. } => "Captured amount differs: check the back office".into(),
                        FailReason::CancelFailed { .. } => "Could not cancel the approved payment: cancel it in the back office".into(),
                        FailReason::NoFinalState => "Payment status unknown: check the back office before handing over goods".into(),
                    },
                    Outcome::Unavailable => "Vipps is unavailable: take another payment method".into(),
                    Outcome::Abandoned => "Session abandoned".into(),
                    Outcome::Closed => "Session closed".into(),
                    Outcome::Interrupted => "Session ended by a lane restart".into(),
                }
            }
        }
    }
}

/// How `step` dealt with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Handled; the state may or may not have changed.
    Applied,
    /// A normal race or duplicate (stale answer, repeated QR, foreign webhook); nothing changed.
    Ignored(IgnoreReason),
    /// A cashier command or QR refused with a reason (also sent to the terminal); nothing changed.
    Rejected(Rejection),
    /// The event cannot happen in this state (a bug somewhere): log and count it; nothing changed.
    Invalid(InvalidTransition),
}

/// Why an event was ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IgnoreReason {
    /// An answer to a call the session no longer waits for (late, duplicate or superseded).
    StaleAnswer,
    /// The current customer's QR again.
    DuplicateQr,
    /// A webhook or login ping for a payment or login this session does not follow.
    UnknownReference,
    /// A signal while the call it would trigger is already in flight.
    CallInFlight,
    /// A reset with no session.
    NoSession,
}

impl IgnoreReason {
    pub fn kind(self) -> &'static str {
        match self {
            IgnoreReason::StaleAnswer => "stale_answer",
            IgnoreReason::DuplicateQr => "duplicate_qr",
            IgnoreReason::UnknownReference => "unknown_reference",
            IgnoreReason::CallInFlight => "call_in_flight",
            IgnoreReason::NoSession => "no_session",
        }
    }
}

/// An event that has no transition from the current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid transition: {event} in state {state}")]
pub struct InvalidTransition {
    pub state: &'static str,
    pub event: &'static str,
}

/// The result of one `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub session: super::state::Session,
    pub effects: Vec<Effect>,
    pub disposition: Disposition,
}
