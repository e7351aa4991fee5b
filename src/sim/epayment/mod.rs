//! ePayment: create, get, events, cancel, capture, refund and force approve under
//! `/epayment/v1`, rate-limited per reference; virtual customers acting in [`tick`]; and the
//! control routes `/sim/v1/payments…`.
//!
//! Each request takes the payments lock once, does all its work synchronously (rate limit,
//! idempotency, the [`payment`] state machine) and publishes the events it caused to the webhook
//! queues before releasing it, so webhooks leave in the order things happened. Lock order:
//! customers, then payments, then the webhooks' own (a leaf); none is held across an `.await`.

pub mod idempotency;
pub mod payment;
pub mod request;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use serde_json::{Value, json};
use tokio::time::Instant;

use self::idempotency::{Answer, Fingerprint, IdempotencyStore, Lookup, Scope};
use self::payment::{
    Creation, CustomerId, CustomerPlan, NewPayment, Now, Payment, PaymentError, State,
};
use self::request::Invalid;
use super::SimState;
use super::auth::{self, MsnHeader};
use super::customers::{Behaviour, Customers};
use super::problem::Problem;
use super::ratelimit::{self, Limit, RateLimiter};
use super::webhooks::Webhooks;
use crate::ErrorKind;
use crate::domain::{IdempotencyKey, Msisdn, PaymentReference};
use crate::vipps::Operation;

/// Create, capture, cancel and refund calls per reference and minute.
pub const MUTATION_LIMIT: Limit = Limit::per_minute(5);
/// Get-payment and get-events calls per reference and minute.
pub const READ_LIMIT: Limit = Limit::per_minute(120);

/// A payment's identity: reference is unique per merchant serial number.
type Key = (String, PaymentReference);

/// Every payment the simulator holds, with idempotency answers and rate-limit windows.
#[derive(Debug, Default)]
pub struct Payments {
    by_key: HashMap<Key, Payment>,
    /// Payments still in CREATED, the only ones time can change.
    pending: BTreeSet<Key>,
    idempotency: IdempotencyStore,
    limits: RateLimiter<(String, Operation, String)>,
    /// When the idempotency answers and rate-limit windows were last pruned.
    pruned_at: Option<Instant>,
}

/// Pruning walks every payment's bookkeeping: once a second is plenty, whatever the tick.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

impl Payments {
    /// The payment of merchant `msn` with `reference`.
    pub fn get(&self, msn: &str, reference: &PaymentReference) -> Option<&Payment> {
        self.by_key.get(&(msn.to_owned(), reference.clone()))
    }

    /// Every payment, oldest first.
    pub fn all(&self) -> Vec<&Payment> {
        let mut all: Vec<&Payment> = self.by_key.values().collect();
        all.sort_by_key(|p| p.created.instant);
        all
    }

    fn limit(
        &mut self,
        enabled: bool,
        msn: &str,
        op: Operation,
        reference: &str,
        now: Instant,
    ) -> Result<(), Problem> {
        if !enabled {
            return Ok(());
        }
        let limit = match op {
            Operation::PaymentGet | Operation::PaymentEvents => READ_LIMIT,
            _ => MUTATION_LIMIT,
        };
        self.limits
            .check((msn.to_owned(), op, reference.to_owned()), limit, now)
            .map_err(|wait| Problem::too_many_requests(ratelimit::retry_after_secs(wait)))
    }

    /// Applies what is due to one payment and publishes what that caused.
    fn settle(&mut self, key: &Key, now: &Now, webhooks: &Webhooks) {
        if let Some(p) = self.by_key.get_mut(key) {
            let before = p.events.len();
            if p.advance(now) {
                publish(webhooks, p, before);
            }
        }
        self.untrack_if_final(key);
    }

    fn untrack_if_final(&mut self, key: &Key) {
        if self
            .by_key
            .get(key)
            .is_none_or(|p| p.state != State::Created)
        {
            self.pending.remove(key);
        }
    }

    /// Runs a write under its idempotency key: replays the stored answer to an earlier request
    /// with the same key and body, refuses the key with another body, and otherwise answers
    /// with `write`, storing that answer for the retries to come.
    fn idempotent(
        &mut self,
        scope: Scope,
        fingerprint: Fingerprint,
        now: Instant,
        write: impl FnOnce(&mut Payments) -> Result<Answer, Problem>,
    ) -> Result<HttpResponse, Problem> {
        match self.idempotency.lookup(&scope, &fingerprint) {
            Lookup::Replay(answer) => return Ok(answer.response()),
            Lookup::Conflict => return Err(idempotency_conflict(scope.operation, &scope.key)),
            Lookup::New => {}
        }
        let answer = write(self).unwrap_or_else(Answer::from);
        self.idempotency.store(scope, fingerprint, &answer, now);
        Ok(answer.response())
    }

    fn insert(&mut self, p: Payment) {
        let key = (p.msn.clone(), p.reference().clone());
        self.pending.insert(key.clone());
        self.by_key.insert(key, p);
    }
}

/// Queues the events `p` appended since `from` for webhook delivery.
fn publish(webhooks: &Webhooks, p: &Payment, from: usize) {
    for e in p.events.iter().skip(from) {
        webhooks.publish(&p.msn, e.name.webhook_event(), p.webhook_payload(e));
    }
}

fn lock(state: &SimState) -> MutexGuard<'_, Payments> {
    // A panic elsewhere must not take the simulator down: the data is still consistent because
    // every change is made synchronously under the lock.
    state
        .payments
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

fn now(state: &SimState) -> Now {
    state.clock.moment()
}

pub(super) fn api_routes(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(
        web::scope("/epayment/v1")
            .service(resource("/payments").route(web::post().to(create_payment)))
            .service(resource("/payments/{reference}").route(web::get().to(get_payment)))
            .service(resource("/payments/{reference}/events").route(web::get().to(get_events)))
            .service(
                resource("/payments/{reference}/cancel")
                    .route(modify_route(Operation::PaymentCancel)),
            )
            .service(
                resource("/payments/{reference}/capture")
                    .route(modify_route(Operation::PaymentCapture)),
            )
            .service(
                resource("/payments/{reference}/refund")
                    .route(modify_route(Operation::PaymentRefund)),
            )
            .service(
                resource("/test/payments/{reference}/approve").route(web::post().to(force_approve)),
            )
            .default_service(web::to(not_found_route)),
    );
}

async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    Problem::epayment(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        &format!("{} is not allowed on {}.", req.method(), req.path()),
        &[],
        None,
    )
    .error_response()
}

async fn not_found_route(req: HttpRequest) -> HttpResponse {
    Problem::epayment(
        StatusCode::NOT_FOUND,
        "Not Found",
        &format!("There is no ePayment endpoint at {}.", req.path()),
        &[],
        None,
    )
    .error_response()
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A `Merchant-Serial-Number` that is not the token's merchant is refused by the API itself (the
/// gateway let the token through), so in ePayment's problem shape rather than the gateway's.
pub(in crate::sim) fn msn_forbidden(p: Problem) -> Problem {
    if p.status != StatusCode::FORBIDDEN {
        return p;
    }
    let detail = p.body["message"].as_str().unwrap_or("Forbidden.");
    Problem::epayment(
        StatusCode::FORBIDDEN,
        "Forbidden",
        detail,
        &[(
            "Merchant-Serial-Number",
            "Not the merchant serial number of the access token.",
        )],
        None,
    )
}

/// The `Vipps-System-*` headers are optional but at most 30 characters each.
pub(in crate::sim) fn check_system_headers(req: &HttpRequest) -> Result<(), Problem> {
    match auth::long_system_header(req) {
        Some(name) => Err(Problem::epayment_invalid(
            name,
            &format!("The {name} header is at most 30 characters."),
        )),
        None => Ok(()),
    }
}

/// A body, when there is one, must be declared as JSON.
pub(in crate::sim) fn check_content_type(req: &HttpRequest, body: &[u8]) -> Result<(), Problem> {
    if body.is_empty() {
        return Ok(());
    }
    let essence = header(req, "content-type")
        .unwrap_or("(none)")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(Problem::epayment(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "Unsupported Media Type",
        &format!("The body must be application/json, not {essence}."),
        &[("Content-Type", "Send Content-Type: application/json.")],
        None,
    ))
}

fn idempotency_key(req: &HttpRequest) -> Result<String, Problem> {
    let raw = header(req, "idempotency-key").ok_or_else(|| {
        Problem::epayment_invalid("Idempotency-Key", "The Idempotency-Key header is required.")
    })?;
    raw.parse::<IdempotencyKey>()
        .map(|k| k.as_str().to_owned())
        .map_err(|e| Problem::epayment_invalid("Idempotency-Key", &e.reason))
}

fn path_reference(raw: &str) -> Result<PaymentReference, Problem> {
    raw.parse()
        .map_err(|e: crate::domain::InvalidValue| Problem::epayment_invalid("reference", &e.reason))
}

fn unknown_reference(reference: &str) -> Problem {
    Problem::epayment(
        StatusCode::NOT_FOUND,
        "Reference not found",
        &format!("No payment with reference {reference} exists for this merchant serial number."),
        &[("reference", "No such payment.")],
        Some(5090),
    )
}

fn payment_problem(e: &PaymentError) -> Problem {
    Problem::epayment(
        StatusCode::BAD_REQUEST,
        e.title(),
        &e.to_string(),
        &[],
        Some(e.code()),
    )
}

fn idempotency_conflict(op: Operation, key: &str) -> Problem {
    let (title, code) = match op {
        Operation::PaymentCapture => ("Capture idempotency conflict", 4010),
        Operation::PaymentRefund => ("Refund idempotency conflict", 4150),
        _ => ("Idempotency error", 4020),
    };
    Problem::epayment(
        StatusCode::CONFLICT,
        title,
        &format!(
            "Idempotency-Key {key} was already used for another request. A retry must repeat the request exactly; a new request needs a new key."
        ),
        &[("Idempotency-Key", "Already used with another request body.")],
        Some(code),
    )
}

/// Who a `customer` object names, with what they will do; 7010 when nobody.
fn resolve_customer(
    customers: &Customers,
    id: &CustomerId,
) -> Result<(Msisdn, Behaviour), Invalid> {
    let not_found = || {
        Invalid::coded(
            "customer",
            "No user who can pay this merchant was found for the given customer.",
            "Customer not found",
            7010,
        )
    };
    let found = |phone: &Msisdn| {
        customers
            .get(phone)
            .map(|c| (c.phone_number.clone(), c.behaviour))
            .ok_or_else(not_found)
    };
    match id {
        CustomerId::PhoneNumber(phone) => found(phone),
        CustomerId::PersonalQr(qr) => {
            const CLEAR_TEXT: &str = "https://qr.vipps.no/28/2/01/031/";
            const TOKEN: &str = "https://qr.vipps.no/p/";
            if let Some(rest) = qr.strip_prefix(CLEAR_TEXT) {
                let digits = rest.split(['?', '#']).next().unwrap_or("");
                let phone: Msisdn = digits.parse().map_err(|_| invalid_qr())?;
                found(&phone)
            } else if let Some(token) = qr.strip_prefix(TOKEN) {
                let token = token.split(['?', '#']).next().unwrap_or("");
                customers
                    .by_qr_token(token)
                    .map(|c| (c.phone_number.clone(), c.behaviour))
                    .ok_or_else(not_found)
            } else {
                Err(invalid_qr())
            }
        }
        CustomerId::CustomerToken(token) => customers
            .by_qr_token(token)
            .map(|c| (c.phone_number.clone(), c.behaviour))
            .ok_or_else(|| {
                Invalid::coded(
                    "customer.customerToken",
                    "The customerToken is not valid.",
                    "Invalid CustomerToken",
                    4050,
                )
            }),
    }
}

fn invalid_qr() -> Invalid {
    Invalid::coded(
        "customer.personalQr",
        "The personalQr is not a Vipps MobilePay personal QR code. Send the complete scanned text.",
        "Invalid PersonalQr",
        4060,
    )
}

/// What every idempotent ePayment write starts from: the merchant, the body as sent and as
/// JSON, and the time.
struct Write {
    msn: String,
    bytes: web::Bytes,
    parsed: Result<Option<Value>, Invalid>,
    now: Now,
}

impl Write {
    async fn read(
        state: &SimState,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<Write, Problem> {
        let merchant = auth::authorize(state, req, MsnHeader::Required).map_err(msn_forbidden)?;
        let bytes = request::read_body(payload).await?;
        let parsed = request::parse_json(&bytes);
        Ok(Write {
            msn: merchant.merchant_serial_number,
            bytes,
            parsed,
            now: now(state),
        })
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.parsed.as_ref().ok(), &self.bytes)
    }
}

/// The headers a write must carry, checked after its rate limit; the `Idempotency-Key` it
/// carries scoped to the merchant, `op` and `reference`.
fn write_scope(
    req: &HttpRequest,
    bytes: &[u8],
    msn: &str,
    op: Operation,
    reference: String,
) -> Result<Scope, Problem> {
    check_system_headers(req)?;
    check_content_type(req, bytes)?;
    Ok(Scope {
        msn: msn.to_owned(),
        operation: op,
        reference,
        key: idempotency_key(req)?,
    })
}

/// `POST /epayment/v1/payments`.
async fn create_payment(
    state: web::Data<SimState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let write = Write::read(&state, &req, payload).await?;
    let limit_reference = write
        .parsed
        .as_ref()
        .ok()
        .and_then(|v| v.as_ref()?.get("reference")?.as_str().map(str::to_owned));
    let validated = write
        .parsed
        .clone()
        .and_then(|body| request::create_payment(body, write.now.wall));
    // Customers are read before the payments lock is taken, never inside it.
    let customer = match &validated {
        Ok(NewPayment {
            customer: Some(id), ..
        }) => Some(resolve_customer(&state.customers(), id)),
        _ => None,
    }
    .transpose();
    let fingerprint = write.fingerprint();

    let mut payments = lock(&state);
    if let Some(reference) = &limit_reference {
        let on = state.settings.rate_limits;
        payments.limit(
            on,
            &write.msn,
            Operation::PaymentCreate,
            reference,
            write.now.instant,
        )?;
    }
    let scope = write_scope(
        &req,
        &write.bytes,
        &write.msn,
        Operation::PaymentCreate,
        String::new(),
    )?;
    let key = scope.key.clone();
    payments.idempotent(scope, fingerprint, write.now.instant, |payments| {
        let new = validated?;
        let customer = customer?;
        if payments.get(&write.msn, &new.reference).is_some() {
            return Err(Problem::epayment(
                StatusCode::CONFLICT,
                "Reference already exists",
                &format!(
                    "A payment with reference {} already exists. Use a new reference for a new payment.",
                    new.reference
                ),
                &[("reference", "Already used by another payment.")],
                Some(4150),
            ));
        }
        let plan = customer.as_ref().map(|(_, b)| CustomerPlan {
            behaviour: b.payment,
            acts_at: write.now.instant + b.payment_delay,
        });
        let creation = Creation {
            msn: write.msn.clone(),
            customer: customer.map(|(phone, _)| phone),
            plan,
            // 17 digits with room for 100 events per payment.
            psp_base: rand::random_range(100_000_000_000_000..900_000_000_000_000) * 100,
            expiry: state.settings.payment_expiry,
            redirect_token: uuid::Uuid::new_v4().simple().to_string(),
            idempotency_key: key.clone(),
        };
        let p = Payment::new(new, creation, &write.now);
        publish(&state.webhooks, &p, 0);
        let mut body = json!({"reference": p.reference()});
        if let Some(url) = &p.redirect_url {
            body["redirectUrl"] = json!(url);
        }
        tracing::debug!(reference = %p.reference(), "payment created");
        payments.insert(p);
        Ok(Answer::json(StatusCode::CREATED, body))
    })
}

/// The shared start of get and events: authorised, rate-limited, time applied.
fn read<T>(
    state: &SimState,
    req: &HttpRequest,
    raw: &str,
    op: Operation,
    view: impl FnOnce(&Payment) -> T,
) -> Result<T, Problem> {
    let merchant = auth::authorize(state, req, MsnHeader::Required).map_err(msn_forbidden)?;
    let msn = merchant.merchant_serial_number;
    let now = now(state);
    let mut payments = lock(state);
    payments.limit(state.settings.rate_limits, &msn, op, raw, now.instant)?;
    check_system_headers(req)?;
    let reference = path_reference(raw)?;
    let key = (msn, reference);
    payments.settle(&key, &now, &state.webhooks);
    payments
        .by_key
        .get(&key)
        .map(view)
        .ok_or_else(|| unknown_reference(raw))
}

/// `GET /epayment/v1/payments/{reference}`.
async fn get_payment(
    state: web::Data<SimState>,
    req: HttpRequest,
    reference: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let body = read(
        &state,
        &req,
        &reference,
        Operation::PaymentGet,
        Payment::get_response,
    )?;
    Ok(HttpResponse::Ok().json(body))
}

/// `GET /epayment/v1/payments/{reference}/events`.
async fn get_events(
    state: web::Data<SimState>,
    req: HttpRequest,
    reference: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let body = read(&state, &req, &reference, Operation::PaymentEvents, |p| {
        let events: Vec<Value> = p.events.iter().map(|e| p.event_json(e)).collect();
        Value::Array(events)
    })?;
    Ok(HttpResponse::Ok().json(body))
}

/// The route of one modification: `POST …/cancel`, `…/capture` or `…/refund`.
fn modify_route(op: Operation) -> actix_web::Route {
    web::post().to(
        move |state: web::Data<SimState>,
              req: HttpRequest,
              raw: web::Path<String>,
              payload: web::Payload| modify(state, req, raw, payload, op),
    )
}

/// Cancel, capture and refund: rate limit, idempotency, the state machine, events.
///
/// The spec declares their 200 answer as `application/problem+json`; the simulator answers
/// `application/json` like the live API.
async fn modify(
    state: web::Data<SimState>,
    req: HttpRequest,
    raw: web::Path<String>,
    payload: web::Payload,
    op: Operation,
) -> Result<HttpResponse, Problem> {
    let write = Write::read(&state, &req, payload).await?;

    let mut payments = lock(&state);
    payments.limit(
        state.settings.rate_limits,
        &write.msn,
        op,
        &raw,
        write.now.instant,
    )?;
    let scope = write_scope(&req, &write.bytes, &write.msn, op, raw.to_string())?;
    let key = scope.key.clone();
    let fingerprint = write.fingerprint();
    payments.idempotent(scope, fingerprint, write.now.instant, |payments| {
        let reference = path_reference(&raw)?;
        let body = write.parsed?;
        enum Input {
            Cancel(bool),
            Amount(crate::domain::Amount),
        }
        let input = match op {
            Operation::PaymentCancel => Input::Cancel(request::cancel(body)?),
            _ => Input::Amount(request::modification(body)?),
        };
        let pkey = (write.msn.clone(), reference);
        payments.settle(&pkey, &write.now, &state.webhooks);
        let p = payments
            .by_key
            .get_mut(&pkey)
            .ok_or_else(|| unknown_reference(&raw))?;
        let before = p.events.len();
        let result = match (op, input) {
            (_, Input::Cancel(only)) => p.cancel(&write.now, only, &key),
            (Operation::PaymentCapture, Input::Amount(a)) => p.capture(&write.now, a, &key),
            (_, Input::Amount(a)) => p.refund(&write.now, a, &key),
        };
        // Failed attempts append events too (test refund amounts); publish whatever happened.
        publish(&state.webhooks, p, before);
        let answer = match result {
            Ok(()) => Answer::json(StatusCode::OK, p.modification_response()),
            Err(e) => {
                tracing::debug!(reference = %p.reference(), error = e.kind(), "modification refused");
                payment_problem(&e).into()
            }
        };
        payments.untrack_if_final(&pkey);
        Ok(answer)
    })
}

/// `POST /epayment/v1/test/payments/{reference}/approve`: the test environment's force approve.
async fn force_approve(
    state: web::Data<SimState>,
    req: HttpRequest,
    raw: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, Problem> {
    let merchant = auth::authorize(&state, &req, MsnHeader::Required).map_err(msn_forbidden)?;
    let msn = merchant.merchant_serial_number;
    let bytes = request::read_body(payload).await?;
    check_content_type(&req, &bytes)?;
    let reference = path_reference(&raw)?;
    let body = request::force_approve(request::parse_json(&bytes)?)?;
    let approver = body
        .customer
        .as_ref()
        .map(|id| resolve_customer(&state.customers(), id))
        .transpose()?
        .map(|(phone, _)| phone);
    let now = now(&state);

    let mut payments = lock(&state);
    let key = (msn, reference);
    payments.settle(&key, &now, &state.webhooks);
    let p = payments
        .by_key
        .get_mut(&key)
        .ok_or_else(|| unknown_reference(&raw))?;
    if p.state != State::Created {
        return Err(payment_problem(&PaymentError::ApproveNotAllowed(
            p.state.as_str(),
        )));
    }
    if let Some(token) = &body.token
        && p.redirect_token.as_ref() != Some(token)
    {
        return Err(approve_refused(
            "The token is not the one in this payment's redirectUrl.",
            ("token", "Does not match the payment."),
        ));
    }
    match (&p.customer, approver) {
        (Some(owner), Some(other)) if *owner != other => {
            return Err(approve_refused(
                "The payment was requested from another customer.",
                ("customer", "Not the payment's customer."),
            ));
        }
        (None, Some(approver)) => p.customer = Some(approver),
        _ => {}
    }
    let before = p.events.len();
    let result = p.approve(&now);
    publish(&state.webhooks, p, before);
    payments.untrack_if_final(&key);
    result.map_err(|e| payment_problem(&e))?;
    Ok(HttpResponse::Ok().finish())
}

/// Force approve's 400 (code 10020) naming the field that does not fit the payment.
fn approve_refused(detail: &str, invalid: (&str, &str)) -> Problem {
    Problem::epayment(
        StatusCode::BAD_REQUEST,
        "Approve not allowed",
        detail,
        &[invalid],
        Some(10020),
    )
}

/// Applies whatever is due: customers approve or decline, unanswered payments expire.
pub(super) fn tick(state: &Arc<SimState>, now: Instant) {
    let now = Now {
        instant: now,
        wall: state.clock.wall(),
    };
    let mut payments = lock(state);
    let due: Vec<Key> = payments
        .pending
        .iter()
        .filter(|k| {
            payments
                .by_key
                .get(*k)
                .is_none_or(|p| p.due(now.instant).is_some())
        })
        .cloned()
        .collect();
    for key in &due {
        payments.settle(key, &now, &state.webhooks);
    }
    if payments
        .pruned_at
        .is_none_or(|at| now.instant.duration_since(at) >= PRUNE_EVERY)
    {
        payments.pruned_at = Some(now.instant);
        payments.idempotency.prune(now.instant);
        payments
            .limits
            .prune(now.instant, MUTATION_LIMIT.per.max(READ_LIMIT.per));
    }
}

// The control API: `/sim/v1/payments…`.

pub(super) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/payments", web::get().to(control_list))
        .route("/payments/{reference}", web::get().to(control_get))
        .route("/payments/{reference}/approve", control_act_route(true))
        .route("/payments/{reference}/decline", control_act_route(false));
}

fn control_problem(status: StatusCode, detail: &str, invalid: &[(&str, &str)]) -> Problem {
    let title = status.canonical_reason().unwrap_or("Error");
    Problem::params(status, title, detail, invalid)
}

fn query(req: &HttpRequest) -> Result<HashMap<String, String>, Problem> {
    web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| control_problem(StatusCode::BAD_REQUEST, &e.to_string(), &[]))
}

/// `GET /sim/v1/payments[?state=…&msn=…]`: every payment with its state and aggregate.
async fn control_list(
    state: web::Data<SimState>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    let q = query(&req)?;
    let wanted = match q.get("state") {
        None => None,
        Some(raw) => Some(State::parse(raw).ok_or_else(|| {
            control_problem(
                StatusCode::BAD_REQUEST,
                "state must be CREATED, AUTHORIZED, ABORTED, EXPIRED or TERMINATED",
                &[("state", "Unknown state.")],
            )
        })?),
    };
    let msn = q.get("msn");
    let payments = lock(&state);
    let list: Vec<Value> = payments
        .all()
        .into_iter()
        .filter(|p| wanted.is_none_or(|s| p.state == s))
        .filter(|p| msn.is_none_or(|m| &p.msn == m))
        .map(|p| p.control_view(false))
        .collect();
    Ok(HttpResponse::Ok().json(list))
}

/// Finds the one payment with `raw` as reference (of `?msn=` when given).
fn control_find(payments: &Payments, req: &HttpRequest, raw: &str) -> Result<Key, Problem> {
    let q = query(req)?;
    let reference = raw.parse::<PaymentReference>().map_err(|e| {
        control_problem(
            StatusCode::BAD_REQUEST,
            &e.to_string(),
            &[("reference", &e.reason)],
        )
    })?;
    let found: Vec<&Key> = payments
        .by_key
        .keys()
        .filter(|(msn, r)| *r == reference && q.get("msn").is_none_or(|m| m == msn))
        .collect();
    match found.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(control_problem(
            StatusCode::NOT_FOUND,
            &format!("no payment with reference {raw}"),
            &[],
        )),
        _ => Err(control_problem(
            StatusCode::CONFLICT,
            &format!("several merchants have a payment {raw}; add ?msn="),
            &[("msn", "Required when a reference is not unique.")],
        )),
    }
}

/// `GET /sim/v1/payments/{reference}[?msn=…]`: the payment with its event log.
async fn control_get(
    state: web::Data<SimState>,
    req: HttpRequest,
    raw: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let now = now(&state);
    let mut payments = lock(&state);
    let key = control_find(&payments, &req, &raw)?;
    payments.settle(&key, &now, &state.webhooks);
    let p = payments
        .by_key
        .get(&key)
        .ok_or_else(|| control_problem(StatusCode::NOT_FOUND, &format!("no payment {raw}"), &[]))?;
    Ok(HttpResponse::Ok().json(p.control_view(true)))
}

/// `POST /sim/v1/payments/{reference}/approve` (`approve`) or `…/decline`.
fn control_act_route(approve: bool) -> actix_web::Route {
    web::post().to(
        move |state: web::Data<SimState>, req: HttpRequest, raw: web::Path<String>| async move {
            control_act(&state, &req, &raw, approve)
        },
    )
}

/// Acts as the payment's customer now, whatever their behaviour says. A test amount makes the
/// approval fail (ABORTED), which is an outcome, not an error of this call.
fn control_act(
    state: &SimState,
    req: &HttpRequest,
    raw: &str,
    approve: bool,
) -> Result<HttpResponse, Problem> {
    let now = now(state);
    let mut payments = lock(state);
    let key = control_find(&payments, req, raw)?;
    payments.settle(&key, &now, &state.webhooks);
    let p = payments
        .by_key
        .get_mut(&key)
        .ok_or_else(|| control_problem(StatusCode::NOT_FOUND, &format!("no payment {raw}"), &[]))?;
    if p.state != State::Created {
        return Err(control_problem(
            StatusCode::CONFLICT,
            &format!(
                "payment {raw} is {}; only a CREATED payment waits for its customer",
                p.state.as_str()
            ),
            &[],
        ));
    }
    let before = p.events.len();
    let _outcome = if approve {
        p.approve(&now)
    } else {
        p.decline(&now)
    };
    publish(&state.webhooks, p, before);
    let view = p.control_view(true);
    payments.untrack_if_final(&key);
    Ok(HttpResponse::Ok().json(view))
}
