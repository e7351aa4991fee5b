//! `step`: the only way a lane session changes state.
//!
//! `dispatch` first drops answers to calls the state no longer awaits (stale, duplicate or
//! superseded answers). Commands, ticks and signals go to handlers that name every state
//! explicitly; answers are matched on (state, event) with the one catch-all, `Invalid`.
//! Whenever a handler does not move to a new state, its effects are dropped and the session is
//! returned unchanged.

use std::time::Duration;

use tokio::time::Instant;

use crate::domain::{LaneId, Msisdn, PaymentReference};

use super::config::SessionConfig;
use super::effect::{
    CheckInResult, Command, CreatePaymentRequest, Disposition, Effect, EnrollmentOutcome, Fact,
    FailReason, IgnoreReason, InvalidTransition, Membership, NewMember, Outcome, Receipt,
    Rejection, TerminalEvent, Transition,
};
use super::event::{
    Aggregate, CallError, Event, LoginAccessToken, PayRequest, PaymentState, Userinfo,
};
use super::ids::{CallId, KeyedOperation, SessionId, idempotency_key, payment_reference};
use super::journal::JournalRecord;
use super::state::{
    CancelIntent, CheckIn, Ctx, Customer, Finishing, Follow, Login, Payment, Pending, Session,
    State,
};

/// `slow_down` makes the Login polling interval this much longer (CIBA, RFC 8628 style).
const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// A server interval below this is raised to it, so a bad answer cannot make the lane spin.
const MIN_LOGIN_INTERVAL: Duration = Duration::from_secs(1);
/// Userinfo calls per consent; the Vipps client already retries each one within its deadline.
const MAX_USERINFO_ATTEMPTS: u32 = 3;
/// The cashier's reason when userinfo refuses the journalled token.
pub(super) const USERINFO_TOKEN_EXPIRED: &str =
    "the customer consented, but the Vipps login expired before the member was saved: enroll again";
/// The polling interval of an enrollment recovered from the journal (CIBA's default).
pub(super) const RECOVERED_LOGIN_INTERVAL: Duration = Duration::from_secs(5);

/// Feeds one event to the session at `now`; returns the next session and what to do.
pub fn step(session: &Session, event: Event, now: Instant, cfg: &SessionConfig) -> Transition {
    let state_label = session.state.label();
    let event_label = event.label();
    let mut cx = Cx::new(&session.lane, cfg, now, session.next_call);
    match dispatch(session.state.clone(), event, &mut cx) {
        Step::To(state) => Transition {
            session: Session {
                lane: session.lane.clone(),
                next_call: cx.next_call,
                state,
            },
            effects: cx.fx,
            disposition: Disposition::Applied,
        },
        Step::Ignore(reason) => Transition {
            session: session.clone(),
            effects: Vec::new(),
            disposition: Disposition::Ignored(reason),
        },
        Step::Reject(command, rejection) => Transition {
            session: session.clone(),
            effects: vec![Effect::NotifyTerminal(TerminalEvent::CommandRejected {
                command,
                rejection: rejection.clone(),
            })],
            disposition: Disposition::Rejected(rejection),
        },
        Step::Invalid => Transition {
            session: session.clone(),
            effects: Vec::new(),
            disposition: Disposition::Invalid(InvalidTransition {
                state: state_label,
                event: event_label,
            }),
        },
    }
}

/// What a handler decided.
#[allow(
    clippy::large_enum_variant,
    reason = "short-lived return value; boxing the state would only add an allocation per step"
)]
enum Step {
    To(State),
    Ignore(IgnoreReason),
    Reject(Command, Rejection),
    Invalid,
}

/// The step's context: the clock, the config, call ids and the effects so far.
pub(super) struct Cx<'a> {
    lane: &'a LaneId,
    pub(super) cfg: &'a SessionConfig,
    pub(super) now: Instant,
    pub(super) next_call: u64,
    pub(super) fx: Vec<Effect>,
}

impl<'a> Cx<'a> {
    pub(super) fn new(
        lane: &'a LaneId,
        cfg: &'a SessionConfig,
        now: Instant,
        next_call: u64,
    ) -> Self {
        Self {
            lane,
            cfg,
            now,
            next_call,
            fx: Vec::new(),
        }
    }

    fn call(&mut self) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        call
    }

    fn emit(&mut self, effect: Effect) {
        self.fx.push(effect);
    }

    fn persist(&mut self, ctx: &Ctx, record: JournalRecord) {
        self.emit(Effect::Persist {
            session: ctx.id.clone(),
            record,
        });
    }

    pub(super) fn notify(&mut self, event: TerminalEvent) {
        self.emit(Effect::NotifyTerminal(event));
    }
}

fn dispatch(state: State, event: Event, cx: &mut Cx) -> Step {
    if let Some(call) = event.call() {
        let check_in = matches!(
            event,
            Event::CheckInSent { .. } | Event::CheckInFailed { .. }
        );
        let awaited = if check_in {
            state.awaits_check_in(call)
        } else {
            state.awaits_own(call)
        };
        if !awaited && !late_consent(&state, &event) {
            // A pending call answered with the wrong kind of event is a bug, not a race.
            return if state.awaits_own(call) || state.awaits_check_in(call) {
                Step::Invalid
            } else {
                Step::Ignore(IgnoreReason::StaleAnswer)
            };
        }
    }
    match event {
        Event::CustomerQrScanned {
            qr,
            clear_text,
            session_id,
        } => on_customer_qr(state, qr, clear_text, session_id, cx),
        Event::Enroll => on_enroll(state, cx),
        Event::Pay(request) => on_pay(state, request, cx),
        Event::Cancel => on_cancel(state, cx),
        Event::Reset => on_reset(state, cx),
        Event::Tick => on_tick(state, cx),
        Event::WebhookReceived { reference } => on_webhook(state, reference, cx),
        Event::LoginPinged { auth_req_id } => on_login_ping(state, auth_req_id, cx),
        Event::CheckInSent { .. } => on_check_in(state, CheckInResult::Sent, cx),
        Event::CheckInFailed { .. } => on_check_in(state, CheckInResult::Failed, cx),
        answer @ (Event::QrExchanged { .. }
        | Event::QrExchangeFailed { .. }
        | Event::MembershipKnown { .. }
        | Event::MembershipLookupFailed { .. }
        | Event::LoginStarted { .. }
        | Event::LoginStartFailed { .. }
        | Event::LoginPending { .. }
        | Event::LoginSlowDown { .. }
        | Event::LoginConsented { .. }
        | Event::LoginDenied { .. }
        | Event::LoginExpired { .. }
        | Event::LoginFailed { .. }
        | Event::UserinfoFetched { .. }
        | Event::UserinfoFailed { .. }
        | Event::MemberStored { .. }
        | Event::MemberStoreFailed { .. }
        | Event::PaymentCreated { .. }
        | Event::PaymentCreateFailed { .. }
        | Event::PaymentStatus { .. }
        | Event::PaymentNotFound { .. }
        | Event::PaymentReadFailed { .. }
        | Event::PaymentCaptured { .. }
        | Event::CaptureFailed { .. }
        | Event::PaymentCancelled { .. }
        | Event::CancelFailed { .. }) => on_answer(state, answer, cx),
    }
}

/// A token for the login the state waits on, from a poll that had timed out (a newer poll is
/// pending). The token is the consent and Vipps hands it out only once: it is taken.
fn late_consent(state: &State, event: &Event) -> bool {
    match (state, event) {
        (State::AwaitingConsent { login, .. }, Event::LoginConsented { auth_req_id, .. }) => {
            *auth_req_id == login.auth_req_id
        }
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// Customer QR and cashier commands: every state named.

fn on_customer_qr(
    state: State,
    qr: String,
    clear_text: Option<Msisdn>,
    session_id: SessionId,
    cx: &mut Cx,
) -> Step {
    let same = |ctx: &Ctx, known: Option<&Msisdn>| {
        ctx.qr == qr || (clear_text.is_some() && clear_text.as_ref() == known)
    };
    match state {
        State::Idle => {
            let ctx = Ctx {
                id: session_id,
                started_at: cx.now,
                qr: qr.clone(),
                check_in: CheckIn::NotSent,
                vipps_degraded: false,
            };
            cx.persist(&ctx, JournalRecord::SessionStarted);
            cx.notify(TerminalEvent::CustomerScanned);
            Step::To(exchange_qr(ctx, qr, clear_text, cx))
        }
        State::AwaitingQrExchange {
            ctx,
            clear_text: known,
            ..
        } => {
            if same(&ctx, known.as_ref()) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        State::AwaitingMembership { ctx, msisdn, .. } => {
            if same(&ctx, Some(&msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        State::ReadyForPayment { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        State::AwaitingLoginStart { ctx, customer, .. }
        | State::AwaitingConsent { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                finish_enrollment(&ctx, EnrollmentOutcome::Abandoned, None, cx);
                replace_customer(ctx, qr, clear_text, cx)
            }
        }
        // The customer consented: the member is saved first (a bounded moment), never dropped.
        State::AwaitingMemberStore { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                Step::Reject(Command::CustomerQr, Rejection::EnrollmentFinishing)
            }
        }
        State::AwaitingPaymentCreation { ctx, customer, .. }
        | State::AwaitingPayment { ctx, customer, .. }
        | State::AwaitingCapture { ctx, customer, .. }
        | State::AwaitingCancel { ctx, customer, .. } => {
            if same(&ctx, Some(&customer.msisdn)) {
                Step::Ignore(IgnoreReason::DuplicateQr)
            } else {
                Step::Reject(Command::CustomerQr, Rejection::PaymentInProgress)
            }
        }
    }
}

/// A different customer's QR before payment: same session, identification starts over.
fn replace_customer(ctx: Ctx, qr: String, clear_text: Option<Msisdn>, cx: &mut Cx) -> Step {
    let ctx = Ctx {
        qr: qr.clone(),
        // The previous customer's check-in answer becomes stale.
        check_in: CheckIn::NotSent,
        ..ctx
    };
    cx.persist(&ctx, JournalRecord::CustomerReplaced);
    cx.notify(TerminalEvent::CustomerReplaced);
    Step::To(exchange_qr(ctx, qr, clear_text, cx))
}

fn on_enroll(state: State, cx: &mut Cx) -> Step {
    let reject = |r| Step::Reject(Command::Enroll, r);
    match state {
        State::Idle => reject(Rejection::NoCustomer),
        State::AwaitingQrExchange { .. } | State::AwaitingMembership { .. } => {
            reject(Rejection::CustomerNotIdentified)
        }
        State::ReadyForPayment { ctx, customer, .. } => match customer.membership {
            Membership::Member => reject(Rejection::AlreadyMember),
            Membership::Unknown => reject(Rejection::MembershipUnknown),
            Membership::NonMember => {
                let call = cx.call();
                cx.emit(Effect::StartLogin {
                    call,
                    msisdn: customer.msisdn.clone(),
                });
                cx.notify(TerminalEvent::EnrollmentRequested);
                Step::To(State::AwaitingLoginStart {
                    ctx,
                    customer,
                    call,
                    deadline: cx.now + cx.cfg.login_start_timeout,
                })
            }
        },
        State::AwaitingLoginStart { .. }
        | State::AwaitingConsent { .. }
        | State::AwaitingMemberStore { .. } => reject(Rejection::EnrollmentInProgress),
        State::AwaitingPaymentCreation { .. }
        | State::AwaitingPayment { .. }
        | State::AwaitingCapture { .. }
        | State::AwaitingCancel { .. } => reject(Rejection::PaymentInProgress),
    }
}

fn on_pay(state: State, request: PayRequest, cx: &mut Cx) -> Step {
    let reject = |r| Step::Reject(Command::Pay, r);
    let invalid = |problem| reject(Rejection::InvalidPayment { problem });
    match state {
        State::Idle => reject(Rejection::NoCustomer),
        State::AwaitingQrExchange { .. } | State::AwaitingMembership { .. } => {
            reject(Rejection::CustomerNotIdentified)
        }
        State::ReadyForPayment { ctx, customer, .. } => match request.validate() {
            Err(problem) => invalid(problem),
            Ok(()) => Step::To(start_payment(ctx, customer, request, cx)),
        },
        // Decision: Pay while the customer has not consented yet abandons the enrollment, so
        // the till is never held up by a customer who ignores the consent request. A consent
        // given later still enrolls: `supervisor::late_enrollment` follows the Login up.
        State::AwaitingLoginStart { ctx, customer, .. }
        | State::AwaitingConsent { ctx, customer, .. } => match request.validate() {
            Err(problem) => invalid(problem),
            Ok(()) => {
                finish_enrollment(&ctx, EnrollmentOutcome::Abandoned, None, cx);
                Step::To(start_payment(ctx, customer, request, cx))
            }
        },
        // Consent is given and the member is being saved locally: a moment's wait keeps it.
        State::AwaitingMemberStore { .. } => reject(Rejection::EnrollmentFinishing),
        State::AwaitingPaymentCreation { .. }
        | State::AwaitingPayment { .. }
        | State::AwaitingCapture { .. }
        | State::AwaitingCancel { .. } => reject(Rejection::PaymentAlreadyRequested),
    }
}

fn on_cancel(state: State, cx: &mut Cx) -> Step {
    let reject = |r| Step::Reject(Command::Cancel, r);
    match state {
        State::Idle => reject(Rejection::NoSession),
        State::AwaitingQrExchange { ctx, .. }
        | State::AwaitingMembership { ctx, .. }
        | State::ReadyForPayment { ctx, .. } => Step::To(end(ctx, Outcome::Cancelled, None, cx)),
        State::AwaitingLoginStart { ctx, .. } | State::AwaitingConsent { ctx, .. } => {
            finish_enrollment(&ctx, EnrollmentOutcome::Abandoned, None, cx);
            Step::To(end(ctx, Outcome::Cancelled, None, cx))
        }
        // A consent is never dropped: the member is saved first (a bounded moment).
        State::AwaitingMemberStore { .. } => reject(Rejection::EnrollmentFinishing),
        State::AwaitingPaymentCreation {
            ctx,
            customer,
            mut payment,
            call,
            deadline,
        } => {
            if payment.cancel != CancelIntent::None {
                return reject(Rejection::CancelAlreadyRequested);
            }
            // Nothing to cancel yet: the cancel is sent as soon as the payment exists.
            payment.cancel = CancelIntent::TransactionOnly { attempts: 0 };
            cx.notify(TerminalEvent::CancelRequested);
            Step::To(State::AwaitingPaymentCreation {
                ctx,
                customer,
                payment,
                call,
                deadline,
            })
        }
        State::AwaitingPayment {
            ctx,
            customer,
            mut payment,
            follow,
        } => {
            if payment.cancel != CancelIntent::None {
                return reject(Rejection::CancelAlreadyRequested);
            }
            payment.cancel = CancelIntent::TransactionOnly { attempts: 0 };
            cx.notify(TerminalEvent::CancelRequested);
            Step::To(send_cancel(ctx, customer, payment, follow, false, cx))
        }
        State::AwaitingCapture { .. } => reject(Rejection::CaptureInProgress),
        State::AwaitingCancel { .. } => reject(Rejection::CancelAlreadyRequested),
    }
}

fn on_reset(state: State, cx: &mut Cx) -> Step {
    match state {
        State::Idle => Step::Ignore(IgnoreReason::NoSession),
        State::AwaitingQrExchange { ctx, .. }
        | State::AwaitingMembership { ctx, .. }
        | State::ReadyForPayment { ctx, .. } => Step::To(end(ctx, Outcome::Closed, None, cx)),
        State::AwaitingLoginStart { ctx, .. } | State::AwaitingConsent { ctx, .. } => {
            finish_enrollment(&ctx, EnrollmentOutcome::Abandoned, None, cx);
            Step::To(end(ctx, Outcome::Closed, None, cx))
        }
        // A consent is never dropped: the member is saved first (a bounded moment).
        State::AwaitingMemberStore { .. } => {
            Step::Reject(Command::Reset, Rejection::EnrollmentFinishing)
        }
        // Decision: a reset never forgets a payment; the cashier cancels it or waits.
        State::AwaitingPaymentCreation { .. }
        | State::AwaitingPayment { .. }
        | State::AwaitingCapture { .. }
        | State::AwaitingCancel { .. } => {
            Step::Reject(Command::Reset, Rejection::PaymentInProgress)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Time and signals.

fn on_tick(mut state: State, cx: &mut Cx) -> Step {
    if let Some(ctx) = state.ctx_mut()
        && let CheckIn::Pending { deadline, .. } = ctx.check_in
        && cx.now >= deadline
    {
        ctx.check_in = CheckIn::Done;
        cx.notify(TerminalEvent::CheckIn {
            result: CheckInResult::TimedOut,
        });
    }
    if state.own_deadline().is_none_or(|d| cx.now < d) {
        return Step::To(state);
    }
    Step::To(match state {
        State::Idle => State::Idle,
        State::AwaitingQrExchange {
            ctx, clear_text, ..
        } => {
            let error = CallError::Unknown {
                detail: "the QR exchange did not answer in time".to_owned(),
            };
            qr_exchange_failed(ctx, clear_text, error, cx)
        }
        State::AwaitingMembership { ctx, msisdn, .. } => {
            membership_known(ctx, msisdn, Membership::Unknown, cx)
        }
        State::ReadyForPayment { ctx, .. } => end(ctx, Outcome::Abandoned, None, cx),
        State::AwaitingLoginStart { ctx, customer, .. } => {
            let outcome = EnrollmentOutcome::Failed {
                detail: "Vipps Login did not answer in time".to_owned(),
            };
            enrollment_over(ctx, customer, outcome, None, cx)
        }
        State::AwaitingConsent {
            ctx,
            customer,
            login,
        } => consent_due(ctx, customer, login, cx),
        State::AwaitingMemberStore {
            ctx,
            customer,
            stage,
            ..
        } => match stage {
            // The token is still good for a while: ask again while attempts remain.
            Finishing::Userinfo { token, attempts } if attempts < MAX_USERINFO_ATTEMPTS => {
                fetch_userinfo(ctx, customer, token, attempts, cx)
            }
            Finishing::Userinfo { .. } => {
                let outcome = EnrollmentOutcome::Failed {
                    detail: "Vipps did not send the new member's details in time".to_owned(),
                };
                enrollment_over(ctx, customer, outcome, None, cx)
            }
            Finishing::Store { .. } => {
                let outcome = EnrollmentOutcome::Failed {
                    detail: "saving the member did not finish in time".to_owned(),
                };
                enrollment_over(ctx, customer, outcome, None, cx)
            }
        },
        State::AwaitingPaymentCreation {
            ctx,
            customer,
            payment,
            ..
        } => create_outcome_unknown(ctx, customer, payment, cx),
        State::AwaitingPayment {
            ctx,
            customer,
            payment,
            follow,
        } => follow_due(ctx, customer, payment, follow, cx),
        // No answer to a capture or cancel: read the payment back; the same keys are reused.
        State::AwaitingCapture {
            ctx,
            customer,
            payment,
            follow,
            ..
        }
        | State::AwaitingCancel {
            ctx,
            customer,
            payment,
            follow,
            ..
        } => read_back(ctx, customer, payment, follow, cx.now, cx),
    })
}

fn on_webhook(state: State, reference: PaymentReference, cx: &mut Cx) -> Step {
    match state {
        State::AwaitingPayment {
            ctx,
            customer,
            payment,
            mut follow,
        } => {
            if payment.reference != reference {
                return Step::Ignore(IgnoreReason::UnknownReference);
            }
            // A signal, not a decision: read the payment back now (or right after the read in
            // flight, whose answer may predate the webhook).
            if follow.read.is_some() {
                if follow.reread {
                    return Step::Ignore(IgnoreReason::CallInFlight);
                }
                follow.reread = true;
            } else {
                follow.next_poll = cx.now;
                poll_if_due(&payment, &mut follow, cx);
            }
            Step::To(State::AwaitingPayment {
                ctx,
                customer,
                payment,
                follow,
            })
        }
        State::AwaitingPaymentCreation { payment, .. }
        | State::AwaitingCapture { payment, .. }
        | State::AwaitingCancel { payment, .. } => {
            if payment.reference == reference {
                Step::Ignore(IgnoreReason::CallInFlight)
            } else {
                Step::Ignore(IgnoreReason::UnknownReference)
            }
        }
        State::Idle
        | State::AwaitingQrExchange { .. }
        | State::AwaitingMembership { .. }
        | State::ReadyForPayment { .. }
        | State::AwaitingLoginStart { .. }
        | State::AwaitingConsent { .. }
        | State::AwaitingMemberStore { .. } => Step::Ignore(IgnoreReason::UnknownReference),
    }
}

fn on_login_ping(state: State, auth_req_id: String, cx: &mut Cx) -> Step {
    match state {
        State::AwaitingConsent {
            ctx,
            customer,
            mut login,
        } => {
            if login.auth_req_id != auth_req_id {
                return Step::Ignore(IgnoreReason::UnknownReference);
            }
            if login.poll.is_some() {
                return Step::Ignore(IgnoreReason::CallInFlight);
            }
            // The ping says the token is ready: one call now, whatever the interval.
            poll_login(&mut login, cx);
            Step::To(State::AwaitingConsent {
                ctx,
                customer,
                login,
            })
        }
        State::Idle
        | State::AwaitingQrExchange { .. }
        | State::AwaitingMembership { .. }
        | State::ReadyForPayment { .. }
        | State::AwaitingLoginStart { .. }
        | State::AwaitingMemberStore { .. }
        | State::AwaitingPaymentCreation { .. }
        | State::AwaitingPayment { .. }
        | State::AwaitingCapture { .. }
        | State::AwaitingCancel { .. } => Step::Ignore(IgnoreReason::UnknownReference),
    }
}

/// Check-in runs beside the flow: its answer is recorded and told, in whatever state.
fn on_check_in(mut state: State, result: CheckInResult, cx: &mut Cx) -> Step {
    let Some(ctx) = state.ctx_mut() else {
        // `dispatch` only lets through answers to a pending check-in, which needs a session.
        return Step::Invalid;
    };
    ctx.check_in = CheckIn::Done;
    cx.notify(TerminalEvent::CheckIn { result });
    Step::To(state)
}

// ---------------------------------------------------------------------------------------------
// Answers: (state, event), with the one catch-all.

fn on_answer(state: State, event: Event, cx: &mut Cx) -> Step {
    let now = cx.now;
    let next = match (state, event) {
        (State::AwaitingQrExchange { mut ctx, .. }, Event::QrExchanged { msisdn, .. }) => {
            vipps_answered(&mut ctx, cx);
            lookup_membership(ctx, msisdn, cx)
        }
        (
            State::AwaitingQrExchange {
                ctx, clear_text, ..
            },
            Event::QrExchangeFailed { error, .. },
        ) => qr_exchange_failed(ctx, clear_text, error, cx),
        (
            State::AwaitingMembership { ctx, msisdn, .. },
            Event::MembershipKnown { is_member, .. },
        ) => {
            let membership = if is_member {
                Membership::Member
            } else {
                Membership::NonMember
            };
            membership_known(ctx, msisdn, membership, cx)
        }
        (State::AwaitingMembership { ctx, msisdn, .. }, Event::MembershipLookupFailed { .. }) => {
            membership_known(ctx, msisdn, Membership::Unknown, cx)
        }
        (
            State::AwaitingLoginStart { ctx, customer, .. },
            Event::LoginStarted {
                auth_req_id,
                interval,
                expires_in,
                ..
            },
        ) => consent_requested(ctx, customer, auth_req_id, interval, expires_in, cx),
        (
            State::AwaitingLoginStart { ctx, customer, .. },
            Event::LoginStartFailed { error, .. },
        ) => enrollment_over(ctx, customer, enrollment_failure(error), None, cx),
        (
            State::AwaitingConsent {
                ctx,
                customer,
                mut login,
            },
            Event::LoginPending { .. },
        ) => {
            login.poll = None;
            login.next_poll = now + login.interval;
            State::AwaitingConsent {
                ctx,
                customer,
                login,
            }
        }
        (
            State::AwaitingConsent {
                ctx,
                customer,
                mut login,
            },
            Event::LoginSlowDown { .. },
        ) => {
            login.poll = None;
            login.interval += SLOW_DOWN_STEP;
            login.next_poll = now + login.interval;
            State::AwaitingConsent {
                ctx,
                customer,
                login,
            }
        }
        (State::AwaitingConsent { ctx, customer, .. }, Event::LoginConsented { token, .. }) => {
            consented(ctx, customer, token, cx)
        }
        (State::AwaitingConsent { ctx, customer, .. }, Event::LoginDenied { .. }) => {
            enrollment_over(ctx, customer, EnrollmentOutcome::Denied, None, cx)
        }
        (State::AwaitingConsent { ctx, customer, .. }, Event::LoginExpired { .. }) => {
            enrollment_over(ctx, customer, EnrollmentOutcome::Expired, None, cx)
        }
        (
            State::AwaitingConsent {
                ctx,
                customer,
                mut login,
            },
            Event::LoginFailed { error, .. },
        ) => {
            if let CallError::Unknown { .. } = error {
                // A lost poll is not a refusal: poll again at the interval.
                login.poll = None;
                login.next_poll = now + login.interval;
                State::AwaitingConsent {
                    ctx,
                    customer,
                    login,
                }
            } else {
                enrollment_over(ctx, customer, enrollment_failure(error), None, cx)
            }
        }
        (
            State::AwaitingMemberStore {
                ctx,
                customer,
                stage: Finishing::Userinfo { .. },
                ..
            },
            Event::UserinfoFetched { userinfo, .. },
        ) => {
            cx.persist(
                &ctx,
                JournalRecord::EnrollmentUserinfo {
                    userinfo: userinfo.clone(),
                },
            );
            store_member(ctx, customer, userinfo, cx)
        }
        (
            State::AwaitingMemberStore {
                ctx,
                customer,
                stage: Finishing::Userinfo { token, attempts },
                ..
            },
            Event::UserinfoFailed { error, .. },
        ) => userinfo_failed(ctx, customer, token, attempts, error, cx),
        (
            State::AwaitingMemberStore {
                ctx,
                customer,
                stage: Finishing::Store { name },
                ..
            },
            Event::MemberStored { .. },
        ) => enrollment_over(ctx, customer, EnrollmentOutcome::Enrolled, name, cx),
        (
            State::AwaitingMemberStore {
                ctx,
                customer,
                stage: Finishing::Store { .. },
                ..
            },
            Event::MemberStoreFailed { reason, .. },
        ) => {
            let outcome = EnrollmentOutcome::Failed {
                detail: format!("saving the member failed: {reason}"),
            };
            enrollment_over(ctx, customer, outcome, None, cx)
        }
        (
            State::AwaitingPaymentCreation {
                ctx,
                customer,
                payment,
                ..
            },
            Event::PaymentCreated { .. },
        ) => payment_created(ctx, customer, payment, cx),
        (
            State::AwaitingPaymentCreation {
                ctx,
                customer,
                payment,
                ..
            },
            Event::PaymentCreateFailed { error, .. },
        ) => create_failed(ctx, customer, payment, error, cx),
        (
            State::AwaitingPayment {
                ctx,
                customer,
                payment,
                mut follow,
            },
            Event::PaymentStatus {
                state, aggregate, ..
            },
        ) => {
            follow.read = None;
            payment_seen(ctx, customer, payment, follow, state, aggregate, cx)
        }
        (
            State::AwaitingPayment {
                ctx,
                customer,
                payment,
                mut follow,
            },
            Event::PaymentNotFound { .. },
        ) => {
            follow.read = None;
            payment_not_found(ctx, customer, payment, follow, cx)
        }
        (
            State::AwaitingPayment {
                mut ctx,
                customer,
                payment,
                mut follow,
            },
            Event::PaymentReadFailed { error, .. },
        ) => {
            // Keep the schedule (the next poll was set when this read was sent), unless a
            // webhook asked for a fresh read meanwhile.
            follow.read = None;
            if follow.reread {
                follow.reread = false;
                follow.next_poll = now;
            }
            vipps_failed(&mut ctx, &error, true, cx);
            poll_if_due(&payment, &mut follow, cx);
            State::AwaitingPayment {
                ctx,
                customer,
                payment,
                follow,
            }
        }
        (
            State::AwaitingCapture {
                ctx,
                customer,
                payment,
                follow,
                ..
            },
            Event::PaymentCaptured {
                state, aggregate, ..
            },
        ) => payment_seen(ctx, customer, payment, follow, state, aggregate, cx),
        (
            State::AwaitingCapture {
                mut ctx,
                customer,
                mut payment,
                follow,
                ..
            },
            Event::CaptureFailed { error, .. },
        ) => {
            payment.last_error = Some(error.to_string());
            if let CallError::Rejected { .. } = error {
                // A 4xx stays a 4xx for this key: capture no more, read back to learn the truth.
                payment.capture_attempts =
                    payment.capture_attempts.max(cx.cfg.max_capture_attempts);
                read_back(ctx, customer, payment, follow, now, cx)
            } else {
                vipps_failed(&mut ctx, &error, true, cx);
                let later = now + cx.cfg.payment_poll_interval;
                read_back(ctx, customer, payment, follow, later, cx)
            }
        }
        (
            State::AwaitingCancel {
                ctx,
                customer,
                payment,
                follow,
                ..
            },
            Event::PaymentCancelled {
                state, aggregate, ..
            },
        ) => payment_seen(ctx, customer, payment, follow, state, aggregate, cx),
        (
            State::AwaitingCancel {
                mut ctx,
                customer,
                mut payment,
                follow,
                ..
            },
            Event::CancelFailed { error, .. },
        ) => {
            payment.last_error = Some(error.to_string());
            if let CallError::Rejected { .. } = error {
                // Typically authorised meanwhile: the read-back decides (a full cancel).
                read_back(ctx, customer, payment, follow, now, cx)
            } else {
                vipps_failed(&mut ctx, &error, true, cx);
                let later = now + cx.cfg.payment_poll_interval;
                read_back(ctx, customer, payment, follow, later, cx)
            }
        }
        (_, _) => return Step::Invalid,
    };
    Step::To(next)
}

// ---------------------------------------------------------------------------------------------
// Identification and check-in.

fn exchange_qr(ctx: Ctx, qr: String, clear_text: Option<Msisdn>, cx: &mut Cx) -> State {
    let call = cx.call();
    cx.emit(Effect::ExchangeQr { call, qr });
    State::AwaitingQrExchange {
        ctx,
        clear_text,
        call,
        deadline: cx.now + cx.cfg.qr_exchange_timeout,
    }
}

fn qr_exchange_failed(
    mut ctx: Ctx,
    clear_text: Option<Msisdn>,
    error: CallError,
    cx: &mut Cx,
) -> State {
    if let Some(msisdn) = clear_text {
        // The clear-text number is the documented fallback.
        vipps_failed(&mut ctx, &error, false, cx);
        return lookup_membership(ctx, msisdn, cx);
    }
    let outcome = match error {
        CallError::Rejected { .. } => Outcome::Failed {
            reason: FailReason::QrNotRecognised,
        },
        CallError::Unknown { detail } => Outcome::Failed {
            reason: FailReason::IdentificationFailed { detail },
        },
        CallError::Unavailable { .. } => Outcome::Unavailable,
    };
    end(ctx, outcome, None, cx)
}

fn lookup_membership(ctx: Ctx, msisdn: Msisdn, cx: &mut Cx) -> State {
    let call = cx.call();
    cx.emit(Effect::LookupMembership {
        call,
        msisdn: msisdn.clone(),
    });
    State::AwaitingMembership {
        ctx,
        msisdn,
        call,
        deadline: cx.now + cx.cfg.membership_timeout,
    }
}

fn membership_known(mut ctx: Ctx, msisdn: Msisdn, membership: Membership, cx: &mut Cx) -> State {
    cx.persist(
        &ctx,
        JournalRecord::CustomerIdentified {
            msisdn: msisdn.clone(),
            membership,
        },
    );
    cx.emit(Effect::Record(Fact::MembershipChecked {
        result: membership,
    }));
    cx.notify(TerminalEvent::CustomerIdentified {
        phone: msisdn.masked(),
        membership,
    });
    // Best effort, never awaited; Check-in only takes Norwegian numbers.
    ctx.check_in = CheckIn::Done;
    if let Some(is_member) = membership.is_member()
        && msisdn.is_norwegian()
    {
        let call = cx.call();
        cx.emit(Effect::SendCheckIn {
            call,
            msisdn: msisdn.clone(),
            is_member,
        });
        ctx.check_in = CheckIn::Pending {
            call,
            deadline: cx.now + cx.cfg.check_in_timeout,
        };
    }
    ready(ctx, Customer { msisdn, membership }, cx)
}

fn ready(ctx: Ctx, customer: Customer, cx: &Cx) -> State {
    State::ReadyForPayment {
        ctx,
        customer,
        abandon_at: cx.now + cx.cfg.idle_timeout,
    }
}

// ---------------------------------------------------------------------------------------------
// Enrollment.

fn consent_requested(
    mut ctx: Ctx,
    customer: Customer,
    auth_req_id: String,
    interval: Duration,
    expires_in: Duration,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    let interval = interval.max(MIN_LOGIN_INTERVAL);
    cx.persist(
        &ctx,
        JournalRecord::EnrollmentStarted {
            msisdn: customer.msisdn.clone(),
            auth_req_id: auth_req_id.clone(),
        },
    );
    cx.notify(TerminalEvent::EnrollmentAwaitingConsent);
    let login = Login {
        auth_req_id,
        interval,
        next_poll: cx.now + interval,
        poll: None,
        expires_at: cx.now + expires_in.min(cx.cfg.login_timeout),
        vipps_expiry: expires_in <= cx.cfg.login_timeout,
    };
    State::AwaitingConsent {
        ctx,
        customer,
        login,
    }
}

fn consent_due(ctx: Ctx, customer: Customer, mut login: Login, cx: &mut Cx) -> State {
    if cx.now >= login.expires_at {
        // The cashier's patience is not Vipps' consent window: a Login still open at Vipps is
        // handed to the late-enrollment follower, so a consent given later still enrolls.
        let outcome = if login.vipps_expiry {
            EnrollmentOutcome::Expired
        } else {
            EnrollmentOutcome::Abandoned
        };
        return enrollment_over(ctx, customer, outcome, None, cx);
    }
    if login.poll.is_some_and(|p| cx.now >= p.timeout_at) {
        // The poll never answered; the interval has long passed, so poll again now.
        login.poll = None;
    }
    if login.poll.is_none() && cx.now >= login.next_poll {
        poll_login(&mut login, cx);
    }
    State::AwaitingConsent {
        ctx,
        customer,
        login,
    }
}

pub(super) fn poll_login(login: &mut Login, cx: &mut Cx) {
    let call = cx.call();
    cx.emit(Effect::PollLogin {
        call,
        auth_req_id: login.auth_req_id.clone(),
    });
    login.poll = Some(Pending {
        call,
        timeout_at: cx.now + cx.cfg.login_poll_timeout,
    });
}

/// The token poll succeeded. Vipps hands the token out only once, so the consent is journalled
/// (with the token) before anything else: a restart then finishes the enrollment with it.
fn consented(mut ctx: Ctx, customer: Customer, token: LoginAccessToken, cx: &mut Cx) -> State {
    vipps_answered(&mut ctx, cx);
    cx.persist(
        &ctx,
        JournalRecord::EnrollmentConsented {
            login_token: token.clone(),
        },
    );
    fetch_userinfo(ctx, customer, token, 0, cx)
}

/// Userinfo with the consent's token; `attempts` sent so far.
pub(super) fn fetch_userinfo(
    ctx: Ctx,
    customer: Customer,
    token: LoginAccessToken,
    attempts: u32,
    cx: &mut Cx,
) -> State {
    let call = cx.call();
    cx.emit(Effect::FetchUserinfo {
        call,
        token: token.clone(),
    });
    State::AwaitingMemberStore {
        ctx,
        customer,
        stage: Finishing::Userinfo {
            token,
            attempts: attempts + 1,
        },
        call,
        deadline: cx.now + cx.cfg.login_poll_timeout,
    }
}

fn userinfo_failed(
    ctx: Ctx,
    customer: Customer,
    token: LoginAccessToken,
    attempts: u32,
    error: CallError,
    cx: &mut Cx,
) -> State {
    match error {
        // The token expired (a restart came too late) or was refused: the consent cannot be
        // turned into a member any more. This is the one loss the journal cannot prevent.
        CallError::Rejected { status: 401, .. } => {
            let outcome = EnrollmentOutcome::Failed {
                detail: USERINFO_TOKEN_EXPIRED.to_owned(),
            };
            enrollment_over(ctx, customer, outcome, None, cx)
        }
        CallError::Rejected { .. } => {
            enrollment_over(ctx, customer, enrollment_failure(error), None, cx)
        }
        // Not sent or lost: the token is still good for a while, so ask again.
        CallError::Unknown { .. } | CallError::Unavailable { .. }
            if attempts < MAX_USERINFO_ATTEMPTS =>
        {
            fetch_userinfo(ctx, customer, token, attempts, cx)
        }
        CallError::Unknown { .. } | CallError::Unavailable { .. } => {
            enrollment_over(ctx, customer, enrollment_failure(error), None, cx)
        }
    }
}

pub(super) fn store_member(ctx: Ctx, customer: Customer, userinfo: Userinfo, cx: &mut Cx) -> State {
    let call = cx.call();
    let name = userinfo.name.clone();
    cx.emit(Effect::StoreMember {
        call,
        member: NewMember {
            msisdn: customer.msisdn.clone(),
            userinfo,
        },
    });
    State::AwaitingMemberStore {
        ctx,
        customer,
        stage: Finishing::Store { name },
        call,
        deadline: cx.now + cx.cfg.member_store_timeout,
    }
}

fn enrollment_failure(error: CallError) -> EnrollmentOutcome {
    match error {
        CallError::Unavailable { .. } => EnrollmentOutcome::Unavailable,
        CallError::Rejected { detail, .. } | CallError::Unknown { detail } => {
            EnrollmentOutcome::Failed { detail }
        }
    }
}

/// The enrollment is over; the customer is ready for payment, as a member if enrolled.
fn enrollment_over(
    ctx: Ctx,
    mut customer: Customer,
    outcome: EnrollmentOutcome,
    name: Option<String>,
    cx: &mut Cx,
) -> State {
    if outcome == EnrollmentOutcome::Enrolled {
        customer.membership = Membership::Member;
    }
    finish_enrollment(&ctx, outcome, name, cx);
    ready(ctx, customer, cx)
}

fn finish_enrollment(ctx: &Ctx, outcome: EnrollmentOutcome, name: Option<String>, cx: &mut Cx) {
    cx.persist(
        ctx,
        JournalRecord::EnrollmentFinished {
            outcome: outcome.clone(),
        },
    );
    cx.emit(Effect::Record(Fact::EnrollmentFinished {
        outcome: outcome.clone(),
    }));
    cx.notify(TerminalEvent::EnrollmentFinished { outcome, name });
}

// ---------------------------------------------------------------------------------------------
// Payment.

fn start_payment(ctx: Ctx, customer: Customer, request: PayRequest, cx: &mut Cx) -> State {
    let reference = payment_reference(cx.lane, &ctx.id);
    let receipt = request.order_lines.map(|order_lines| Receipt {
        order_lines,
        pos_id: cx.lane.clone(),
        receipt_number: request.receipt_number,
    });
    let create = CreatePaymentRequest {
        reference: reference.clone(),
        idempotency_key: idempotency_key(&ctx.id, KeyedOperation::Create),
        amount: request.amount,
        msisdn: customer.msisdn.clone(),
        description: request.description,
        receipt,
    };
    let payment = Payment {
        reference,
        amount: request.amount,
        request: Some(create.clone()),
        created_at: cx.now,
        confirmed: false,
        maybe_created: false,
        create_attempts: 0,
        capture_attempts: 0,
        cancel: CancelIntent::None,
        last_state: None,
        last_error: None,
    };
    cx.notify(TerminalEvent::PaymentRequested {
        amount: request.amount,
    });
    send_create(ctx, customer, payment, create, cx)
}

/// Journal first, then create; a retry sends the same body with the same key.
fn send_create(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    request: CreatePaymentRequest,
    cx: &mut Cx,
) -> State {
    payment.create_attempts += 1;
    payment.created_at = cx.now;
    cx.persist(
        &ctx,
        JournalRecord::PaymentRequested {
            reference: request.reference.clone(),
            idempotency_key: request.idempotency_key.clone(),
            amount: request.amount,
            msisdn: request.msisdn.clone(),
            description: request.description.clone(),
            receipt_number: request
                .receipt
                .as_ref()
                .and_then(|r| r.receipt_number.clone()),
            attempt: payment.create_attempts,
        },
    );
    let call = cx.call();
    cx.emit(Effect::CreatePayment { call, request });
    State::AwaitingPaymentCreation {
        ctx,
        customer,
        payment,
        call,
        deadline: cx.now + cx.cfg.payment_create_timeout,
    }
}

fn payment_created(mut ctx: Ctx, customer: Customer, mut payment: Payment, cx: &mut Cx) -> State {
    vipps_answered(&mut ctx, cx);
    payment.confirmed = true;
    cx.persist(
        &ctx,
        JournalRecord::PaymentCreated {
            reference: payment.reference.clone(),
        },
    );
    let mut follow = new_follow(&payment, payment.created_at + cx.cfg.payment_first_poll, cx);
    if payment.cancel != CancelIntent::None {
        // The cashier cancelled while the create was in flight.
        return send_cancel(ctx, customer, payment, follow, false, cx);
    }
    cx.notify(TerminalEvent::PaymentAwaitingCustomer {
        amount: payment.amount,
    });
    poll_if_due(&payment, &mut follow, cx);
    State::AwaitingPayment {
        ctx,
        customer,
        payment,
        follow,
    }
}

fn create_failed(
    mut ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    error: CallError,
    cx: &mut Cx,
) -> State {
    let cancelled = payment.cancel != CancelIntent::None;
    match error {
        // Certain that no payment exists: the first attempt was refused or never sent.
        CallError::Rejected { status, detail } if !payment.maybe_created => {
            let outcome = if cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Failed {
                    reason: FailReason::PaymentRejected { status, detail },
                }
            };
            end(ctx, outcome, Some(&payment), cx)
        }
        CallError::Unavailable { .. } if !payment.maybe_created => {
            let outcome = if cancelled {
                Outcome::Cancelled
            } else {
                Outcome::Unavailable
            };
            end(ctx, outcome, Some(&payment), cx)
        }
        // The payment may exist: never a new one, read it back (and retry with the same key).
        error => {
            payment.last_error = Some(error.to_string());
            vipps_failed(&mut ctx, &error, true, cx);
            create_outcome_unknown(ctx, customer, payment, cx)
        }
    }
}

fn create_outcome_unknown(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    cx: &mut Cx,
) -> State {
    payment.maybe_created = true;
    let mut follow = new_follow(&payment, cx.now, cx);
    poll_if_due(&payment, &mut follow, cx);
    State::AwaitingPayment {
        ctx,
        customer,
        payment,
        follow,
    }
}

pub(super) fn new_follow(payment: &Payment, next_poll: Instant, cx: &Cx) -> Follow {
    Follow {
        deadline: payment.created_at + cx.cfg.payment_expiry + cx.cfg.payment_margin,
        next_poll,
        read: None,
        reread: false,
        give_up_at: None,
    }
}

pub(super) fn poll_if_due(payment: &Payment, follow: &mut Follow, cx: &mut Cx) {
    if follow.read.is_none() && cx.now >= follow.next_poll {
        let call = cx.call();
        cx.emit(Effect::ReadPayment {
            call,
            reference: payment.reference.clone(),
        });
        follow.read = Some(Pending {
            call,
            timeout_at: cx.now + cx.cfg.payment_read_timeout,
        });
        follow.next_poll = cx.now + cx.cfg.payment_poll_interval;
    }
}

/// Back to following the payment, with a read-back at `at`.
fn read_back(
    ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    at: Instant,
    cx: &mut Cx,
) -> State {
    follow.read = None;
    follow.next_poll = at;
    // Through `follow_due`, so a safety net that passed meanwhile is honoured at once.
    follow_due(ctx, customer, payment, follow, cx)
}

fn follow_due(
    ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    let now = cx.now;
    if let Some(give_up_at) = follow.give_up_at {
        if now >= give_up_at {
            let outcome = Outcome::Failed {
                reason: FailReason::NoFinalState,
            };
            return end(ctx, outcome, Some(&payment), cx);
        }
    } else if now >= follow.deadline {
        // The safety net past Vipps' expiry: a final read-back, not a failure.
        follow.give_up_at = Some(now + cx.cfg.final_read_window);
        follow.read = None;
        follow.next_poll = now;
    }
    if follow.read.is_some_and(|r| now >= r.timeout_at) {
        follow.read = None;
    }
    poll_if_due(&payment, &mut follow, cx);
    State::AwaitingPayment {
        ctx,
        customer,
        payment,
        follow,
    }
}

fn payment_not_found(
    mut ctx: Ctx,
    customer: Customer,
    payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    if payment.confirmed || follow.give_up_at.is_some() {
        // Vipps confirmed it earlier (a read glitch), or the safety net runs: keep reading.
        poll_if_due(&payment, &mut follow, cx);
        return State::AwaitingPayment {
            ctx,
            customer,
            payment,
            follow,
        };
    }
    if payment.cancel != CancelIntent::None {
        return end(ctx, Outcome::Cancelled, Some(&payment), cx);
    }
    match payment.request.clone() {
        Some(request) if payment.create_attempts < cx.cfg.max_create_attempts => {
            send_create(ctx, customer, payment, request, cx)
        }
        // Out of attempts, or recovered after a restart (the customer may have left).
        Some(_) | None => {
            let outcome = Outcome::Failed {
                reason: FailReason::PaymentNotCreated,
            };
            end(ctx, outcome, Some(&payment), cx)
        }
    }
}

/// Money decisions: a payment's state and aggregate, from a read-back or a capture/cancel answer.
fn payment_seen(
    mut ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    mut follow: Follow,
    state: PaymentState,
    aggregate: Aggregate,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    payment.confirmed = true;
    payment.last_state = Some(state);
    let amount = payment.amount.value;
    let fail = |reason| Outcome::Failed { reason };
    match state {
        PaymentState::Created => {
            if follow.give_up_at.is_some() {
                // Still CREATED past its expiry and the margin: stop waiting.
                return end(ctx, fail(FailReason::NoFinalState), Some(&payment), cx);
            }
            if let CancelIntent::TransactionOnly { attempts } = payment.cancel
                && attempts < cx.cfg.max_cancel_attempts
            {
                return send_cancel(ctx, customer, payment, follow, false, cx);
            }
            if follow.reread {
                follow.reread = false;
                follow.next_poll = cx.now;
            }
            poll_if_due(&payment, &mut follow, cx);
            State::AwaitingPayment {
                ctx,
                customer,
                payment,
                follow,
            }
        }
        PaymentState::Authorized => {
            if aggregate.captured == amount {
                return end(ctx, Outcome::Paid, Some(&payment), cx);
            }
            if aggregate.captured > 0 {
                let reason = FailReason::CaptureMismatch {
                    captured: aggregate.captured,
                };
                return end(ctx, fail(reason), Some(&payment), cx);
            }
            if aggregate.cancelled > 0 {
                return end(ctx, Outcome::Cancelled, Some(&payment), cx);
            }
            let detail = |p: &Payment, what: &str| {
                p.last_error
                    .clone()
                    .unwrap_or_else(|| format!("{what} attempts exhausted"))
            };
            match payment.cancel {
                CancelIntent::None => {
                    if payment.capture_attempts < cx.cfg.max_capture_attempts {
                        send_capture(ctx, customer, payment, follow, cx)
                    } else {
                        let detail = detail(&payment, "capture");
                        end(
                            ctx,
                            fail(FailReason::CaptureFailed { detail }),
                            Some(&payment),
                            cx,
                        )
                    }
                }
                // Decision: the cashier cancelled and the customer is at the till, so an
                // authorisation that raced the cancel is cancelled in full, not captured.
                CancelIntent::TransactionOnly { .. } => {
                    payment.cancel = CancelIntent::Full { attempts: 0 };
                    send_cancel(ctx, customer, payment, follow, true, cx)
                }
                CancelIntent::Full { attempts } => {
                    if attempts < cx.cfg.max_cancel_attempts {
                        send_cancel(ctx, customer, payment, follow, true, cx)
                    } else {
                        let detail = detail(&payment, "cancel");
                        end(
                            ctx,
                            fail(FailReason::CancelFailed { detail }),
                            Some(&payment),
                            cx,
                        )
                    }
                }
            }
        }
        PaymentState::Aborted => end(ctx, Outcome::Declined, Some(&payment), cx),
        PaymentState::Expired => end(ctx, Outcome::Expired, Some(&payment), cx),
        PaymentState::Terminated => end(ctx, Outcome::Cancelled, Some(&payment), cx),
    }
}

/// Journal first, then capture the full amount with the session's capture key.
fn send_capture(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    mut follow: Follow,
    cx: &mut Cx,
) -> State {
    payment.capture_attempts += 1;
    if payment.capture_attempts == 1 {
        cx.notify(TerminalEvent::PaymentAuthorised {
            amount: payment.amount,
        });
    }
    let key = idempotency_key(&ctx.id, KeyedOperation::Capture);
    cx.persist(
        &ctx,
        JournalRecord::CaptureRequested {
            reference: payment.reference.clone(),
            idempotency_key: key.clone(),
            amount: payment.amount,
            attempt: payment.capture_attempts,
        },
    );
    let call = cx.call();
    cx.emit(Effect::CapturePayment {
        call,
        reference: payment.reference.clone(),
        idempotency_key: key,
        amount: payment.amount,
    });
    follow.read = None;
    follow.reread = false;
    State::AwaitingCapture {
        ctx,
        customer,
        payment,
        follow,
        call,
        deadline: cx.now + cx.cfg.capture_timeout,
    }
}

/// Journal first, then cancel: transaction-only before authorisation, in full after it.
fn send_cancel(
    ctx: Ctx,
    customer: Customer,
    mut payment: Payment,
    mut follow: Follow,
    full: bool,
    cx: &mut Cx,
) -> State {
    let attempt = match payment.cancel {
        CancelIntent::None => 1,
        CancelIntent::TransactionOnly { attempts } | CancelIntent::Full { attempts } => {
            attempts + 1
        }
    };
    let (op, intent) = if full {
        (
            KeyedOperation::CancelFull,
            CancelIntent::Full { attempts: attempt },
        )
    } else {
        let intent = CancelIntent::TransactionOnly { attempts: attempt };
        (KeyedOperation::Cancel, intent)
    };
    payment.cancel = intent;
    let key = idempotency_key(&ctx.id, op);
    cx.persist(
        &ctx,
        JournalRecord::CancelRequested {
            reference: payment.reference.clone(),
            idempotency_key: key.clone(),
            cancel_transaction_only: !full,
            attempt,
        },
    );
    let call = cx.call();
    cx.emit(Effect::CancelPayment {
        call,
        reference: payment.reference.clone(),
        idempotency_key: key,
        cancel_transaction_only: !full,
    });
    follow.read = None;
    follow.reread = false;
    State::AwaitingCancel {
        ctx,
        customer,
        payment,
        follow,
        call,
        deadline: cx.now + cx.cfg.cancel_timeout,
    }
}

// ---------------------------------------------------------------------------------------------
// Degraded mode and the end of a session.

/// Tells the cashier once when Vipps calls start failing fast.
fn vipps_failed(ctx: &mut Ctx, error: &CallError, payment_followed: bool, cx: &mut Cx) {
    if let CallError::Unavailable { .. } = error
        && !ctx.vipps_degraded
    {
        ctx.vipps_degraded = true;
        cx.notify(TerminalEvent::VippsUnavailable { payment_followed });
    }
}

/// Tells the cashier once when Vipps answers again.
fn vipps_answered(ctx: &mut Ctx, cx: &mut Cx) {
    if ctx.vipps_degraded {
        ctx.vipps_degraded = false;
        cx.notify(TerminalEvent::VippsAvailable);
    }
}

/// Ends the session: journal, payment fact, terminal, then `SessionEnded`.
pub(super) fn end(ctx: Ctx, outcome: Outcome, payment: Option<&Payment>, cx: &mut Cx) -> State {
    cx.persist(
        &ctx,
        JournalRecord::SessionEnded {
            outcome: outcome.clone(),
        },
    );
    if let Some(payment) = payment {
        let captured = (outcome == Outcome::Paid).then_some(payment.amount);
        cx.emit(Effect::Record(Fact::PaymentFinished {
            outcome: outcome.clone(),
            captured,
        }));
    }
    cx.notify(TerminalEvent::SessionEnded {
        outcome: outcome.clone(),
        amount: payment.map(|p| p.amount),
    });
    cx.emit(Effect::SessionEnded {
        session: ctx.id,
        outcome,
        duration: cx.now.saturating_duration_since(ctx.started_at),
    });
    State::Idle
}
