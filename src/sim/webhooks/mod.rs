//! Webhooks API (`/webhooks/v1/webhooks`: register, list, delete), signed, ordered, retried
//! deliveries, and the control routes `/sim/v1/webhooks…`.
//!
//! Each registration owns one delivery task ([`delivery::run`]) fed by its [`queue::Queue`];
//! [`Webhooks::publish`] only enqueues (never blocks, never awaits, never drops), so it may be
//! called under other locks, and the producer waits for room afterwards ([`back_pressure`] for
//! requests, [`queue::producing`] for the ticker). The registry's own mutex is a leaf: nothing
//! else is locked while it is held, and it is never held across an `.await`.

pub mod delivery;
pub mod queue;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::time::Instant;

use self::delivery::{Attempt, Delivery, Target};
pub use self::queue::QUEUE_CAPACITY;
use self::queue::{Queue, producing};
use super::SimState;
use super::auth::{self, MsnHeader};
use super::epayment::request::{self, Invalid};
use super::epayment::{check_content_type, check_system_headers, msn_forbidden};
use super::problem::Problem;

/// The events a registration may ask for.
pub const EVENTS: [&str; 9] = crate::vipps::WEBHOOK_EVENTS;
/// At most this many registrations per event and merchant (the spec's limit).
pub const MAX_PER_EVENT: usize = 5;
/// Delivery attempts kept for the control API; the oldest go first.
pub const MAX_RECORDED_ATTEMPTS: usize = 10_000;

/// Registrations, their delivery queues and the record of delivery attempts.
#[derive(Debug, Default)]
pub struct Webhooks {
    inner: Mutex<Inner>,
    client: OnceLock<Result<reqwest::Client, String>>,
    /// The clock offset at the last tick, to wake waiting retries only when the clock moved.
    seen_offset_ms: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    registrations: Vec<Registration>,
    attempts: VecDeque<Attempt>,
    next_delivery: u64,
}

#[derive(Debug)]
struct Registration {
    id: String,
    msn: String,
    url: String,
    events: Vec<String>,
    queue: Arc<Queue>,
    wake: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Webhooks {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every change is made synchronously under the lock, so the data survives a panic.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `payload` as event `event` for every registration of merchant `msn` that asked
    /// for it, after everything published before. A queue left over its capacity makes the
    /// producer wait for room once it is done (see [`queue`]).
    pub fn publish(&self, msn: &str, event: &str, payload: Value) {
        let mut inner = self.lock();
        let mut next = inner.next_delivery;
        for reg in inner
            .registrations
            .iter()
            .filter(|r| r.msn == msn && r.events.iter().any(|e| e == event))
        {
            next += 1;
            reg.queue.push(Delivery {
                id: next,
                event: event.to_owned(),
                payload: payload.clone(),
            });
        }
        inner.next_delivery = next;
    }

    /// Records a delivery attempt.
    pub fn record(&self, attempt: Attempt) {
        push_attempt(&mut self.lock(), attempt);
    }

    /// Every recorded attempt, oldest first.
    pub fn attempts(&self) -> Vec<Attempt> {
        self.lock().attempts.iter().cloned().collect()
    }

    /// The shared HTTP client for deliveries, built on first use.
    pub fn client(&self) -> Result<reqwest::Client, String> {
        self.client
            .get_or_init(|| {
                crate::install_crypto_provider();
                reqwest::Client::builder()
                    .timeout(delivery::DELIVERY_TIMEOUT)
                    .connect_timeout(delivery::DELIVERY_TIMEOUT)
                    // Vipps does not follow redirects: a 3xx is a failed delivery.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client: {e}"))
            })
            .clone()
    }
}

fn push_attempt(inner: &mut Inner, attempt: Attempt) {
    if inner.attempts.len() >= MAX_RECORDED_ATTEMPTS {
        inner.attempts.pop_front();
    }
    inner.attempts.push_back(attempt);
}

pub(super) fn api_routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/webhooks/v1/webhooks")
            .service(
                web::resource("")
                    .route(web::post().to(register))
                    .route(web::get().to(list))
                    .default_service(web::to(method_not_allowed)),
            )
            .service(
                web::resource("/{id}")
                    .route(web::delete().to(delete))
                    .default_service(web::to(method_not_allowed)),
            ),
    );
}

/// The Webhooks API's `ProblemDetails`: the ePayment shape with this API's `instance`.
fn problem(p: Problem, req: &HttpRequest) -> Problem {
    let mut p = p;
    p.body["instance"] = json!(req.path());
    p.body["type"] = json!(format!(
        "https://developer.vippsmobilepay.com/docs/APIs/webhooks-api/#{}",
        p.status.as_u16()
    ));
    p
}

/// A mismatched `Merchant-Serial-Number` in this API's shape; other refusals stay the gateway's.
fn forbidden(p: Problem, req: &HttpRequest) -> Problem {
    if p.status == StatusCode::FORBIDDEN {
        problem(msn_forbidden(p), req)
    } else {
        p
    }
}

fn invalid(req: &HttpRequest, field: &str, reason: &str) -> Problem {
    problem(Invalid::new(field, reason).into(), req)
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let p = Problem::epayment(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &format!("{} is not allowed on {}.", req.method(), req.path()),
        &[],
        None,
    );
    problem(p, &req).error_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    url: Option<String>,
    events: Option<Vec<String>>,
}

/// Vipps delivers only to https; the simulator also delivers to plain http on loopback.
fn check_url(raw: &str) -> Result<reqwest::Url, String> {
    let url =
        reqwest::Url::parse(raw).map_err(|e| format!("The url must be an absolute URL: {e}."))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("The url must name a host.".into());
    }
    if crate::config::https_or_loopback_http(&url) {
        Ok(url)
    } else {
        Err(
            "The url must use HTTPS (the simulator also accepts http:// on 127.0.0.1, localhost and [::1])."
                .into(),
        )
    }
}

fn new_secret() -> String {
    let mut bytes = [0u8; 64];
    rand::fill(&mut bytes);
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `POST /webhooks/v1/webhooks`.
async fn register(
    state: web::Data<SimState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let merchant =
        auth::authorize(&state, &req, MsnHeader::Optional).map_err(|p| forbidden(p, &req))?;
    check_system_headers(&req).map_err(|p| problem(p, &req))?;
    let bytes = request::read_body(payload)
        .await
        .map_err(|p| problem(p, &req))?;
    check_content_type(&req, &bytes).map_err(|p| problem(p, &req))?;
    let body = request::parse_json(&bytes)
        .map_err(|i| problem(i.into(), &req))?
        .ok_or_else(|| invalid(&req, "body", "A RegisterRequest body is required."))?;
    let raw: RegisterRequest = request::typed(body, "").map_err(|i| problem(i.into(), &req))?;
    let raw_url = raw
        .url
        .ok_or_else(|| invalid(&req, "url", "The url field is required."))?;
    let url = check_url(&raw_url).map_err(|reason| invalid(&req, "url", &reason))?;
    let mut events = raw
        .events
        .ok_or_else(|| invalid(&req, "events", "The events field is required."))?;
    if events.is_empty() {
        return Err(invalid(&req, "events", "At least one event is required."));
    }
    if let Some((i, e)) = events
        .iter()
        .enumerate()
        .find(|(_, e)| !EVENTS.contains(&e.as_str()))
    {
        return Err(invalid(
            &req,
            &format!("events[{i}]"),
            &format!("Unknown event `{e}`. Known events: {}.", EVENTS.join(", ")),
        ));
    }
    events.sort();
    events.dedup();

    let msn = merchant.merchant_serial_number;
    let state = state.into_inner();
    let mut inner = state.webhooks.lock();
    for e in &events {
        let n = inner
            .registrations
            .iter()
            .filter(|r| r.msn == msn && r.events.contains(e))
            .count();
        if n >= MAX_PER_EVENT {
            return Err(invalid(
                &req,
                "events",
                &format!(
                    "At most {MAX_PER_EVENT} webhooks can be registered per event; {e} has {n}."
                ),
            ));
        }
    }
    let id = uuid::Uuid::new_v4().to_string();
    let secret = new_secret();
    let queue = Arc::new(Queue::default());
    let wake = Arc::new(Notify::new());
    let target = Target::new(id.clone(), url, secret.clone());
    let task = actix_web::rt::spawn(delivery::run(
        state.clone(),
        target,
        queue.clone(),
        wake.clone(),
    ));
    inner.registrations.push(Registration {
        id: id.clone(),
        msn,
        url: raw_url,
        events,
        queue,
        wake,
        task,
    });
    Ok(HttpResponse::Created().json(json!({"id": id, "secret": secret})))
}

/// `GET /webhooks/v1/webhooks`: the merchant's registrations.
async fn list(state: web::Data<SimState>, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let merchant =
        auth::authorize(&state, &req, MsnHeader::Optional).map_err(|p| forbidden(p, &req))?;
    check_system_headers(&req).map_err(|p| problem(p, &req))?;
    let inner = state.webhooks.lock();
    let webhooks: Vec<Value> = inner
        .registrations
        .iter()
        .filter(|r| r.msn == merchant.merchant_serial_number)
        .map(|r| json!({"id": r.id, "url": r.url, "events": r.events}))
        .collect();
    Ok(HttpResponse::Ok().json(json!({"webhooks": webhooks})))
}

/// `DELETE /webhooks/v1/webhooks/{id}`: stops deliveries at once, queued ones included.
async fn delete(
    state: web::Data<SimState>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let merchant =
        auth::authorize(&state, &req, MsnHeader::Optional).map_err(|p| forbidden(p, &req))?;
    check_system_headers(&req).map_err(|p| problem(p, &req))?;
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|e| invalid(&req, "id", &format!("The id must be a UUID: {e}.")))?
        .to_string();
    let mut inner = state.webhooks.lock();
    let at = inner
        .registrations
        .iter()
        .position(|r| r.id == id && r.msn == merchant.merchant_serial_number)
        .ok_or_else(|| {
            let p = Problem::epayment(
                StatusCode::NOT_FOUND,
                "Not Found",
                &format!("No webhook {id} is registered for this merchant."),
                &[("id", "No such webhook.")],
                None,
            );
            problem(p, &req)
        })?;
    let reg = inner.registrations.remove(at);
    reg.queue.close();
    reg.task.abort();
    Ok(HttpResponse::NoContent().finish())
}

/// Middleware: a request that published events into a queue left over capacity is answered
/// once that queue has room again.
pub(super) async fn back_pressure(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    Ok(producing(next.call(req)).await?.map_into_boxed_body())
}

/// Runs one tick of the simulator as a producer: it waits for room in the queues it filled.
pub async fn tick_producing(state: &Arc<SimState>, now: Instant) {
    producing(async { state.tick(now) }).await;
}

/// Wakes retries waiting on the simulator's clock when the control API moved it.
pub(super) fn tick(state: &Arc<SimState>, _now: Instant) {
    let offset = u64::try_from(state.clock.offset().as_millis()).unwrap_or(u64::MAX);
    if state.webhooks.seen_offset_ms.swap(offset, Ordering::SeqCst) != offset {
        for r in &state.webhooks.lock().registrations {
            r.wake.notify_waiters();
        }
    }
}

// The control API: `/sim/v1/webhooks…`.

pub(super) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/webhooks", web::get().to(control_list))
        .route("/webhooks/deliveries", web::get().to(control_deliveries));
}

/// `GET /sim/v1/webhooks`: every registration of every merchant (never the secrets).
async fn control_list(state: web::Data<SimState>) -> HttpResponse {
    let inner = state.webhooks.lock();
    let all: Vec<Value> = inner
        .registrations
        .iter()
        .map(|r| {
            let q = r.queue.view();
            json!({
                "id": r.id,
                "msn": r.msn,
                "url": r.url,
                "events": r.events,
                "queued": q.queued,
                "queueCapacity": QUEUE_CAPACITY,
                "peakQueued": q.peak,
                "producerWaits": q.waits,
            })
        })
        .collect();
    HttpResponse::Ok().json(all)
}

/// `GET /sim/v1/webhooks/deliveries[?event=…&webhookId=…&reference=…&outcome=…]`: every
/// delivery attempt, oldest first.
async fn control_deliveries(
    state: web::Data<SimState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    let q = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map_err(|e| Problem::params(StatusCode::BAD_REQUEST, "Bad Request", &e.to_string(), &[]))?
        .into_inner();
    let matches = |a: &Attempt| {
        let outcome = serde_json::to_value(a.outcome).unwrap_or_default();
        q.get("event").is_none_or(|e| &a.event == e)
            && q.get("webhookId").is_none_or(|w| &a.webhook_id == w)
            && q.get("reference")
                .is_none_or(|r| a.payload.get("reference").and_then(Value::as_str) == Some(r))
            && q.get("outcome")
                .is_none_or(|o| outcome.as_str() == Some(o.as_str()))
    };
    let attempts: Vec<Attempt> = state
        .webhooks
        .attempts()
        .into_iter()
        .filter(matches)
        .collect();
    Ok(HttpResponse::Ok().json(attempts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_except_on_loopback() {
        for ok in [
            "https://example.com/hook",
            "http://127.0.0.1:8080/hook",
            "http://localhost:1/x",
            "http://[::1]:9000/x",
            "https://example.com:8443/a?b=c",
        ] {
            assert!(check_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://example.com/hook",
            "ftp://127.0.0.1/x",
            "/relative",
            "not a url",
            "http://10.0.0.1/x",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_long_and_fresh() {
        let a = new_secret();
        assert_eq!(a.len(), 88);
        assert_ne!(a, new_secret());
    }
}
