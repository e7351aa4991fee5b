//! Control API for Login (under `/sim/v1`): list requests, answer one as the customer, and set
//! which marketing consents a customer accepts.
//!
//! - `GET  /logins[?phoneNumber=…&state=…]`, `GET /logins/{auth_req_id}`
//! - `POST /logins/{auth_req_id}/consent`, `POST /logins/{auth_req_id}/deny` (pending only: 409
//!   otherwise); a consent publishes the ping webhook like a customer's own consent.
//! - `GET|PUT /customers/{phone}/consents` `{"emailMarketing": bool, "smsMarketing": bool}`

use actix_web::error::QueryPayloadError;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;

use super::{ConsentChoices, Decision, LoginState, LoginView};
use crate::domain::Msisdn;
use crate::sim::SimState;
use crate::sim::problem::Problem;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/logins")
            .app_data(
                web::QueryConfig::default().error_handler(|err, _| query_problem(&err).into()),
            )
            .route(web::get().to(list)),
    )
    .route("/logins/{auth_req_id}", web::get().to(get))
    .route("/logins/{auth_req_id}/consent", web::post().to(consent))
    .route("/logins/{auth_req_id}/deny", web::post().to(deny))
    .route("/customers/{phone}/consents", web::get().to(get_consents))
    .route("/customers/{phone}/consents", web::put().to(set_consents));
}

fn problem(status: StatusCode, detail: &str, invalid: &[(&str, &str)]) -> Problem {
    let title = status.canonical_reason().unwrap_or("Error");
    Problem::params(status, title, detail, invalid)
}

fn query_problem(err: &QueryPayloadError) -> Problem {
    problem(
        StatusCode::BAD_REQUEST,
        &format!("invalid query: {err}; filters are phoneNumber and state"),
        &[("query", &err.to_string())],
    )
}

fn no_login() -> Problem {
    problem(StatusCode::NOT_FOUND, "no such login request", &[])
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Filter {
    phone_number: Option<String>,
    state: Option<LoginState>,
}

/// `GET /sim/v1/logins`: every request the simulator holds, oldest first.
async fn list(state: web::Data<SimState>, filter: web::Query<Filter>) -> HttpResponse {
    let now = state.clock.now();
    let mut logins = super::lock(&state);
    // Show expiry even between ticks.
    logins.prune(now);
    let views: Vec<LoginView> = logins
        .all()
        .into_iter()
        .filter(|l| {
            filter
                .phone_number
                .as_deref()
                .is_none_or(|p| l.asked.phone.as_str() == p)
        })
        .filter(|l| filter.state.is_none_or(|s| l.state == s))
        .map(LoginView::from)
        .collect();
    HttpResponse::Ok().json(views)
}

async fn get(state: web::Data<SimState>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    let now = state.clock.now();
    let mut logins = super::lock(&state);
    let login = logins.get_mut(&id).ok_or_else(no_login)?;
    login.expire_if_due(now);
    Ok(HttpResponse::Ok().json(LoginView::from(&*login)))
}

async fn decide(state: &SimState, id: &str, decision: Decision) -> Result<HttpResponse, Problem> {
    let now = state.clock.now();
    let (view, ping) = {
        let mut logins = super::lock(state);
        let login = logins.get_mut(id).ok_or_else(no_login)?;
        login.decide(decision, now).map_err(|current| {
            let detail = format!(
                "the login is {}; only a pending login can be answered",
                serde_json::to_value(current)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            );
            problem(StatusCode::CONFLICT, &detail, &[])
        })?;
        let ping =
            (decision == Decision::Consent).then(|| login.asked.merchant_serial_number.clone());
        (LoginView::from(&*login), ping)
    };
    if let Some(msn) = ping {
        super::publish_ping(state, &msn, id);
    }
    Ok(HttpResponse::Ok().json(view))
}

/// `POST /sim/v1/logins/{id}/consent`: the customer consents now.
async fn consent(
    state: web::Data<SimState>,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    decide(&state, &id, Decision::Consent).await
}

/// `POST /sim/v1/logins/{id}/deny`: the customer declines now.
async fn deny(state: web::Data<SimState>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    decide(&state, &id, Decision::Deny).await
}

/// The phone number of an existing virtual customer.
fn customer_phone(state: &SimState, raw: &str) -> Result<Msisdn, Problem> {
    let phone: Msisdn = raw.parse().map_err(|e: crate::domain::InvalidValue| {
        problem(
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            &[("phone", &e.reason)],
        )
    })?;
    let known = state.customers().get(&phone).is_some();
    if !known {
        return Err(problem(StatusCode::NOT_FOUND, "no such customer", &[]));
    }
    Ok(phone)
}

async fn get_consents(
    state: web::Data<SimState>,
    phone: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let phone = customer_phone(&state, &phone)?;
    let choices = super::lock(&state).consent_choices(&phone);
    Ok(HttpResponse::Ok().json(choices))
}

async fn set_consents(
    state: web::Data<SimState>,
    phone: web::Path<String>,
    body: web::Json<ConsentChoices>,
) -> Result<HttpResponse, Problem> {
    let phone = customer_phone(&state, &phone)?;
    let choices = body.into_inner();
    super::lock(&state).set_consent_choices(phone, choices);
    Ok(HttpResponse::Ok().json(choices))
}
