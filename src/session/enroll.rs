//! Enrollment: Vipps Login from the phone number (CIBA), the consent, userinfo and the member
//! store. Each stage's input is journalled before its call, since Vipps hands a token out once.

use std::time::Duration;

use super::effect::*;
use super::event::*;
use super::identify::ready;
use super::journal::JournalRecord;
use super::state::*;
use super::step::*;

/// `slow_down` makes the Login polling interval this much longer (CIBA, RFC 8628 style).
pub const SLOW_DOWN_STEP: Duration = Duration::from_secs(5);
/// A server interval below this is raised to it, so a bad answer cannot make the lane spin.
pub(super) const MIN_LOGIN_INTERVAL: Duration = Duration::from_secs(1);
/// Userinfo calls per consent; the Vipps client already retries each one within its deadline.
pub(super) const MAX_USERINFO_ATTEMPTS: u32 = 3;
/// The cashier's reason when userinfo refuses the journalled token.
pub(super) const USERINFO_TOKEN_EXPIRED: &str =
    "the customer consented, but the Vipps login expired before the member was saved: enroll again";
/// The polling interval of an enrollment recovered from the journal (CIBA's default).
pub(super) const RECOVERED_LOGIN_INTERVAL: Duration = Duration::from_secs(5);

pub(super) fn on_enroll(state: State, cx: &mut Cx) -> Step {
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

pub(super) fn consent_requested(
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

pub(super) fn consent_due(ctx: Ctx, customer: Customer, mut login: Login, cx: &mut Cx) -> State {
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
pub(super) fn consented(
    mut ctx: Ctx,
    customer: Customer,
    token: LoginAccessToken,
    cx: &mut Cx,
) -> State {
    vipps_answered(&mut ctx, cx);
    cx.persist(
        &ctx,
        JournalRecord::EnrollmentConsented {
            login_token: Some(token.clone()),
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

pub(super) fn userinfo_failed(
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

pub(super) fn enrollment_failure(error: CallError) -> EnrollmentOutcome {
    match error {
        CallError::Unavailable { .. } => EnrollmentOutcome::Unavailable,
        CallError::Rejected { detail, .. } | CallError::Unknown { detail } => {
            EnrollmentOutcome::Failed { detail }
        }
    }
}

/// The enrollment is over; the customer is ready for payment, as a member if enrolled.
pub(super) fn enrollment_over(
    mut ctx: Ctx,
    mut customer: Customer,
    outcome: EnrollmentOutcome,
    name: Option<String>,
    cx: &mut Cx,
) -> State {
    if outcome == EnrollmentOutcome::Enrolled {
        customer.membership = Membership::Member;
    }
    finish_enrollment(&mut ctx, outcome, name, cx);
    ready(ctx, customer, cx)
}

pub(super) fn finish_enrollment(
    ctx: &mut Ctx,
    outcome: EnrollmentOutcome,
    name: Option<String>,
    cx: &mut Cx,
) {
    ctx.enrollment = Some(outcome.clone());
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
