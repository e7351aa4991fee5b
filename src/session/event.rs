//! Everything that can happen to a lane session: a customer QR, cashier commands, clock ticks,
//! webhook signals, and the answers to the calls the session asked for.
//!
//! Answers carry the `CallId` of the effect they answer. `step` ignores an answer to any call the
//! current state is not waiting for, so late, duplicate and out-of-order answers are harmless.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{Amount, Msisdn, PaymentReference};

use super::ids::{CallId, SessionId};

/// One input to `step`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A customer's Vipps QR was scanned (product scans never reach the session).
    CustomerQrScanned {
        /// The complete scanned text, sent as-is to the QR exchange.
        qr: String,
        /// The number parsed from a clear-text QR: the fallback when the exchange fails.
        clear_text: Option<Msisdn>,
        /// A fresh id, used only if this QR starts a session.
        session_id: SessionId,
    },
    /// Cashier: enroll the (non-member) customer in the loyalty club.
    Enroll,
    /// Cashier: send the payment request.
    Pay(PayRequest),
    /// Cashier: abort the checkout (cancels a payment that is not yet authorised).
    Cancel,
    /// Cashier: end the session; refused while a payment is in flight.
    Reset,
    /// The clock reached (or passed) `Session::next_deadline`; `step`'s `now` is the time.
    Tick,

    QrExchanged {
        call: CallId,
        msisdn: Msisdn,
    },
    QrExchangeFailed {
        call: CallId,
        error: CallError,
    },
    MembershipKnown {
        call: CallId,
        is_member: bool,
    },
    MembershipLookupFailed {
        call: CallId,
        reason: String,
    },
    CheckInSent {
        call: CallId,
    },
    CheckInFailed {
        call: CallId,
        error: CallError,
    },
    /// CIBA authentication accepted: the customer got a consent request.
    LoginStarted {
        call: CallId,
        auth_req_id: String,
        /// The server's polling interval.
        interval: Duration,
        /// The server's `expires_in`.
        expires_in: Duration,
    },
    LoginStartFailed {
        call: CallId,
        error: CallError,
    },
    /// Token poll: `authorization_pending`.
    LoginPending {
        call: CallId,
    },
    /// Token poll: `slow_down`; the interval grows by 5 s.
    LoginSlowDown {
        call: CallId,
    },
    /// Token poll succeeded: the customer consented. Vipps hands the token out only once.
    LoginConsented {
        call: CallId,
        /// The login the token is for: a late answer for the current login is still taken.
        auth_req_id: String,
        token: LoginAccessToken,
    },
    /// Token poll: `access_denied`.
    LoginDenied {
        call: CallId,
    },
    /// Token poll: `expired_token`.
    LoginExpired {
        call: CallId,
    },
    /// Token poll failed otherwise; an `Unknown` error just polls again.
    LoginFailed {
        call: CallId,
        error: CallError,
    },
    /// The `login.merchant-initiated.ping.v1` webhook: the token is ready to fetch.
    LoginPinged {
        auth_req_id: String,
    },
    /// Userinfo answered with the new member's details.
    UserinfoFetched {
        call: CallId,
        userinfo: Userinfo,
    },
    /// Userinfo failed; `Rejected` with 401 means the login token expired.
    UserinfoFailed {
        call: CallId,
        error: CallError,
    },
    MemberStored {
        call: CallId,
    },
    MemberStoreFailed {
        call: CallId,
        reason: String,
    },
    /// ePayment create answered 201.
    PaymentCreated {
        call: CallId,
    },
    PaymentCreateFailed {
        call: CallId,
        error: CallError,
    },
    /// A read-back (`GET /epayment/v1/payments/{reference}`).
    PaymentStatus {
        call: CallId,
        state: PaymentState,
        aggregate: Aggregate,
    },
    /// A read-back answered 404: the payment does not exist (yet).
    PaymentNotFound {
        call: CallId,
    },
    PaymentReadFailed {
        call: CallId,
        error: CallError,
    },
    /// A verified ePayment webhook for this reference: only a signal to read the payment back.
    WebhookReceived {
        reference: PaymentReference,
    },
    /// Capture answered; its body holds the payment's state and aggregate.
    PaymentCaptured {
        call: CallId,
        state: PaymentState,
        aggregate: Aggregate,
    },
    CaptureFailed {
        call: CallId,
        error: CallError,
    },
    /// Cancel answered; its body holds the payment's state and aggregate.
    PaymentCancelled {
        call: CallId,
        state: PaymentState,
        aggregate: Aggregate,
    },
    CancelFailed {
        call: CallId,
        error: CallError,
    },
    /// The keyed call was not sent: the journal record before it could not be written. The
    /// session owes the call and retries it (journal first) once the store can be written.
    JournalWriteFailed {
        call: CallId,
        detail: String,
    },
    /// The store stopped taking writes (a full disk, an I/O error): a store fault, not Vipps'.
    StoreFailed {
        detail: String,
    },
    /// The store takes writes again: what the session owes goes out now.
    StoreWritable,
}

impl Event {
    /// Every event label, for metrics and logs.
    pub const LABELS: [&'static str; 38] = [
        "customer_qr_scanned",
        "enroll",
        "pay",
        "cancel",
        "reset",
        "tick",
        "qr_exchanged",
        "qr_exchange_failed",
        "membership_known",
        "membership_lookup_failed",
        "check_in_sent",
        "check_in_failed",
        "login_started",
        "login_start_failed",
        "login_pending",
        "login_slow_down",
        "login_consented",
        "login_denied",
        "login_expired",
        "login_failed",
        "login_pinged",
        "userinfo_fetched",
        "userinfo_failed",
        "member_stored",
        "member_store_failed",
        "payment_created",
        "payment_create_failed",
        "payment_status",
        "payment_not_found",
        "payment_read_failed",
        "webhook_received",
        "payment_captured",
        "capture_failed",
        "payment_cancelled",
        "cancel_failed",
        "journal_write_failed",
        "store_failed",
        "store_writable",
    ];

    /// A bounded label naming the kind of event.
    pub fn label(&self) -> &'static str {
        match self {
            Event::CustomerQrScanned { .. } => "customer_qr_scanned",
            Event::Enroll => "enroll",
            Event::Pay(_) => "pay",
            Event::Cancel => "cancel",
            Event::Reset => "reset",
            Event::Tick => "tick",
            Event::QrExchanged { .. } => "qr_exchanged",
            Event::QrExchangeFailed { .. } => "qr_exchange_failed",
            Event::MembershipKnown { .. } => "membership_known",
            Event::MembershipLookupFailed { .. } => "membership_lookup_failed",
            Event::CheckInSent { .. } => "check_in_sent",
            Event::CheckInFailed { .. } => "check_in_failed",
            Event::LoginStarted { .. } => "login_started",
            Event::LoginStartFailed { .. } => "login_start_failed",
            Event::LoginPending { .. } => "login_pending",
            Event::LoginSlowDown { .. } => "login_slow_down",
            Event::LoginConsented { .. } => "login_consented",
            Event::LoginDenied { .. } => "login_denied",
            Event::LoginExpired { .. } => "login_expired",
            Event::LoginFailed { .. } => "login_failed",
            Event::LoginPinged { .. } => "login_pinged",
            Event::UserinfoFetched { .. } => "userinfo_fetched",
            Event::UserinfoFailed { .. } => "userinfo_failed",
            Event::MemberStored { .. } => "member_stored",
            Event::MemberStoreFailed { .. } => "member_store_failed",
            Event::PaymentCreated { .. } => "payment_created",
            Event::PaymentCreateFailed { .. } => "payment_create_failed",
            Event::PaymentStatus { .. } => "payment_status",
            Event::PaymentNotFound { .. } => "payment_not_found",
            Event::PaymentReadFailed { .. } => "payment_read_failed",
            Event::WebhookReceived { .. } => "webhook_received",
            Event::PaymentCaptured { .. } => "payment_captured",
            Event::CaptureFailed { .. } => "capture_failed",
            Event::PaymentCancelled { .. } => "payment_cancelled",
            Event::CancelFailed { .. } => "cancel_failed",
            Event::JournalWriteFailed { .. } => "journal_write_failed",
            Event::StoreFailed { .. } => "store_failed",
            Event::StoreWritable => "store_writable",
        }
    }

    /// The call this event answers, if it is an answer.
    pub fn call(&self) -> Option<CallId> {
        match self {
            Event::CustomerQrScanned { .. }
            | Event::Enroll
            | Event::Pay(_)
            | Event::Cancel
            | Event::Reset
            | Event::Tick
            | Event::LoginPinged { .. }
            | Event::WebhookReceived { .. }
            | Event::StoreFailed { .. }
            | Event::StoreWritable => None,
            Event::QrExchanged { call, .. }
            | Event::QrExchangeFailed { call, .. }
            | Event::MembershipKnown { call, .. }
            | Event::MembershipLookupFailed { call, .. }
            | Event::CheckInSent { call }
            | Event::CheckInFailed { call, .. }
            | Event::LoginStarted { call, .. }
            | Event::LoginStartFailed { call, .. }
            | Event::LoginPending { call }
            | Event::LoginSlowDown { call }
            | Event::LoginConsented { call, .. }
            | Event::LoginDenied { call }
            | Event::LoginExpired { call }
            | Event::LoginFailed { call, .. }
            | Event::UserinfoFetched { call, .. }
            | Event::UserinfoFailed { call, .. }
            | Event::MemberStored { call }
            | Event::MemberStoreFailed { call, .. }
            | Event::PaymentCreated { call }
            | Event::PaymentCreateFailed { call, .. }
            | Event::PaymentStatus { call, .. }
            | Event::PaymentNotFound { call }
            | Event::PaymentReadFailed { call, .. }
            | Event::PaymentCaptured { call, .. }
            | Event::CaptureFailed { call, .. }
            | Event::PaymentCancelled { call, .. }
            | Event::CancelFailed { call, .. }
            | Event::JournalWriteFailed { call, .. } => Some(*call),
        }
    }
}

/// How a Vipps call failed, as far as the session needs to know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// A final 4xx: the same call with the same idempotency key gets the same answer.
    #[error("rejected by Vipps ({status}): {detail}")]
    Rejected { status: u16, detail: String },
    /// The outcome is unknown (timeout, connection error, 5xx): the call may have taken effect.
    #[error("outcome unknown: {detail}")]
    Unknown { detail: String },
    /// The call was certainly not sent: the client's circuit breaker is open, or the actor did not
    /// send it because the `Persist` before it failed.
    #[error("not sent: {detail}")]
    Unavailable { detail: String },
}

impl CallError {
    /// A bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CallError::Rejected { .. } => "rejected",
            CallError::Unknown { .. } => "unknown",
            CallError::Unavailable { .. } => "unavailable",
        }
    }
}

/// The cashier's payment request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayRequest {
    pub amount: Amount,
    /// Shown in the app: 3 to 100 characters.
    pub description: String,
    /// The receipt's lines; their totals must add up to `amount`.
    pub order_lines: Option<Vec<OrderLine>>,
    /// The POS receipt number; only sent with order lines (Vipps' receipt needs them).
    pub receipt_number: Option<String>,
}

/// One receipt line; every amount in minor units of the payment's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub name: String,
    pub id: String,
    pub quantity: u32,
    pub unit_price: u64,
    /// Line total including VAT and after any discount.
    pub total: u64,
    /// VAT rate in percent, 0 to 100.
    pub vat_percent: u8,
    /// VAT included in `total`.
    pub vat_amount: u64,
}

/// Why a payment request cannot become a payment: the field, named as the terminal API names
/// it (`description`, `orderLines[0].totalAmount`), and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct PayProblem {
    pub field: String,
    pub reason: String,
}

fn problem(field: impl Into<String>, reason: impl Into<String>) -> PayProblem {
    PayProblem {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The largest payment or refund, in minor units (ePayment's limit).
pub const MAX_AMOUNT: u64 = 65_000_000;

impl PayRequest {
    /// The one place the rules of a payment request live: `Ok` when it can become a payment,
    /// else the first problem, naming the field. The terminal API answers it as a 400; the
    /// session refuses a `Pay` it did not check.
    pub fn validate(&self) -> Result<(), PayProblem> {
        if !(1..=MAX_AMOUNT).contains(&self.amount.value) {
            return Err(problem(
                "amount.value",
                format!("expected 1 to {MAX_AMOUNT} minor units"),
            ));
        }
        // Vipps shows it to the customer.
        let description = &self.description;
        if description.trim().chars().count() < 3 || description.chars().count() > 100 {
            return Err(problem("description", "expected 3 to 100 characters"));
        }
        if description.chars().any(char::is_control) {
            return Err(problem("description", "contains control characters"));
        }
        if let Some(r) = &self.receipt_number {
            if r.is_empty()
                || r.len() > 30
                || !r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            {
                return Err(problem(
                    "receiptNumber",
                    "expected 1 to 30 characters of a-z, A-Z, 0-9 and -",
                ));
            }
            if self.order_lines.is_none() {
                return Err(problem(
                    "receiptNumber",
                    "a receipt number needs orderLines",
                ));
            }
        }
        let Some(lines) = &self.order_lines else {
            return Ok(());
        };
        if lines.is_empty() {
            return Err(problem("orderLines", "when given, at least one line"));
        }
        let mut sum: u64 = 0;
        for (i, line) in lines.iter().enumerate() {
            let field = |name: &str| format!("orderLines[{i}].{name}");
            if line.name.trim().is_empty() || line.name.chars().count() > 2048 {
                return Err(problem(field("name"), "expected 1 to 2048 characters"));
            }
            if line.id.trim().is_empty() || line.id.chars().count() > 255 {
                return Err(problem(field("id"), "expected 1 to 255 characters"));
            }
            if line.quantity == 0 {
                return Err(problem(field("quantity"), "must be at least 1"));
            }
            if line.unit_price.checked_mul(u64::from(line.quantity)) != Some(line.total) {
                return Err(problem(
                    field("totalAmount"),
                    "must be unitPrice × quantity",
                ));
            }
            if line.vat_amount > line.total {
                return Err(problem(field("taxAmount"), "cannot exceed totalAmount"));
            }
            if line.vat_percent > 100 {
                return Err(problem(
                    field("taxPercentage"),
                    "whole percent, at most 100",
                ));
            }
            sum = sum.saturating_add(line.total);
        }
        if sum != self.amount.value {
            return Err(problem(
                "orderLines",
                format!(
                    "the order lines add up to {sum}, but amount.value is {}",
                    self.amount.value
                ),
            ));
        }
        Ok(())
    }
}

/// ePayment's payment state, as the wire names it (`vipps::models` uses this one too). After
/// capture, cancel or refund it stays `Authorized`: read `aggregate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentState {
    Created,
    Authorized,
    Aborted,
    Expired,
    Terminated,
}

impl PaymentState {
    /// The name Vipps gives the state, e.g. `AUTHORIZED`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the customer or the merchant can still change the state.
    pub fn is_final(self) -> bool {
        !matches!(self, PaymentState::Created)
    }
}

/// ePayment's `aggregate`, in minor units of the payment's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Aggregate {
    pub authorized: u64,
    pub captured: u64,
    pub cancelled: u64,
    pub refunded: u64,
}

/// What Vipps Login's userinfo told about the new member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Userinfo {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<Msisdn>,
    pub consents: Vec<Consent>,
}

/// One delegated consent from userinfo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub id: String,
    pub accepted: bool,
    pub required: bool,
    pub text: Option<String>,
}

/// A Vipps Login access token: good for userinfo only, for a few minutes, and handed out once.
///
/// It is journalled (in lanehub's own store, which holds the webhook secret too) so a restart can
/// still fetch userinfo for a consent it has not finished; `Debug` never shows it, so it never
/// reaches a log.
#[derive(Clone)]
pub struct LoginAccessToken(SecretString);

impl LoginAccessToken {
    pub fn new(token: SecretString) -> Self {
        Self(token)
    }

    /// The token itself, for the userinfo call only.
    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for LoginAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LoginAccessToken([redacted])")
    }
}

impl PartialEq for LoginAccessToken {
    fn eq(&self, other: &Self) -> bool {
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for LoginAccessToken {}

impl Serialize for LoginAccessToken {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for LoginAccessToken {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|s| Self(SecretString::from(s)))
    }
}
