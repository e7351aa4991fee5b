//! `step`: the only way a lane session changes state.
//!
//! `dispatch` first drops answers to calls the state no longer awaits (stale, duplicate or
//! superseded answers). Commands, ticks and signals go to handlers that name every state
//! explicitly; answers are matched on (state, event) with the one catch-all, `Invalid`.
//! Whenever a handler does not move to a new state, its effects are dropped and the session is
//! returned unchanged. The phases live beside it: `identify`, `enroll`, `pay`, `store_fault`;
//! recovery from the journal in `journal`.

use tokio::time::Instant;

use crate::domain::{LaneId, PaymentReference};

use super::config::SessionConfig;
use super::effect::{
    CheckInResult, Command, Disposition, Effect, EnrollmentOutcome, Fact, IgnoreReason,
    InvalidTransition, Membership, Outcome, Rejection, TerminalEvent, Transition,
};
use super::enroll::{
    MAX_USERINFO_ATTEMPTS, SLOW_DOWN_STEP, consent_requested, consented, enrollment_failure,
    store_member, userinfo_failed,
};
use super::enroll::{
    consent_due, enrollment_over, fetch_userinfo, finish_enrollment, on_enroll, poll_login,
};
use super::event::{CallError, Event};
use super::identify::lookup_membership;
use super::identify::{membership_known, on_customer_qr, qr_exchange_failed};
use super::ids::CallId;
use super::journal::JournalRecord;
use super::pay::{create_failed, payment_created, payment_not_found, payment_seen, poll_if_due};
use super::pay::{create_outcome_unknown, follow_due, following, on_pay, read_back, send_cancel};
use super::state::{CancelIntent, CheckIn, Ctx, Finishing, Payment, Session, State};
use super::store_fault::{
    cancel_owed, journalled, on_journal_write_failed, on_store_failed, on_store_writable, owes,
    retry_owed,
};

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
pub(super) enum Step {
    To(State),
    Ignore(IgnoreReason),
    Reject(Command, Rejection),
    Invalid,
}

/// The step's context: the clock, the config, call ids and the effects so far.
pub(super) struct Cx<'a> {
    pub(super) lane: &'a LaneId,
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

    pub(super) fn call(&mut self) -> CallId {
        let call = CallId(self.next_call);
        self.next_call += 1;
        call
    }

    pub(super) fn emit(&mut self, effect: Effect) {
        self.fx.push(effect);
    }

    pub(super) fn persist(&mut self, ctx: &Ctx, record: JournalRecord) {
        self.emit(Effect::Persist {
            session: ctx.id.clone(),
            record,
        });
    }

    /// Journals the session's start unless the journal has it: a session whose customer is
    /// replaced, or that ends, before its first customer was identified.
    pub(super) fn journal_start(&mut self, ctx: &mut Ctx) {
        if !ctx.start_journalled {
            ctx.start_journalled = true;
            self.persist(ctx, JournalRecord::SessionStarted);
        }
    }

    pub(super) fn notify(&mut self, event: TerminalEvent) {
        self.emit(Effect::NotifyTerminal(event));
    }
}

fn dispatch(mut state: State, event: Event, cx: &mut Cx) -> Step {
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
        if !check_in && !matches!(event, Event::JournalWriteFailed { .. }) {
            journalled(&mut state, cx);
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
        Event::JournalWriteFailed { .. } => on_journal_write_failed(state, cx),
        Event::StoreFailed { .. } => on_store_failed(state, cx),
        Event::StoreWritable => on_store_writable(state, cx),
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
// Commands that end or refuse in any phase.

pub(super) fn on_cancel(state: State, cx: &mut Cx) -> Step {
    let reject = |r| Step::Reject(Command::Cancel, r);
    match state {
        State::Idle => reject(Rejection::NoSession),
        State::AwaitingQrExchange { ctx, .. }
        | State::AwaitingMembership { ctx, .. }
        | State::ReadyForPayment { ctx, .. } => Step::To(end(ctx, Outcome::Cancelled, None, cx)),
        State::AwaitingLoginStart { mut ctx, .. } | State::AwaitingConsent { mut ctx, .. } => {
            finish_enrollment(&mut ctx, EnrollmentOutcome::Abandoned, None, cx);
            Step::To(end(ctx, Outcome::Cancelled, None, cx))
        }
        // A consent is never dropped: the member is saved first (a bounded moment).
        State::AwaitingMemberStore { .. } => reject(Rejection::EnrollmentFinishing),
        owed @ (State::AwaitingPaymentCreation { .. } | State::AwaitingCapture { .. })
            if owes(&owed) =>
        {
            cancel_owed(owed, cx)
        }
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

pub(super) fn on_reset(state: State, cx: &mut Cx) -> Step {
    match state {
        State::Idle => Step::Ignore(IgnoreReason::NoSession),
        State::AwaitingQrExchange { ctx, .. }
        | State::AwaitingMembership { ctx, .. }
        | State::ReadyForPayment { ctx, .. } => Step::To(end(ctx, Outcome::Closed, None, cx)),
        State::AwaitingLoginStart { mut ctx, .. } | State::AwaitingConsent { mut ctx, .. } => {
            finish_enrollment(&mut ctx, EnrollmentOutcome::Abandoned, None, cx);
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

pub(super) fn on_tick(mut state: State, cx: &mut Cx) -> Step {
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
    if owes(&state) {
        return Step::To(retry_owed(state, cx));
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

pub(super) fn on_webhook(state: State, reference: PaymentReference, cx: &mut Cx) -> Step {
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

pub(super) fn on_login_ping(state: State, auth_req_id: String, cx: &mut Cx) -> Step {
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
pub(super) fn on_check_in(mut state: State, result: CheckInResult, cx: &mut Cx) -> Step {
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

pub(super) fn on_answer(state: State, event: Event, cx: &mut Cx) -> Step {
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
            following(ctx, customer, payment, follow, cx)
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
// Degraded mode and the end of a session.

/// Tells the cashier once when Vipps calls start failing fast.
pub(super) fn vipps_failed(ctx: &mut Ctx, error: &CallError, payment_followed: bool, cx: &mut Cx) {
    if let CallError::Unavailable { .. } = error
        && !ctx.vipps_degraded
    {
        ctx.vipps_degraded = true;
        cx.notify(TerminalEvent::VippsUnavailable { payment_followed });
    }
}

/// Tells the cashier once when Vipps answers again.
pub(super) fn vipps_answered(ctx: &mut Ctx, cx: &mut Cx) {
    if ctx.vipps_degraded {
        ctx.vipps_degraded = false;
        cx.notify(TerminalEvent::VippsAvailable);
    }
}

/// Ends the session: journal, payment fact, terminal, then `SessionEnded`.
pub(super) fn end(mut ctx: Ctx, outcome: Outcome, payment: Option<&Payment>, cx: &mut Cx) -> State {
    cx.journal_start(&mut ctx);
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
