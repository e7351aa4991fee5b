//! The lane's brain: a pure state machine for one checkout ("session") at a time.
//!
//! No actix, no I/O, no clock reads, no randomness. The lane actor feeds `Event`s into
//! `step(&session, event, now, &config)` and carries out the returned `Effect`s in order; every
//! state change happens through `step` (or `Session::recover` after a restart). Time only comes
//! in as `now`: the actor schedules one timer at `Session::next_deadline()` and feeds `Tick`.
//!
//! ```text
//!        customer QR (any time before Pay; product scans never reach the session)
//!  Idle ─────────────▶ AwaitingQrExchange ──msisdn (exchange, or clear-text fallback)──┐
//!   ▲                    │ no number: Failed(QrNotRecognised / IdentificationFailed)    │
//!   │                    │            or Unavailable                                    ▼
//!   │                    ▼                                              AwaitingMembership
//!   │                   end                     lookup failed/timed out: membership unknown
//!   │                                                                               │
//!   │      SendCheckIn fired beside the flow (best effort, never awaited)           ▼
//!   │   ┌──────────── idle timeout: Abandoned; Cancel: Cancelled; Reset: Closed ── ReadyForPayment
//!   │   │                                                                      │ ▲          │
//!   │   │                     Enroll (non-member) ─────────────────────────────┘ │          │
//!   │   │   AwaitingLoginStart ──started──▶ AwaitingConsent ──consented──▶ AwaitingMemberStore
//!   │   │          │                        (PollLogin at the interval,          │ stored: member
//!   │   │          │                         slow_down +5 s, ping = poll now)    │
//!   │   │          └─ failed / denied / expired / unavailable / timeout ─────────┴──▶ Ready…
//!   │   │                                                                        Pay │
//!   │   │   Persist(PaymentRequested) + CreatePayment                                ▼
//!   │   │   AwaitingPaymentCreation ──201──▶ AwaitingPayment ◀──────────────────────────┐
//!   │   │     │ 4xx: Failed(PaymentRejected)   │ read back 5 s after creation, then      │
//!   │   │     │ not sent: Unavailable          │ every 2 s; webhook = read now           │
//!   │   │     │ unknown/timeout: read back ───▶│ CREATED: keep waiting                   │
//!   │   │     │   (404: create again,          │ ABORTED: Declined  EXPIRED: Expired     │
//!   │   │     │    same key)                   │ TERMINATED: Cancelled                   │
//!   │   │                                      │ AUTHORIZED: Persist + CapturePayment    │
//!   │   │                                      ▼                                         │
//!   │   │                              AwaitingCapture ──captured == amount──▶ Paid      │
//!   │   │                                      └── unknown/timeout/4xx: read back ───────┤
//!   │   │   Cancel in AwaitingPayment: Persist + CancelPayment(transaction only)         │
//!   │   │                              AwaitingCancel ──TERMINATED──▶ Cancelled          │
//!   │   │                                      └── failed/timeout: read back ────────────┘
//!   │   │   expiry + margin passed: final read-back; still nothing final: Failed(NoFinalState)
//!   └───┴──── every end: Persist(SessionEnded), NotifyTerminal, SessionEnded{outcome, duration}
//! ```
//!
//! Decisions:
//! - **A new QR mid-session.** The same QR (same text, or the same clear-text number) is
//!   ignored. Before Pay, a different customer's QR replaces the customer within the same
//!   session: journalled (`CustomerReplaced`), the terminal told, identification restarts, an
//!   enrollment not yet consented to is abandoned. From Pay on, a different QR is rejected
//!   (`PaymentInProgress`).
//! - **Pay during enrollment.** While waiting for Login to start or for consent, Pay abandons the
//!   enrollment (outcome `Abandoned`, told to the cashier) and requests the payment as a
//!   non-member: the till is never held up by a customer who ignores the consent request. Once
//!   consent is given and the member is being saved, Pay, Cancel, Reset and another customer's
//!   QR are rejected (`EnrollmentFinishing`) for the moment that takes (bounded by its timeouts). Enroll for a member, with unknown membership or during a payment is
//!   rejected with a reason.
//! - **Cancel after authorisation.** The customer is at the till and the cashier cancelled, so an
//!   authorisation that raced the transaction-only cancel is cancelled in full (own idempotency
//!   key), never captured. If the payment was already captured, the session ends `Paid` (refund
//!   from the back office). Cancel while the create is in flight is remembered and sent once the
//!   payment exists; Cancel during capture is rejected (`CaptureInProgress`).
//! - **Reset during a payment** is rejected (`PaymentInProgress`): a payment in flight is never
//!   forgotten. Reset with no payment ends the session as `Closed`; Cancel with no payment ends it
//!   as `Cancelled` at once.
//! - **A consent is never forgotten.** Vipps hands the Login token out only once, so the
//!   successful poll is journalled with the token (`EnrollmentConsented`) before userinfo, and
//!   userinfo's answer (`EnrollmentUserinfo`) before the member store; a restart finishes from
//!   the latest of them. Only a token that expired before userinfo answered loses the consent.
//! - **Vipps unavailable** is the `CallError::Unavailable` answer (circuit open, or not sent
//!   because its `Persist` failed). Without a number the QR stage ends `Unavailable`; an
//!   enrollment ends `Unavailable`; a create that was certainly not sent ends the session
//!   `Unavailable` ("take another payment method"); a payment that may exist is still followed,
//!   and the terminal is told once that Vipps is unavailable and once when it answers again.
//! - **Money decisions come from reading the payment.** Webhooks only trigger a read-back. An
//!   unknown create, capture or cancel outcome is read back and retried with the same key,
//!   within `max_*_attempts`; no failure is declared before a final state or the payment's expiry
//!   plus margin.
//!
//! Answers carry the `CallId` of the effect they answer; an answer to any call the state is not
//! waiting for is `Ignored(StaleAnswer)`. Refused commands come back as `Rejected` with a
//! `NotifyTerminal(CommandRejected)`; an event with no transition is `Invalid` (log and count
//! it). In all three cases the session is returned unchanged.

mod config;
mod effect;
mod enroll;
mod event;
mod identify;
mod ids;
mod journal;
mod pay;
mod state;
mod step;
mod store_fault;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;

pub use config::SessionConfig;
pub use effect::{
    CashierCode, CheckInResult, Command, CreatePaymentRequest, Disposition, Effect,
    EnrollmentOutcome, Fact, FailReason, IgnoreReason, InvalidTransition, Membership, NewMember,
    Outcome, Receipt, Rejection, TerminalEvent, Transition,
};
pub use enroll::SLOW_DOWN_STEP;
pub use event::{
    Aggregate, CallError, Consent, Event, LoginAccessToken, MAX_AMOUNT, OrderLine, PayProblem,
    PayRequest, PaymentState, Userinfo,
};
pub use ids::{CallId, KeyedOperation, SessionId, payment_reference};
pub use journal::JournalRecord;
pub use state::{
    EnrollmentProgress, PaymentSnapshot, STATE_LABELS, Session, Snapshot, next_deadline,
    state_labels,
};
pub use step::step;
