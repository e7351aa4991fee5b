//! One ePayment payment as a pure state machine: its state, aggregate and event log, and the
//! operations that change them. No locks, no I/O and no clock: every operation takes [`Now`].
//!
//! What must stay true:
//! - `captured + cancelled <= authorized` and `refunded <= captured`;
//! - ABORTED, EXPIRED and TERMINATED never change; AUTHORIZED never changes either: capture,
//!   refund and cancel only move the aggregate (as the live API does);
//! - every change appends an event, and failed attempts the customer or issuer caused (test
//!   amounts) append an event with `success: false`. Callers publish the events appended by an
//!   operation whatever its result.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::config::PaymentBehaviour;
use crate::domain::{Amount, Msisdn, PaymentReference};

/// How long before the customer's approval completes that the payment counts as "being
/// processed": the customer has pressed pay and the card authorisation is in flight. A cancel
/// then fails with 6250.
pub const PROCESSING_WINDOW: Duration = Duration::from_secs(1);

/// The card BIN the live API reports for wallet payments in the test environment.
const TEST_CARD_BIN: &str = "540185";

/// The time an operation happens at, on the simulator's clock.
pub use crate::sim::clock::Now;

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// The payment's state, exactly as the live API names it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Created,
    Authorized,
    Aborted,
    Expired,
    Terminated,
}

impl State {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(raw: &str) -> Option<State> {
        raw.parse().ok()
    }
}

/// The name of an event in the log and in webhooks: the wire's own.
pub use crate::vipps::models::PaymentEventName as EventName;

/// The request's enums, as the wire (and lanehub's client) names them.
pub use crate::vipps::models::{CustomerInteraction, PaymentMethodType, UserFlow};

/// How the merchant named the customer: exactly one of the three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CustomerId {
    PhoneNumber(Msisdn),
    PersonalQr(String),
    CustomerToken(String),
}

/// A validated create request.
#[derive(Debug, Clone)]
pub struct NewPayment {
    pub reference: PaymentReference,
    pub amount: Amount,
    pub payment_method: PaymentMethodType,
    pub user_flow: UserFlow,
    pub customer: Option<CustomerId>,
    pub customer_interaction: CustomerInteraction,
    pub payment_description: Option<String>,
    pub receipt: Option<Value>,
    pub metadata: Option<BTreeMap<String, String>>,
    pub scope: Option<String>,
    pub return_url: Option<String>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `qrFormat.format` when `userFlow` is QR.
    pub qr_format: Option<String>,
}

/// What the customer will do, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CustomerPlan {
    pub behaviour: PaymentBehaviour,
    pub acts_at: Instant,
}

/// The test-environment amounts whose authorisation fails on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardFailure {
    InsufficientFunds,
    RefusedByIssuer,
    SuspectedFraud,
    ExpiredCard,
}

impl CardFailure {
    pub fn for_amount(value: u64) -> Option<CardFailure> {
        match value {
            151 => Some(CardFailure::InsufficientFunds),
            182 => Some(CardFailure::RefusedByIssuer),
            183 => Some(CardFailure::SuspectedFraud),
            186 => Some(CardFailure::ExpiredCard),
            _ => None,
        }
    }

    pub fn reason(self) -> &'static str {
        match self {
            CardFailure::InsufficientFunds => "insufficient funds",
            CardFailure::RefusedByIssuer => "refused by issuer",
            CardFailure::SuspectedFraud => "suspected fraud",
            CardFailure::ExpiredCard => "expired card",
        }
    }
}

/// Why an operation on a payment was refused. `code()` is the live API's `ErrorCode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PaymentError {
    #[error(
        "The amount you tried to capture is not reserved. The user must accept the payment before capture can be done."
    )]
    CaptureBeforeReservation,
    #[error(
        "The total capture amount exceeds the reserved amount: at most {remaining} can be captured."
    )]
    CaptureAmountTooHigh { remaining: u64 },
    #[error("Cannot capture a payment that has been cancelled. Check the payment event log.")]
    CaptureCancelled,
    #[error("A payment in state {0} cannot be captured.")]
    CannotCapture(&'static str),
    #[error("Cannot refund a payment that is not reserved. Check the payment event log.")]
    RefundBeforeReservation,
    #[error("Cannot refund more than the captured amount not yet refunded: at most {refundable}.")]
    NotEnoughRefundable { refundable: u64 },
    #[error("The refund could not be made (test amount 123).")]
    RefundNotPossible,
    #[error("Refunds are possible within 365 days of the reservation (test amount 124).")]
    RefundPeriodExpired,
    #[error(
        "Cannot cancel a payment that is being processed: the customer is approving it right now."
    )]
    CancelWhileProcessing,
    #[error("Cannot cancel an authorized payment with cancelTransactionOnly set to true.")]
    CancelAuthorized,
    #[error("Cannot cancel a payment that has been captured. Refund it instead.")]
    CancelCaptured,
    #[error("Cannot cancel a payment in state {0}: it is not reserved.")]
    CancelNotReserved(&'static str),
    #[error("The currency must be the payment's currency, {expected}.")]
    CurrencyMismatch { expected: &'static str },
    #[error("A payment in state {0} cannot be approved.")]
    ApproveNotAllowed(&'static str),
    #[error("The approval failed: {}.", .0.reason())]
    ApproveFailed(CardFailure),
}

impl PaymentError {
    /// The live API's numbered `ErrorCode`.
    pub fn code(&self) -> u32 {
        match self {
            PaymentError::CurrencyMismatch { .. } => 4040,
            PaymentError::RefundBeforeReservation => 6020,
            PaymentError::CancelCaptured => 6040,
            PaymentError::CancelNotReserved(_) => 6050,
            PaymentError::CancelAuthorized => 6060,
            PaymentError::CaptureCancelled => 6070,
            PaymentError::CaptureBeforeReservation => 6080,
            PaymentError::CaptureAmountTooHigh { .. } => 6090,
            PaymentError::NotEnoughRefundable { .. } => 6150,
            PaymentError::CannotCapture(_) => 6200,
            PaymentError::RefundNotPossible => 6210,
            PaymentError::RefundPeriodExpired => 6220,
            PaymentError::CancelWhileProcessing => 6250,
            PaymentError::ApproveFailed(_) => 10010,
            PaymentError::ApproveNotAllowed(_) => 10020,
        }
    }

    /// The problem's `title`.
    pub fn title(&self) -> &'static str {
        match self {
            PaymentError::CaptureBeforeReservation => "Cannot capture before reservation",
            PaymentError::CaptureAmountTooHigh { .. } => "Capture amount too high",
            PaymentError::CaptureCancelled => "Cannot capture a cancelled payment",
            PaymentError::CannotCapture(_) => "Payment cannot be captured",
            PaymentError::RefundBeforeReservation => "Attempted refund before reservation",
            PaymentError::NotEnoughRefundable { .. } => "Not enough refundable",
            PaymentError::RefundNotPossible => "Payment cannot be refunded",
            PaymentError::RefundPeriodExpired => "Refund period expired",
            PaymentError::CancelWhileProcessing => "Cannot cancel a payment being processed",
            PaymentError::CancelAuthorized => "Cannot cancel authorized payment",
            PaymentError::CancelCaptured => "Cannot cancel a captured payment",
            PaymentError::CancelNotReserved(_) => "Cannot cancel a non-reserved payment",
            PaymentError::CurrencyMismatch { .. } => "Invalid amount",
            PaymentError::ApproveNotAllowed(_) => "Approve not allowed",
            PaymentError::ApproveFailed(_) => "Approve failed",
        }
    }
}

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub psp_reference: String,
    pub name: EventName,
    pub amount: Amount,
    pub timestamp: String,
    pub idempotency_key: Option<String>,
    pub success: bool,
}

/// What has happened to the money, in minor units of the payment's currency.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub authorized: u64,
    pub cancelled: u64,
    pub captured: u64,
    pub refunded: u64,
}

/// What is due for a payment at some instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    Approve,
    Decline,
    Expire,
}

/// A payment and everything that happened to it.
#[derive(Debug, Clone)]
pub struct Payment {
    pub msn: String,
    pub request: NewPayment,
    pub state: State,
    /// The customer who pays, once known.
    pub customer: Option<Msisdn>,
    pub plan: Option<CustomerPlan>,
    pub redirect_url: Option<String>,
    /// The token in `redirectUrl`, which force approve may be given.
    pub redirect_token: Option<String>,
    pub created: Now,
    pub expires: Now,
    pub aggregate: Aggregate,
    pub sub: Option<String>,
    pub events: Vec<Event>,
    /// Event `i` gets pspReference `psp_base + i`.
    psp_base: u64,
}

/// The Login `sub` the simulator gives a customer: stable, so the same person keeps one id.
pub fn subject(phone: &Msisdn) -> String {
    let d = Sha256::digest(format!("lanehub-sim-sub:{}", phone.as_str()).as_bytes());
    let h: String = d[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Everything [`Payment::new`] needs besides the request.
#[derive(Debug, Clone)]
pub struct Creation {
    pub msn: String,
    pub customer: Option<Msisdn>,
    pub plan: Option<CustomerPlan>,
    pub psp_base: u64,
    pub expiry: Duration,
    pub redirect_token: String,
    pub idempotency_key: String,
}

impl Payment {
    /// A new payment in CREATED, with its CREATED event.
    pub fn new(request: NewPayment, c: Creation, now: &Now) -> Payment {
        let expires = match request.expires_at {
            Some(at) => {
                let ahead = (at - now.wall).to_std().unwrap_or(Duration::ZERO);
                Now {
                    instant: now.instant + ahead,
                    wall: at,
                }
            }
            None => now.after(c.expiry),
        };
        let token = c.redirect_token;
        let redirect_url = match request.user_flow {
            UserFlow::PushMessage => None,
            UserFlow::WebRedirect => Some(format!("https://landing.vipps.no?token={token}")),
            UserFlow::NativeRedirect => Some(format!("vipps://?token={token}")),
            UserFlow::Qr if request.qr_format.as_deref() == Some("TEXT/TARGETURL") => {
                Some(format!("https://landing.vipps.no?token={token}"))
            }
            UserFlow::Qr => Some(format!("https://qr-image.vipps.no/v1?token={token}")),
        };
        let mut p = Payment {
            msn: c.msn,
            state: State::Created,
            customer: c.customer,
            plan: c.plan,
            redirect_token: redirect_url.as_ref().map(|_| token),
            redirect_url,
            created: *now,
            expires,
            aggregate: Aggregate::default(),
            sub: None,
            events: Vec::new(),
            psp_base: c.psp_base,
            request,
        };
        let value = p.request.amount.value;
        p.push(
            EventName::Created,
            value,
            now.wall,
            Some(c.idempotency_key),
            true,
        );
        p
    }

    pub fn reference(&self) -> &PaymentReference {
        &self.request.reference
    }

    pub fn amount(&self) -> Amount {
        self.request.amount
    }

    pub fn psp_reference(&self) -> String {
        self.psp_base.to_string()
    }

    fn push(
        &mut self,
        name: EventName,
        value: u64,
        at: DateTime<Utc>,
        idempotency_key: Option<String>,
        success: bool,
    ) {
        let psp = self.psp_base + self.events.len() as u64;
        self.events.push(Event {
            psp_reference: psp.to_string(),
            name,
            amount: Amount::new(self.request.amount.currency, value),
            timestamp: timestamp(at),
            idempotency_key,
            success,
        });
    }

    /// Logs a merchant's cancel, capture or refund made with idempotency `key`.
    fn push_keyed(&mut self, name: EventName, value: u64, now: &Now, key: &str, success: bool) {
        self.push(name, value, now.wall, Some(key.into()), success);
    }

    fn acts_before_expiry(&self) -> Option<CustomerPlan> {
        self.plan.filter(|p| p.acts_at <= self.expires.instant)
    }

    /// Whether the customer is approving right now (see [`PROCESSING_WINDOW`]).
    pub fn is_processing(&self, now: Instant) -> bool {
        self.state == State::Created
            && self.acts_before_expiry().is_some_and(|p| {
                p.behaviour == PaymentBehaviour::Approve
                    && now < p.acts_at
                    && now + PROCESSING_WINDOW >= p.acts_at
            })
    }

    /// What the customer or the clock does to this payment at `now`, if anything.
    pub fn due(&self, now: Instant) -> Option<Due> {
        if self.state != State::Created {
            return None;
        }
        let acting = self
            .acts_before_expiry()
            .filter(|p| now >= p.acts_at)
            .map(|p| p.behaviour);
        match acting {
            Some(PaymentBehaviour::Approve) => Some(Due::Approve),
            Some(PaymentBehaviour::Decline) => Some(Due::Decline),
            Some(PaymentBehaviour::Ignore) | None => {
                (now >= self.expires.instant).then_some(Due::Expire)
            }
        }
    }

    /// Applies what is due at `now`, timestamped when it became due. Returns whether anything
    /// changed.
    pub fn advance(&mut self, now: &Now) -> bool {
        let Some(due) = self.due(now.instant) else {
            return false;
        };
        let at = match (due, self.plan) {
            (Due::Expire, _) | (_, None) => self.expires.instant,
            (_, Some(plan)) => plan.acts_at,
        };
        let when = now.at(at);
        // The customer's approval may fail on a test amount; that is an outcome, not an error.
        let _ = match due {
            Due::Approve => self.approve(&when),
            Due::Decline => self.decline(&when),
            Due::Expire => {
                self.expire(&when);
                Ok(())
            }
        };
        true
    }

    /// The customer approves. On a test amount the card authorisation fails: a failed
    /// AUTHORIZED event, then ABORTED.
    pub fn approve(&mut self, now: &Now) -> Result<(), PaymentError> {
        if self.state != State::Created {
            return Err(PaymentError::ApproveNotAllowed(self.state.as_str()));
        }
        let value = self.request.amount.value;
        if let Some(failure) = CardFailure::for_amount(value) {
            self.push(EventName::Authorized, value, now.wall, None, false);
            self.state = State::Aborted;
            self.push(EventName::Aborted, value, now.wall, None, true);
            return Err(PaymentError::ApproveFailed(failure));
        }
        self.state = State::Authorized;
        self.aggregate.authorized = value;
        if self.request.scope.is_some() {
            self.sub = self.customer.as_ref().map(subject);
        }
        self.push(EventName::Authorized, value, now.wall, None, true);
        Ok(())
    }

    /// The customer declines.
    pub fn decline(&mut self, now: &Now) -> Result<(), PaymentError> {
        if self.state != State::Created {
            return Err(PaymentError::ApproveNotAllowed(self.state.as_str()));
        }
        self.state = State::Aborted;
        let value = self.request.amount.value;
        self.push(EventName::Aborted, value, now.wall, None, true);
        Ok(())
    }

    /// Nobody acted in time.
    pub fn expire(&mut self, now: &Now) {
        if self.state == State::Created {
            self.state = State::Expired;
            let value = self.request.amount.value;
            self.push(EventName::Expired, value, now.wall, None, true);
        }
    }

    fn remaining(&self) -> u64 {
        let a = self.aggregate;
        a.authorized.saturating_sub(a.captured + a.cancelled)
    }

    fn check_currency(&self, amount: Amount) -> Result<(), PaymentError> {
        if amount.currency != self.request.amount.currency {
            return Err(PaymentError::CurrencyMismatch {
                expected: self.request.amount.currency.as_str(),
            });
        }
        Ok(())
    }

    /// The merchant cancels: before authorisation the payment is TERMINATED; after it, what is
    /// neither captured nor cancelled is released and the state stays AUTHORIZED.
    pub fn cancel(
        &mut self,
        now: &Now,
        transaction_only: bool,
        key: &str,
    ) -> Result<(), PaymentError> {
        match self.state {
            State::Created if self.is_processing(now.instant) => {
                Err(PaymentError::CancelWhileProcessing)
            }
            State::Created => {
                self.state = State::Terminated;
                let value = self.request.amount.value;
                self.push_keyed(EventName::Terminated, value, now, key, true);
                Ok(())
            }
            State::Authorized if transaction_only => Err(PaymentError::CancelAuthorized),
            State::Authorized => {
                let remaining = self.remaining();
                let a = self.aggregate;
                if remaining == 0 && a.cancelled == 0 && a.captured > 0 {
                    return Err(PaymentError::CancelCaptured);
                }
                if remaining > 0 {
                    self.aggregate.cancelled += remaining;
                    self.push_keyed(EventName::Cancelled, remaining, now, key, true);
                }
                Ok(())
            }
            // Cancelling twice changes nothing and is not an error.
            State::Terminated => Ok(()),
            State::Aborted | State::Expired => {
                Err(PaymentError::CancelNotReserved(self.state.as_str()))
            }
        }
    }

    /// The merchant captures `amount` of what is authorised and neither captured nor cancelled.
    pub fn capture(&mut self, now: &Now, amount: Amount, key: &str) -> Result<(), PaymentError> {
        match self.state {
            State::Created => return Err(PaymentError::CaptureBeforeReservation),
            State::Authorized => {}
            other => return Err(PaymentError::CannotCapture(other.as_str())),
        }
        self.check_currency(amount)?;
        let remaining = self.remaining();
        if amount.value > remaining {
            if remaining == 0 && self.aggregate.cancelled > 0 {
                return Err(PaymentError::CaptureCancelled);
            }
            return Err(PaymentError::CaptureAmountTooHigh { remaining });
        }
        self.aggregate.captured += amount.value;
        self.push_keyed(EventName::Captured, amount.value, now, key, true);
        Ok(())
    }

    /// The merchant refunds `amount` of what is captured and not yet refunded. The test amounts
    /// 123 and 124 fail with a failed REFUNDED event.
    pub fn refund(&mut self, now: &Now, amount: Amount, key: &str) -> Result<(), PaymentError> {
        if self.state != State::Authorized {
            return Err(PaymentError::RefundBeforeReservation);
        }
        self.check_currency(amount)?;
        let refundable = self
            .aggregate
            .captured
            .saturating_sub(self.aggregate.refunded);
        if amount.value > refundable {
            return Err(PaymentError::NotEnoughRefundable { refundable });
        }
        let failure = match amount.value {
            123 => Some(PaymentError::RefundNotPossible),
            124 => Some(PaymentError::RefundPeriodExpired),
            _ => None,
        };
        let success = failure.is_none();
        self.push_keyed(EventName::Refunded, amount.value, now, key, success);
        match failure {
            Some(e) => Err(e),
            None => {
                self.aggregate.refunded += amount.value;
                Ok(())
            }
        }
    }

    fn aggregate_json(&self) -> Value {
        let c = self.request.amount.currency;
        let a = self.aggregate;
        json!({
            "authorizedAmount": Amount::new(c, a.authorized),
            "cancelledAmount": Amount::new(c, a.cancelled),
            "capturedAmount": Amount::new(c, a.captured),
            "refundedAmount": Amount::new(c, a.refunded),
        })
    }

    /// `GetPaymentResponse`.
    pub fn get_response(&self) -> Value {
        let mut method = json!({"type": self.request.payment_method});
        if self.state == State::Authorized
            && self.request.payment_method == PaymentMethodType::Wallet
        {
            method["cardBin"] = json!(TEST_CARD_BIN);
        }
        let mut profile = json!({});
        if let Some(sub) = &self.sub {
            profile["sub"] = json!(sub);
        }
        let mut out = json!({
            "aggregate": self.aggregate_json(),
            "amount": self.request.amount,
            "state": self.state,
            "paymentMethod": method,
            "profile": profile,
            "pspReference": self.psp_reference(),
            "reference": self.reference(),
        });
        if let Some(url) = &self.redirect_url {
            out["redirectUrl"] = json!(url);
        }
        if let Some(m) = &self.request.metadata {
            out["metadata"] = json!(m);
        }
        out
    }

    /// `ModificationResponse`, after a cancel, capture or refund.
    pub fn modification_response(&self) -> Value {
        let psp = self
            .events
            .last()
            .map_or_else(|| self.psp_reference(), |e| e.psp_reference.clone());
        json!({
            "amount": self.request.amount,
            "state": self.state,
            "aggregate": self.aggregate_json(),
            "pspReference": psp,
            "reference": self.reference(),
        })
    }

    /// One `PaymentEvent` of the event log.
    pub fn event_json(&self, e: &Event) -> Value {
        json!({
            "reference": self.reference(),
            "pspReference": e.psp_reference,
            "name": e.name,
            "amount": e.amount,
            "timestamp": e.timestamp,
            "idempotencyKey": e.idempotency_key,
            "success": e.success,
        })
    }

    /// The webhook payload (`WebhookEvent`) for `e`.
    pub fn webhook_payload(&self, e: &Event) -> Value {
        let mut v = self.event_json(e);
        v["msn"] = json!(self.msn);
        v
    }

    /// The simulator's own view for the control API: everything, including the customer.
    pub fn control_view(&self, with_events: bool) -> Value {
        let mut v = self.get_response();
        v["msn"] = json!(self.msn);
        v["customer"] = json!(self.customer.as_ref().map(|c| c.as_str()));
        v["userFlow"] = json!(self.request.user_flow);
        v["customerInteraction"] = json!(self.request.customer_interaction);
        v["paymentDescription"] = json!(self.request.payment_description);
        v["receipt"] = json!(self.request.receipt);
        v["createdAt"] = json!(timestamp(self.created.wall));
        v["expiresAt"] = json!(timestamp(self.expires.wall));
        v["customerBehaviour"] = json!(self.plan.map(|p| p.behaviour));
        if with_events {
            let events: Vec<Value> = self.events.iter().map(|e| self.event_json(e)).collect();
            v["events"] = json!(events);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Currency;

    fn now(t: Instant) -> Now {
        Now {
            instant: t,
            wall: Utc::now(),
        }
    }

    /// A 1000 øre payment created now, whose customer has no plan; and now.
    fn unplanned() -> (Payment, Now) {
        let t0 = Instant::now();
        (new_payment(1000, None, t0), now(t0))
    }

    fn new_payment(value: u64, behaviour: Option<PaymentBehaviour>, t0: Instant) -> Payment {
        let request = NewPayment {
            reference: "ref-12345678".parse().unwrap(),
            amount: Amount::nok(value),
            payment_method: PaymentMethodType::Wallet,
            user_flow: UserFlow::PushMessage,
            customer: None,
            customer_interaction: CustomerInteraction::CustomerPresent,
            payment_description: None,
            receipt: None,
            metadata: None,
            scope: None,
            return_url: None,
            expires_at: None,
            qr_format: None,
        };
        let c = Creation {
            msn: "123456".into(),
            customer: Some("4791234567".parse().unwrap()),
            plan: behaviour.map(|behaviour| CustomerPlan {
                behaviour,
                acts_at: t0 + Duration::from_secs(2),
            }),
            psp_base: 1000,
            expiry: Duration::from_secs(600),
            redirect_token: "tok".into(),
            idempotency_key: "key-1".into(),
        };
        Payment::new(request, c, &now(t0))
    }

    fn names(p: &Payment) -> Vec<(EventName, u64, bool)> {
        p.events
            .iter()
            .map(|e| (e.name, e.amount.value, e.success))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn customer_behaviour_drives_the_state() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let cases = [
            (Some(PaymentBehaviour::Approve), 2, State::Authorized),
            (Some(PaymentBehaviour::Decline), 2, State::Aborted),
            (Some(PaymentBehaviour::Ignore), 599, State::Created),
            (Some(PaymentBehaviour::Ignore), 600, State::Expired),
            (None, 600, State::Expired),
            (Some(PaymentBehaviour::Approve), 1, State::Created),
            // The clock jumped past both: the customer acted first.
            (Some(PaymentBehaviour::Approve), 700, State::Authorized),
        ];
        for (behaviour, secs, want) in cases {
            let mut p = new_payment(1000, behaviour, t0);
            p.advance(&now(t0 + s * secs));
            assert_eq!(p.state, want, "{behaviour:?} after {secs}s");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn test_amounts_fail_the_approval() {
        let t0 = Instant::now();
        for value in [151, 182, 183, 186] {
            let mut p = new_payment(value, Some(PaymentBehaviour::Approve), t0);
            let r = p.approve(&now(t0));
            assert!(matches!(r, Err(PaymentError::ApproveFailed(_))), "{value}");
            assert_eq!(p.state, State::Aborted);
            assert_eq!(p.aggregate, Aggregate::default());
            assert_eq!(
                names(&p)[1..],
                [
                    (EventName::Authorized, value, false),
                    (EventName::Aborted, value, true)
                ]
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn capture_refund_cancel_move_the_aggregate_not_the_state() {
        let (mut p, n) = unplanned();
        assert_eq!(
            p.capture(&n, Amount::nok(1), "c"),
            Err(PaymentError::CaptureBeforeReservation)
        );
        assert_eq!(
            p.refund(&n, Amount::nok(1), "r"),
            Err(PaymentError::RefundBeforeReservation)
        );
        p.approve(&n).unwrap();
        assert_eq!(
            p.capture(&n, Amount::new(Currency::Eur, 1), "c"),
            Err(PaymentError::CurrencyMismatch { expected: "NOK" })
        );
        assert_eq!(
            p.capture(&n, Amount::nok(1001), "c"),
            Err(PaymentError::CaptureAmountTooHigh { remaining: 1000 })
        );
        p.capture(&n, Amount::nok(600), "c1").unwrap();
        assert_eq!(
            p.refund(&n, Amount::nok(601), "r"),
            Err(PaymentError::NotEnoughRefundable { refundable: 600 })
        );
        p.refund(&n, Amount::nok(200), "r1").unwrap();
        assert_eq!(p.cancel(&n, true, "x"), Err(PaymentError::CancelAuthorized));
        p.cancel(&n, false, "x1").unwrap();
        assert_eq!(
            p.capture(&n, Amount::nok(1), "c"),
            Err(PaymentError::CaptureCancelled)
        );
        // A second cancel has nothing left to release.
        p.cancel(&n, false, "x2").unwrap();
        assert_eq!(p.state, State::Authorized);
        assert_eq!(
            p.aggregate,
            Aggregate {
                authorized: 1000,
                cancelled: 400,
                captured: 600,
                refunded: 200
            }
        );
        assert_eq!(
            names(&p)[1..],
            [
                (EventName::Authorized, 1000, true),
                (EventName::Captured, 600, true),
                (EventName::Refunded, 200, true),
                (EventName::Cancelled, 400, true),
            ]
        );
        let psps: Vec<&str> = p.events.iter().map(|e| e.psp_reference.as_str()).collect();
        assert_eq!(psps, ["1000", "1001", "1002", "1003", "1004"]);
    }

    #[tokio::test(start_paused = true)]
    async fn cancel_rules() {
        let t0 = Instant::now();
        let n = now(t0);
        // Not yet authorised: terminated, whatever cancelTransactionOnly says.
        let mut p = new_payment(1000, None, t0);
        p.cancel(&n, true, "k").unwrap();
        assert_eq!(p.state, State::Terminated);
        p.cancel(&n, false, "k2").unwrap();
        assert_eq!(names(&p).len(), 2);
        // The customer is pressing pay.
        let mut p = new_payment(1000, Some(PaymentBehaviour::Approve), t0);
        let during = now(t0 + Duration::from_millis(1500));
        assert!(p.is_processing(during.instant));
        assert_eq!(
            p.cancel(&during, true, "k"),
            Err(PaymentError::CancelWhileProcessing)
        );
        assert!(!p.is_processing(t0 + Duration::from_millis(900)));
        // Fully captured.
        let mut p = new_payment(1000, None, t0);
        p.approve(&n).unwrap();
        p.capture(&n, Amount::nok(1000), "c").unwrap();
        assert_eq!(p.cancel(&n, false, "k"), Err(PaymentError::CancelCaptured));
        // Final states that never reserved money.
        let mut p = new_payment(1000, Some(PaymentBehaviour::Decline), t0);
        p.decline(&n).unwrap();
        assert_eq!(
            p.cancel(&n, false, "k"),
            Err(PaymentError::CancelNotReserved("ABORTED"))
        );
        assert_eq!(
            p.capture(&n, Amount::nok(1), "c"),
            Err(PaymentError::CannotCapture("ABORTED"))
        );
        assert_eq!(
            p.approve(&n),
            Err(PaymentError::ApproveNotAllowed("ABORTED"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn test_refund_amounts_fail_with_a_failed_event() {
        let (mut p, n) = unplanned();
        p.approve(&n).unwrap();
        p.capture(&n, Amount::nok(1000), "c").unwrap();
        // Test amounts: 123 øre cannot be refunded, 124 øre is past the refund period.
        for (value, key, want) in [
            (123, "r", PaymentError::RefundNotPossible),
            (124, "r2", PaymentError::RefundPeriodExpired),
        ] {
            assert_eq!(p.refund(&n, Amount::nok(value), key), Err(want));
        }
        assert_eq!(p.aggregate.refunded, 0);
        assert_eq!(
            names(&p)[3..],
            [
                (EventName::Refunded, 123, false),
                (EventName::Refunded, 124, false)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn due_events_carry_the_time_they_became_due() {
        let t0 = Instant::now();
        let mut p = new_payment(1000, Some(PaymentBehaviour::Ignore), t0);
        let created = p.created.wall;
        let later = Now {
            instant: t0 + Duration::from_secs(3600),
            wall: created + chrono::Duration::seconds(3600),
        };
        assert!(p.advance(&later));
        let expired = &p.events[1];
        assert_eq!(expired.name, EventName::Expired);
        assert_eq!(
            expired.timestamp,
            timestamp(created + chrono::Duration::seconds(600))
        );
        assert!(!p.advance(&later));
    }

    #[test]
    fn subject_is_a_stable_uuid() {
        let kari: Msisdn = "4791234567".parse().unwrap();
        let s = subject(&kari);
        assert_eq!(s.len(), 36);
        assert_eq!(s, subject(&kari));
        assert_ne!(s, subject(&"4798765432".parse().unwrap()));
    }
}
