//! Access tokens: `POST /accesstoken/get` issues them to configured merchants, and [`authorize`]
//! checks the bearer token, subscription key and merchant serial number of every other call.
//! In the `test-environment` profile a token request without `Content-Length` gets 411, as the
//! gateway in front of the real test environment answers.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::CONTENT_LENGTH;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::time::Instant;

use super::SimState;
use super::problem::Problem;
use crate::config::{SimMerchant, SimProfile};

/// A token the simulator issued.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub merchant_serial_number: String,
    pub expires_at: Instant,
}

/// The merchant a request was authorised as.
#[derive(Debug, Clone)]
pub struct Merchant {
    pub name: String,
    pub merchant_serial_number: String,
}

/// Whether a call must carry `Merchant-Serial-Number` (ePayment requires it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsnHeader {
    Required,
    Optional,
}

pub(super) fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/accesstoken/get")
            .route(web::post().to(access_token))
            .default_service(web::to(|req: HttpRequest| async move {
                Problem::method_not_allowed_oauth(&req, "POST").error_response()
            })),
    );
}

/// The `Vipps-System-*` headers every API declares (optional, at most 30 characters each).
pub const SYSTEM_HEADERS: [&str; 4] = [
    "Vipps-System-Name",
    "Vipps-System-Version",
    "Vipps-System-Plugin-Name",
    "Vipps-System-Plugin-Version",
];

/// The first `Vipps-System-*` header longer than the 30 characters the specs allow, if any.
pub fn long_system_header(req: &HttpRequest) -> Option<&'static str> {
    SYSTEM_HEADERS
        .into_iter()
        .find(|name| req.headers().get(*name).is_some_and(|v| v.len() > 30))
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

async fn access_token(
    state: web::Data<SimState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    // A gateway in front of the test environment wants a length on every POST, even an empty one.
    if state.settings.profile == SimProfile::TestEnvironment
        && req.headers().get(CONTENT_LENGTH).is_none()
    {
        return Err(Problem::params(
            StatusCode::LENGTH_REQUIRED,
            "Length Required",
            "POST /accesstoken/get needs a Content-Length header (send Content-Length: 0)",
            &[("Content-Length", "missing")],
        ));
    }
    for name in ["client_id", "client_secret", "ocp-apim-subscription-key"] {
        if header(&req, name).is_none() {
            return Err(Problem::oauth(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("missing header {name}"),
            ));
        }
    }
    if let Some(name) = long_system_header(&req) {
        return Err(Problem::oauth(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("header {name} is longer than 30 characters"),
        ));
    }
    let merchant = token_client(
        &state.settings.merchants,
        header(&req, "client_id"),
        header(&req, "client_secret"),
        header(&req, "ocp-apim-subscription-key"),
    )?;

    let lifetime = state.settings.token_lifetime;
    let token = format!("sim.{}", uuid::Uuid::new_v4().simple());
    let now = state.clock.now();
    state.tokens.lock().expect("token lock").insert(
        token.clone(),
        IssuedToken {
            merchant_serial_number: merchant.merchant_serial_number.clone(),
            expires_at: now + lifetime,
        },
    );
    let not_before = state.clock.wall().timestamp();
    let secs = lifetime.as_secs();
    Ok(HttpResponse::Ok()
        .content_type("application/json;charset=UTF-8")
        .json(json!({
            "token_type": "Bearer",
            "expires_in": secs.to_string(),
            "ext_expires_in": "0",
            "expires_on": (not_before + secs as i64).to_string(),
            "not_before": not_before.to_string(),
            "resource": "00000002-0000-0000-c000-000000000000",
            "access_token": token,
        })))
}

/// The merchant whose client credentials these are, or the refusal for the first wrong one, in
/// the order Vipps checks them: the API gateway the subscription key (401 in its own
/// `{statusCode, message}` shape), then the token service the client id (`unauthorized_client`)
/// and its secret (`invalid_client`), so an operator can tell which one is wrong. The
/// `Merchant-Serial-Number` is not checked here: a call that sends another merchant's MSN with
/// the token is refused by the API it calls (403).
fn token_client<'a>(
    merchants: &'a [SimMerchant],
    client_id: Option<&str>,
    client_secret: Option<&str>,
    subscription_key: Option<&str>,
) -> Result<&'a SimMerchant, Problem> {
    if !merchants
        .iter()
        .any(|m| Some(m.subscription_key.expose_secret()) == subscription_key)
    {
        return Err(Problem::gateway(
            StatusCode::UNAUTHORIZED,
            "Access denied due to invalid subscription key. Make sure to provide a valid key for \
             an active subscription.",
        ));
    }
    let client = merchants
        .iter()
        .find(|m| Some(m.client_id.as_str()) == client_id)
        .ok_or_else(|| {
            Problem::oauth(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "AADSTS700016: Application with the given client_id was not found in the \
                 directory.",
            )
        })?;
    if Some(client.client_secret.expose_secret()) != client_secret {
        return Err(Problem::oauth(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided.",
        ));
    }
    Ok(client)
}

/// Checks a merchant call: a valid, unexpired bearer token; the subscription key of the token's
/// merchant; and the merchant serial number when sent (or when `msn` requires it).
/// Failures answer as the API gateway does: 401 with `{statusCode, message}`.
pub fn authorize(state: &SimState, req: &HttpRequest, msn: MsnHeader) -> Result<Merchant, Problem> {
    let unauthorized = |m: &str| Problem::gateway(StatusCode::UNAUTHORIZED, m);
    let token = header(req, "authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| unauthorized("Access denied due to missing bearer token."))?;
    let issued = state
        .tokens
        .lock()
        .expect("token lock")
        .get(token)
        .cloned()
        .ok_or_else(|| unauthorized("Access denied due to invalid token."))?;
    if state.clock.now() >= issued.expires_at {
        return Err(unauthorized("Access denied due to expired token."));
    }
    let merchant = state
        .settings
        .merchants
        .iter()
        .find(|m| m.merchant_serial_number == issued.merchant_serial_number)
        .ok_or_else(|| unauthorized("Access denied due to invalid token."))?;
    if header(req, "ocp-apim-subscription-key") != Some(merchant.subscription_key.expose_secret()) {
        return Err(unauthorized(
            "Access denied due to missing or invalid subscription key.",
        ));
    }
    match (header(req, "merchant-serial-number"), msn) {
        (Some(sent), _) if sent != merchant.merchant_serial_number => Err(Problem::gateway(
            StatusCode::FORBIDDEN,
            "Merchant-Serial-Number does not match the access token.",
        )),
        (None, MsnHeader::Required) => Err(Problem::epayment_invalid(
            "Merchant-Serial-Number",
            "The Merchant-Serial-Number header is required.",
        )),
        _ => Ok(Merchant {
            name: merchant.name.clone(),
            merchant_serial_number: merchant.merchant_serial_number.clone(),
        }),
    }
}

/// Drops expired tokens so a long run does not grow without bound.
pub(super) fn tick(state: &SimState, now: Instant) {
    state
        .tokens
        .lock()
        .expect("token lock")
        .retain(|_, t| t.expires_at + Duration::from_secs(60) > now);
}
