//! The calls a lane's session asks for, one small function per effect: each calls Vipps or the
//! membership store and turns the answer into the session's event. The pipeline
//! (`lane::pipeline`) decides when a call may go.

use std::sync::Arc;
use std::time::Duration;

use crate::domain::{Amount, IdempotencyKey, LaneId, Msisdn, PaymentReference};
use crate::followup::EnrollmentFollower;
use crate::session::{
    CallError, CallId, CreatePaymentRequest, Effect, Event, LoginAccessToken, NewMember,
};
use crate::store::{Member, MembershipStore, PaymentUpdate, Store};
use crate::vipps::actor::VippsHandle;
use crate::vipps::convert::{
    aggregate, call_error, create_request, enrolled_member, login_access_token, userinfo,
};
use crate::vipps::error::VippsError;
use crate::vipps::models::{self, AuthReqId, LoginPoll, LoginRequest, LoginToken};

/// Check-in is best effort: it never holds anything up for longer than this.
pub const CHECK_IN_DEADLINE: Duration = Duration::from_secs(3);
/// How long Vipps keeps a Login open when lanehub does not ask for another expiry.
pub const VIPPS_LOGIN_EXPIRY: Duration = Duration::from_secs(600);
/// The range of `requested_expiry` Vipps accepts.
const REQUESTED_EXPIRY: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(60)..=Duration::from_secs(900);

/// How lanehub starts a Login: the scopes (`vipps.login_scopes`) and the expiry it asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginSettings {
    pub scopes: Vec<String>,
    /// Sent as `requested_expiry` when the late-enrollment follower gives up sooner than Vipps'
    /// own expiry would: a Login nobody follows would only block the customer's next one.
    pub requested_expiry: Option<Duration>,
}

impl LoginSettings {
    /// The scopes from `vipps.login_scopes`; the expiry from how long enrollments are followed.
    pub fn from_settings(settings: &crate::config::Settings) -> Self {
        let followed = settings.supervisor.late_enrollment_window;
        LoginSettings {
            scopes: settings.vipps.login_scopes.clone(),
            requested_expiry: (followed < VIPPS_LOGIN_EXPIRY)
                .then(|| followed.clamp(*REQUESTED_EXPIRY.start(), *REQUESTED_EXPIRY.end())),
        }
    }

    fn request(&self, phone_number: Msisdn) -> LoginRequest {
        LoginRequest {
            phone_number,
            scopes: self.scopes.clone(),
            binding_message: None,
            requested_expiry: self.requested_expiry,
        }
    }
}

/// What a lane needs to carry out effects; shared by every incarnation of the lane.
#[derive(Clone)]
pub struct EffectDeps {
    pub lane: LaneId,
    pub vipps: VippsHandle,
    pub store: Store,
    pub members: Arc<dyn MembershipStore>,
    /// Takes over a consent that comes after the session stopped waiting for it.
    pub follower: EnrollmentFollower,
    pub login: Arc<LoginSettings>,
}

/// The payments index update for what Vipps said of a payment.
fn note(
    payment_state: models::PaymentState,
    agg: &models::Aggregate,
    reference: &PaymentReference,
) -> Option<Note> {
    let update = PaymentUpdate {
        state: Some(crate::followup::payments::index_state(payment_state)),
        captured: Some(agg.captured_amount.value),
        refunded: Some(agg.refunded_amount.value),
    };
    Some((reference.clone(), update))
}

fn member(deps: &EffectDeps, m: NewMember) -> Member {
    enrolled_member(&deps.lane, m.msisdn, m.userinfo)
}

/// What the payments index should learn from a call's answer.
pub(super) type Note = (PaymentReference, PaymentUpdate);

/// Performs one call effect and turns its result into the session's answer, with what the
/// payments index should learn from it.
pub(super) async fn call(deps: &EffectDeps, effect: Effect) -> (Option<Event>, Option<Note>) {
    let event = match effect {
        Effect::ExchangeQr { call, qr } => exchange_qr(deps, call, &qr).await,
        Effect::LookupMembership { call, msisdn } => lookup(deps, call, &msisdn).await,
        Effect::SendCheckIn {
            call,
            msisdn,
            is_member,
        } => check_in(deps, call, &msisdn, is_member).await,
        Effect::StartLogin { call, msisdn } => start_login(deps, call, msisdn).await,
        Effect::PollLogin { call, auth_req_id } => poll_login(deps, call, auth_req_id).await,
        Effect::FetchUserinfo { call, token } => fetch_userinfo(deps, call, &token).await,
        Effect::StoreMember { call, member: m } => store_member(deps, call, m).await,
        Effect::CreatePayment { call, request } => create_payment(deps, call, &request).await,
        Effect::ReadPayment { call, reference } => {
            return read_payment(deps, call, reference).await;
        }
        Effect::CapturePayment {
            call,
            reference,
            idempotency_key,
            amount,
        } => return capture(deps, call, reference, &idempotency_key, amount).await,
        Effect::CancelPayment {
            call,
            reference,
            idempotency_key,
            cancel_transaction_only,
        } => {
            return cancel(
                deps,
                call,
                reference,
                &idempotency_key,
                cancel_transaction_only,
            )
            .await;
        }
        // Not calls: the actor handles them itself.
        Effect::Persist { .. }
        | Effect::NotifyTerminal(_)
        | Effect::Record(_)
        | Effect::SessionEnded { .. } => return (None, None),
    };
    (Some(event), None)
}

async fn exchange_qr(deps: &EffectDeps, call: CallId, qr: &str) -> Event {
    match deps.vipps.exchange_qr(qr).await {
        Ok(q) => Event::QrExchanged {
            call,
            msisdn: q.msisdn,
        },
        Err(e) => Event::QrExchangeFailed {
            call,
            error: call_error(&e),
        },
    }
}

async fn check_in(deps: &EffectDeps, call: CallId, msisdn: &Msisdn, is_member: bool) -> Event {
    let vipps = deps.vipps.with_deadline(CHECK_IN_DEADLINE);
    match vipps.check_in(msisdn, is_member).await {
        Ok(_) => Event::CheckInSent { call },
        Err(e) => Event::CheckInFailed {
            call,
            error: call_error(&e),
        },
    }
}

async fn start_login(deps: &EffectDeps, call: CallId, msisdn: Msisdn) -> Event {
    let request = deps.login.request(msisdn);
    match deps.vipps.login_authenticate(&request).await {
        Ok(auth) => Event::LoginStarted {
            call,
            auth_req_id: auth.auth_req_id.0,
            interval: auth.interval,
            expires_in: auth.expires_in,
        },
        Err(e) => Event::LoginStartFailed {
            call,
            error: login_start_error(deps, &request, &e),
        },
    }
}

async fn store_member(deps: &EffectDeps, call: CallId, m: NewMember) -> Event {
    match deps.members.upsert_member(member(deps, m)).await {
        Ok(_) => Event::MemberStored { call },
        Err(e) => Event::MemberStoreFailed {
            call,
            reason: e.to_string(),
        },
    }
}

async fn create_payment(deps: &EffectDeps, call: CallId, request: &CreatePaymentRequest) -> Event {
    match deps
        .vipps
        .create_payment(&request.idempotency_key, &create_request(request))
        .await
    {
        Ok(_) => Event::PaymentCreated { call },
        Err(e) => Event::PaymentCreateFailed {
            call,
            error: call_error(&e),
        },
    }
}

async fn read_payment(
    deps: &EffectDeps,
    call: CallId,
    reference: PaymentReference,
) -> (Option<Event>, Option<Note>) {
    let answer = match deps.vipps.get_payment(&reference).await {
        Err(e) if e.status() == Some(404) => return (Some(Event::PaymentNotFound { call }), None),
        answer => answer.map(|p| (p.state, p.aggregate)),
    };
    answered(PaymentCall::Read, call, reference, answer)
}

async fn capture(
    deps: &EffectDeps,
    call: CallId,
    reference: PaymentReference,
    key: &IdempotencyKey,
    amount: Amount,
) -> (Option<Event>, Option<Note>) {
    let answer = deps.vipps.capture_payment(&reference, key, amount).await;
    let answer = answer.map(|m| (m.state, m.aggregate));
    answered(PaymentCall::Capture, call, reference, answer)
}

async fn cancel(
    deps: &EffectDeps,
    call: CallId,
    reference: PaymentReference,
    key: &IdempotencyKey,
    transaction_only: bool,
) -> (Option<Event>, Option<Note>) {
    let answer = deps
        .vipps
        .cancel_payment(&reference, key, transaction_only)
        .await;
    let answer = answer.map(|m| (m.state, m.aggregate));
    answered(PaymentCall::Cancel, call, reference, answer)
}

/// The payment calls whose answer says where the payment stands.
#[derive(Clone, Copy)]
enum PaymentCall {
    Read,
    Capture,
    Cancel,
}

/// A payment call's answer as the session's event, with the payments index's note when Vipps
/// said where the payment stands.
fn answered(
    kind: PaymentCall,
    call: CallId,
    reference: PaymentReference,
    answer: Result<(models::PaymentState, models::Aggregate), VippsError>,
) -> (Option<Event>, Option<Note>) {
    let (payment_state, agg) = match answer {
        Ok(answer) => answer,
        Err(e) => {
            let error = call_error(&e);
            let event = match kind {
                PaymentCall::Read => Event::PaymentReadFailed { call, error },
                PaymentCall::Capture => Event::CaptureFailed { call, error },
                PaymentCall::Cancel => Event::CancelFailed { call, error },
            };
            return (Some(event), None);
        }
    };
    let (state, aggregate) = (payment_state, aggregate(&agg));
    let event = match kind {
        PaymentCall::Read => Event::PaymentStatus {
            call,
            state,
            aggregate,
        },
        PaymentCall::Capture => Event::PaymentCaptured {
            call,
            state,
            aggregate,
        },
        PaymentCall::Cancel => Event::PaymentCancelled {
            call,
            state,
            aggregate,
        },
    };
    (Some(event), note(payment_state, &agg, &reference))
}

async fn lookup(deps: &EffectDeps, call: CallId, msisdn: &Msisdn) -> Event {
    match deps.members.member(msisdn).await {
        Ok(found) => Event::MembershipKnown {
            call,
            is_member: found.is_some(),
        },
        Err(e) => Event::MembershipLookupFailed {
            call,
            reason: e.to_string(),
        },
    }
}

/// What the cashier learns of a Login start that failed. A refusal (400) names Vipps' reason and
/// is logged with the scopes asked for, since the usual cause is configuration: a scope such as
/// `delegatedConsents` that Vipps has not activated for the client. A start whose answer was lost
/// is not sent again (the customer may already have the request in the app).
fn login_start_error(deps: &EffectDeps, request: &LoginRequest, e: &VippsError) -> CallError {
    let scopes = request.scopes.join(" ");
    // After retries the last answer says what happened.
    let answer = match e {
        VippsError::DeadlineExceeded {
            last: Some(last), ..
        } => last.as_ref(),
        e => e,
    };
    let error = call_error(e);
    let detail = match answer.status() {
        Some(400) => {
            let problem = answer.problem();
            let reason = problem
                .and_then(|p| p.oauth_error.as_deref().or(p.oauth_error_code.as_deref()))
                .unwrap_or("bad_request");
            let description = problem.and_then(|p| p.detail.as_deref()).unwrap_or("");
            tracing::warn!(lane = %deps.lane, reason, description, scopes = %scopes,
                "Vipps refused to start the Login");
            let hint = match reason {
                "invalid_scope" => {
                    " (check vipps.login_scopes: delegatedConsents needs Vipps' activation)"
                }
                _ => "",
            };
            match description {
                "" => format!("Vipps refused the login: {reason}{hint}"),
                d => format!("Vipps refused the login: {reason}: {d}{hint}"),
            }
        }
        Some(429) => {
            "a Vipps login to this customer is still open: enroll again in a few minutes".into()
        }
        _ if matches!(error, CallError::Unknown { .. }) => {
            tracing::warn!(lane = %deps.lane, error = %e, scopes = %scopes,
                "the Login start got no answer; it is not sent again");
            "Vipps did not answer; the customer may see a request in the app: enroll again in a \
             few minutes"
                .into()
        }
        _ => return error,
    };
    let detail = crate::vipps::error::mask_digit_runs(&detail);
    match error {
        CallError::Unavailable { .. } => CallError::Unavailable { detail },
        CallError::Rejected { status, .. } => CallError::Rejected { status, detail },
        CallError::Unknown { .. } => CallError::Unknown { detail },
    }
}

/// One token poll. On success the session journals the consent (with the token) before it asks
/// for userinfo, since Vipps hands the token out only once.
async fn poll_login(deps: &EffectDeps, call: CallId, auth_req_id: String) -> Event {
    let id = AuthReqId(auth_req_id);
    match deps.vipps.login_token(&id).await {
        Ok(LoginPoll::Pending) => Event::LoginPending { call },
        Ok(LoginPoll::SlowDown) => Event::LoginSlowDown { call },
        Ok(LoginPoll::Denied) => Event::LoginDenied { call },
        Ok(LoginPoll::Expired) => Event::LoginExpired { call },
        Ok(LoginPoll::Success(token)) => Event::LoginConsented {
            call,
            auth_req_id: id.0,
            token: login_access_token(&token),
        },
        // Vipps hands the token out once: after a lost answer a later poll is refused.
        Err(e)
            if e.status() == Some(400)
                && e.problem().and_then(|p| p.oauth_error.as_deref()) == Some("invalid_grant") =>
        {
            tracing::warn!(lane = %deps.lane, error = %e, "Vipps refused the token poll: its token was handed out with an answer that was lost");
            Event::LoginFailed {
                call,
                error: CallError::Rejected {
                    status: 400,
                    detail: "the customer's consent was lost on the way from Vipps: enroll again \
                             later"
                        .to_owned(),
                },
            }
        }
        Err(e) => Event::LoginFailed {
            call,
            error: call_error(&e),
        },
    }
}

async fn fetch_userinfo(deps: &EffectDeps, call: CallId, token: &LoginAccessToken) -> Event {
    let token = LoginToken::new(token.secret().clone());
    match deps.vipps.userinfo(&token).await {
        Ok(u) => Event::UserinfoFetched {
            call,
            userinfo: userinfo(u),
        },
        Err(e) => {
            if e.status() == Some(401) {
                // The customer consented but the token expired first (a restart came too late):
                // the one enrollment loss the journal cannot prevent.
                tracing::warn!(lane = %deps.lane, error = %e, "userinfo refused the consented login's token; the enrollment is lost");
            }
            Event::UserinfoFailed {
                call,
                error: call_error(&e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requested_expiry_is_sent_only_when_the_follower_gives_up_before_vipps() {
        let mut settings = crate::config::Settings::load(None, Vec::new()).unwrap();
        let expiry = |settings: &crate::config::Settings| {
            LoginSettings::from_settings(settings).requested_expiry
        };
        // The default window (10 min) outlasts Vipps' own expiry.
        assert_eq!(expiry(&settings), None);
        settings.supervisor.late_enrollment_window = Duration::from_secs(300);
        assert_eq!(expiry(&settings), Some(Duration::from_secs(300)));
        // Vipps accepts 60 s at least.
        settings.supervisor.late_enrollment_window = Duration::from_secs(10);
        assert_eq!(expiry(&settings), Some(Duration::from_secs(60)));
        let login = LoginSettings::from_settings(&settings);
        assert_eq!(login.scopes, settings.vipps.login_scopes);
        let request = login.request("4791234567".parse().unwrap());
        assert_eq!(request.requested_expiry, Some(Duration::from_secs(60)));
    }
}
