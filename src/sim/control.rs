//! The simulator's control API under `/sim/v1/`: act as a customer, change behaviour and faults,
//! move the clock, and list what happened. Each Vipps area adds its own routes here.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::customers::{Behaviour, Customer};
use super::problem::Problem;
use super::{SimState, checkin, epayment, faults, login, webhooks};
use crate::domain::Msisdn;

pub(super) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("", web::get().to(index))
        .route("/", web::get().to(index))
        .route("/clock", web::get().to(clock))
        .route("/clock/advance", web::post().to(advance))
        .route("/customers", web::get().to(list_customers))
        .route("/customers", web::post().to(add_customer))
        .route("/customers/{phone}", web::get().to(get_customer))
        .route("/customers/{phone}/behaviour", web::put().to(set_behaviour))
        .configure(checkin::control_routes)
        .configure(login::control_routes)
        .configure(epayment::control_routes)
        .configure(webhooks::control_routes)
        .configure(faults::control_routes);
    cfg.app_data(web::JsonConfig::default().error_handler(|err, _| {
        Problem::params(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &err.to_string(),
            &[],
        )
        .into()
    }));
}

async fn index() -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "simulator": "lanehub Vipps simulator",
        "docs": "docs/simulator.md",
    }))
}

async fn clock(state: web::Data<SimState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "now": state.clock.wall().to_rfc3339(),
        "offsetMs": u64::try_from(state.clock.offset().as_millis()).unwrap_or(u64::MAX),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Advance {
    /// Milliseconds to move the clock forward.
    ms: u64,
}

/// Moves the simulator's clock forward and applies at once whatever became due.
async fn advance(state: web::Data<SimState>, body: web::Json<Advance>) -> HttpResponse {
    state.clock.advance(Duration::from_millis(body.ms));
    let state = state.into_inner();
    state.tick(state.clock.now());
    clock(web::Data::from(state)).await
}

async fn list_customers(state: web::Data<SimState>) -> HttpResponse {
    let customers = state.customers.lock().expect("customers lock");
    let all: Vec<&Customer> = customers.all().collect();
    HttpResponse::Ok().json(all)
}

fn parse_phone(raw: &str) -> Result<Msisdn, Problem> {
    raw.parse().map_err(|e: crate::domain::InvalidValue| {
        Problem::params(
            StatusCode::BAD_REQUEST,
            "Bad Request",
            &e.to_string(),
            &[("phone", &e.reason)],
        )
    })
}

fn not_found(what: &str) -> Problem {
    Problem::params(
        StatusCode::NOT_FOUND,
        "Not Found",
        &format!("no such {what}"),
        &[],
    )
}

async fn get_customer(
    state: web::Data<SimState>,
    phone: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let phone = parse_phone(&phone)?;
    let customers = state.customers.lock().expect("customers lock");
    let c = customers.get(&phone).ok_or_else(|| not_found("customer"))?;
    Ok(HttpResponse::Ok().json(c))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NewCustomer {
    phone_number: Msisdn,
    name: String,
    email: String,
    #[serde(default)]
    member: bool,
    behaviour: Behaviour,
}

async fn add_customer(state: web::Data<SimState>, body: web::Json<NewCustomer>) -> HttpResponse {
    let body = body.into_inner();
    let mut customers = state.customers.lock().expect("customers lock");
    customers.insert(Customer {
        phone_number: body.phone_number.clone(),
        name: body.name,
        email: body.email,
        member: body.member,
        behaviour: body.behaviour,
        qr_token_url: String::new(),
        qr_clear_text_url: None,
        qr_future_url: String::new(),
    });
    let c = customers.get(&body.phone_number).expect("just inserted");
    HttpResponse::Created().json(c)
}

async fn set_behaviour(
    state: web::Data<SimState>,
    phone: web::Path<String>,
    body: web::Json<Behaviour>,
) -> Result<HttpResponse, Problem> {
    let phone = parse_phone(&phone)?;
    let mut customers = state.customers.lock().expect("customers lock");
    let c = customers
        .get_mut(&phone)
        .ok_or_else(|| not_found("customer"))?;
    c.behaviour = body.into_inner();
    Ok(HttpResponse::Ok().json(&*c))
}
