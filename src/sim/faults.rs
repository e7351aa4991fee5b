//! Fault injection for the Vipps API routes, globally and per operation: added latency, 5xx,
//! 423 and 429 answers, requests that never get an answer, dropped connections, and duplicate or
//! out-of-order webhook deliveries, and forged webhook deliveries (a false payload with a wrong
//! signature, sent beside the real one). Configured at run time through `/sim/v1/faults`.
//!
//! What must stay true:
//! - The control API (`/sim/v1`) is never faulted; only the routes behind [`middleware`] are.
//! - Each fault kind has a share (`…Rate`, a probability rolled per request) and a count
//!   (`…Next`, the next N requests get it for certain), so tests can be exact without luck. A
//!   `seed` makes the rolls reproducible.
//! - A request first gets its operation's faults, then the global ones: latencies add up, and
//!   the first fault that changes the answer wins. Counts are spent before rates are rolled.
//! - Injected errors are not processed by the API. A hung or dropped request **is** processed;
//!   only its answer is withheld or lost, which is the case idempotency keys exist for.
//! - Waiting is async (`tokio::time::sleep`): a hung request never blocks a worker thread.
//! - The state lock is never held across an `.await`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError, web};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use super::SimState;
use super::problem::Problem;
use crate::vipps::Operation;

/// How long a hung request is held when `hangMs` is not given.
pub const DEFAULT_HANG: Duration = Duration::from_secs(3600);
/// `Retry-After` on injected 423 and 429 answers when `retryAfterSecs` is not given.
pub const DEFAULT_RETRY_AFTER_SECS: u64 = 1;
/// Upper bound for `latencyMs`, `jitterMs` and `hangMs`, so a typo cannot wedge a test for days.
pub const MAX_WAIT_MS: u64 = 24 * 3600 * 1000;
/// The 5xx statuses chosen from when `serverErrorStatus` is not given.
const SERVER_ERRORS: [StatusCode; 3] = [
    StatusCode::INTERNAL_SERVER_ERROR,
    StatusCode::BAD_GATEWAY,
    StatusCode::SERVICE_UNAVAILABLE,
];

/// One set of faults: the global one, or one operation's. Field names are the control API's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct FaultConfig {
    /// Added before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Up to this many milliseconds more, uniformly at random.
    pub jitter_ms: u64,
    /// Share of requests answered with a 5xx.
    pub server_error_rate: f64,
    /// The next N requests are answered with a 5xx.
    pub server_error_next: u32,
    /// The 5xx to answer; 500, 502 or 503 at random when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_error_status: Option<u16>,
    /// Share of requests answered 423 Locked.
    pub locked_rate: f64,
    pub locked_next: u32,
    /// Share of requests answered 429 Too Many Requests.
    pub too_many_requests_rate: f64,
    /// A burst: the next N requests are answered 429.
    pub too_many_requests_next: u32,
    /// `Retry-After` on injected 423 and 429 answers; [`DEFAULT_RETRY_AFTER_SECS`] when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_secs: Option<u64>,
    /// Share of requests that are processed but never answered.
    pub hang_rate: f64,
    pub hang_next: u32,
    /// How long a hung request is held before a 504; [`DEFAULT_HANG`] when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hang_ms: Option<u64>,
    /// Share of requests that are processed but whose connection is dropped before the answer.
    pub drop_rate: f64,
    pub drop_next: u32,
    /// Share of webhook deliveries sent twice (global only).
    pub webhook_duplicate_rate: f64,
    pub webhook_duplicate_next: u32,
    /// Share of webhook deliveries held back behind the next one (global only).
    pub webhook_out_of_order_rate: f64,
    pub webhook_out_of_order_next: u32,
    /// Share of webhook deliveries preceded by a forged one: a false payload (the payment
    /// captured) signed with the wrong secret, sent once (global only).
    pub webhook_forged_rate: f64,
    pub webhook_forged_next: u32,
    /// Reseeds the random rolls so a run can be repeated exactly (global only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// Where a fault configuration applies; some fields only make sense globally.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Operation(Operation),
}

/// A configuration the control API refuses: which field, and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidFaults {
    pub field: String,
    pub reason: String,
}

impl InvalidFaults {
    fn new(field: &str, reason: impl Into<String>) -> Self {
        InvalidFaults {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    pub fn kind(&self) -> &'static str {
        "invalid_faults"
    }
}

impl FaultConfig {
    /// Checks shares, statuses, durations, and that global-only fields are not used per
    /// operation.
    pub fn validate(&self, scope: Scope) -> Result<(), InvalidFaults> {
        let answer_rates = [
            ("serverErrorRate", self.server_error_rate),
            ("lockedRate", self.locked_rate),
            ("tooManyRequestsRate", self.too_many_requests_rate),
            ("hangRate", self.hang_rate),
            ("dropRate", self.drop_rate),
        ];
        let webhook_rates = [
            ("webhookDuplicateRate", self.webhook_duplicate_rate),
            ("webhookOutOfOrderRate", self.webhook_out_of_order_rate),
            ("webhookForgedRate", self.webhook_forged_rate),
        ];
        for (field, rate) in answer_rates.iter().chain(&webhook_rates) {
            if !(0.0..=1.0).contains(rate) {
                return Err(InvalidFaults::new(
                    field,
                    format!("{rate} is not a share between 0.0 and 1.0"),
                ));
            }
        }
        let total: f64 = answer_rates.iter().map(|(_, r)| r).sum();
        if total > 1.0 + 1e-9 {
            return Err(InvalidFaults::new(
                "serverErrorRate",
                format!(
                    "serverErrorRate, lockedRate, tooManyRequestsRate, hangRate and dropRate add \
                     up to {total}; a request gets at most one of them, so at most 1.0"
                ),
            ));
        }
        if let Some(status) = self.server_error_status
            && !(500..=599).contains(&status)
        {
            return Err(InvalidFaults::new(
                "serverErrorStatus",
                format!("{status} is not a 5xx status"),
            ));
        }
        for (field, ms) in [
            ("latencyMs", Some(self.latency_ms)),
            ("jitterMs", Some(self.jitter_ms)),
            ("hangMs", self.hang_ms),
        ] {
            if ms.is_some_and(|ms| ms > MAX_WAIT_MS) {
                return Err(InvalidFaults::new(
                    field,
                    format!("at most {MAX_WAIT_MS} ms (a day)"),
                ));
            }
        }
        if let Scope::Operation(op) = scope {
            let global_only = [
                ("webhookDuplicateRate", self.webhook_duplicate_rate != 0.0),
                ("webhookDuplicateNext", self.webhook_duplicate_next != 0),
                (
                    "webhookOutOfOrderRate",
                    self.webhook_out_of_order_rate != 0.0,
                ),
                ("webhookOutOfOrderNext", self.webhook_out_of_order_next != 0),
                ("webhookForgedRate", self.webhook_forged_rate != 0.0),
                ("webhookForgedNext", self.webhook_forged_next != 0),
                ("seed", self.seed.is_some()),
            ];
            if let Some((field, _)) = global_only.iter().find(|(_, set)| *set) {
                return Err(InvalidFaults::new(
                    field,
                    format!(
                        "applies to the whole simulator; set it with PUT /sim/v1/faults, not for \
                         {}",
                        op.as_str()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn delay(&self, rng: &mut StdRng) -> Duration {
        let jitter = if self.jitter_ms > 0 {
            rng.random_range(0..=self.jitter_ms)
        } else {
            0
        };
        Duration::from_millis(self.latency_ms.saturating_add(jitter))
    }

    /// The fault for one request, spending a `…Next` count first, else rolling the shares.
    fn take(&mut self, rng: &mut StdRng) -> Option<Injection> {
        let retry_after = self.retry_after_secs.unwrap_or(DEFAULT_RETRY_AFTER_SECS);
        let server_error = |rng: &mut StdRng, fixed: Option<u16>| {
            let status = fixed
                .and_then(|s| StatusCode::from_u16(s).ok())
                .unwrap_or_else(|| SERVER_ERRORS[rng.random_range(0..SERVER_ERRORS.len())]);
            Injection::ServerError(status)
        };
        let hang = Injection::Hang(self.hang_ms.map_or(DEFAULT_HANG, Duration::from_millis));
        if spend(&mut self.too_many_requests_next) {
            return Some(Injection::TooManyRequests { retry_after });
        }
        if spend(&mut self.server_error_next) {
            return Some(server_error(rng, self.server_error_status));
        }
        if spend(&mut self.locked_next) {
            return Some(Injection::Locked { retry_after });
        }
        if spend(&mut self.hang_next) {
            return Some(hang);
        }
        if spend(&mut self.drop_next) {
            return Some(Injection::Drop);
        }
        let shares = [
            self.server_error_rate,
            self.locked_rate,
            self.too_many_requests_rate,
            self.hang_rate,
            self.drop_rate,
        ];
        if shares.iter().all(|s| *s == 0.0) {
            return None;
        }
        // One roll per request, so the shares are exact and mutually exclusive.
        let roll: f64 = rng.random();
        let mut edge = 0.0;
        for (i, share) in shares.into_iter().enumerate() {
            edge += share;
            if roll < edge {
                return Some(match i {
                    0 => server_error(rng, self.server_error_status),
                    1 => Injection::Locked { retry_after },
                    2 => Injection::TooManyRequests { retry_after },
                    3 => hang,
                    _ => Injection::Drop,
                });
            }
        }
        None
    }
}

/// Spends one of the next N, if any are left.
fn spend(next: &mut u32) -> bool {
    if *next > 0 {
        *next -= 1;
        true
    } else {
        false
    }
}

/// What happens to one request instead of its normal answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Injection {
    ServerError(StatusCode),
    Locked { retry_after: u64 },
    TooManyRequests { retry_after: u64 },
    Hang(Duration),
    Drop,
}

impl Injection {
    fn kind(self) -> Kind {
        match self {
            Injection::ServerError(_) => Kind::ServerError,
            Injection::Locked { .. } => Kind::Locked,
            Injection::TooManyRequests { .. } => Kind::TooManyRequests,
            Injection::Hang(_) => Kind::Hang,
            Injection::Drop => Kind::Drop,
        }
    }
}

/// The faults for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub delay: Duration,
    pub injection: Option<Injection>,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Latency,
    ServerError,
    Locked,
    TooManyRequests,
    Hang,
    Drop,
    WebhookDuplicate,
    WebhookOutOfOrder,
    WebhookForged,
}

/// How many faults of each kind were injected.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Counts {
    pub latency: u64,
    pub server_error: u64,
    pub locked: u64,
    pub too_many_requests: u64,
    pub hang: u64,
    pub drop: u64,
    pub webhook_duplicate: u64,
    pub webhook_out_of_order: u64,
    pub webhook_forged: u64,
}

impl Counts {
    fn add(&mut self, kind: Kind) {
        let slot = match kind {
            Kind::Latency => &mut self.latency,
            Kind::ServerError => &mut self.server_error,
            Kind::Locked => &mut self.locked,
            Kind::TooManyRequests => &mut self.too_many_requests,
            Kind::Hang => &mut self.hang,
            Kind::Drop => &mut self.drop,
            Kind::WebhookDuplicate => &mut self.webhook_duplicate,
            Kind::WebhookOutOfOrder => &mut self.webhook_out_of_order,
            Kind::WebhookForged => &mut self.webhook_forged,
        };
        *slot += 1;
    }
}

/// Everything `GET /sim/v1/faults` shows: the configurations (with the `…Next` counts left) and
/// what was injected, in total and per operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultsView {
    pub global: FaultConfig,
    pub operations: BTreeMap<&'static str, FaultConfig>,
    pub injected: Counts,
    pub injected_by_operation: BTreeMap<&'static str, Counts>,
}

#[derive(Debug)]
struct Inner {
    global: FaultConfig,
    operations: HashMap<Operation, FaultConfig>,
    rng: StdRng,
    injected: Counts,
    injected_by_operation: HashMap<Operation, Counts>,
}

impl Default for Inner {
    fn default() -> Self {
        Inner {
            global: FaultConfig::default(),
            operations: HashMap::new(),
            rng: rand::make_rng(),
            injected: Counts::default(),
            injected_by_operation: HashMap::new(),
        }
    }
}

impl Inner {
    fn count(&mut self, op: Option<Operation>, kind: Kind) {
        self.injected.add(kind);
        if let Some(op) = op {
            self.injected_by_operation.entry(op).or_default().add(kind);
        }
    }
}

/// The faults in force.
#[derive(Debug, Default)]
pub struct Faults {
    inner: Mutex<Inner>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the plain data inconsistent.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces the global configuration (operation configurations stay).
    pub fn set_global(&self, config: FaultConfig) -> Result<(), InvalidFaults> {
        config.validate(Scope::Global)?;
        let mut inner = self.lock();
        if let Some(seed) = config.seed {
            inner.rng = StdRng::seed_from_u64(seed);
        }
        inner.global = config;
        Ok(())
    }

    /// Replaces one operation's configuration; it applies on top of the global one.
    pub fn set_operation(&self, op: Operation, config: FaultConfig) -> Result<(), InvalidFaults> {
        config.validate(Scope::Operation(op))?;
        self.lock().operations.insert(op, config);
        Ok(())
    }

    /// Removes one operation's configuration.
    pub fn clear_operation(&self, op: Operation) {
        self.lock().operations.remove(&op);
    }

    /// Removes every fault and resets the counters.
    pub fn clear(&self) {
        *self.lock() = Inner::default();
    }

    pub fn view(&self) -> FaultsView {
        let inner = self.lock();
        FaultsView {
            global: inner.global.clone(),
            operations: inner
                .operations
                .iter()
                .map(|(op, c)| (op.as_str(), c.clone()))
                .collect(),
            injected: inner.injected.clone(),
            injected_by_operation: inner
                .injected_by_operation
                .iter()
                .map(|(op, c)| (op.as_str(), c.clone()))
                .collect(),
        }
    }

    /// Decides the faults for one request to `op` (`None`: a path no operation matches, which
    /// gets only the global faults) and counts them.
    pub fn decide(&self, op: Option<Operation>) -> Decision {
        let mut inner = self.lock();
        let Inner {
            global,
            operations,
            rng,
            ..
        } = &mut *inner;
        let mut delay = Duration::ZERO;
        let mut injection = None;
        let scoped = op.and_then(|op| operations.get_mut(&op));
        for config in scoped.into_iter().chain(std::iter::once(global)) {
            delay += config.delay(rng);
            if injection.is_none() {
                injection = config.take(rng);
            }
        }
        if !delay.is_zero() {
            inner.count(op, Kind::Latency);
        }
        if let Some(i) = injection {
            inner.count(op, i.kind());
        }
        Decision { delay, injection }
    }

    /// Whether the next webhook delivery should also be sent a second time.
    pub fn roll_webhook_duplicate(&self) -> bool {
        self.roll_webhook(Kind::WebhookDuplicate)
    }

    /// Whether the next webhook delivery should be held back and sent after the one behind it.
    pub fn roll_webhook_out_of_order(&self) -> bool {
        self.roll_webhook(Kind::WebhookOutOfOrder)
    }

    /// Whether a forged sending should go before the next webhook delivery.
    pub fn roll_webhook_forged(&self) -> bool {
        self.roll_webhook(Kind::WebhookForged)
    }

    fn roll_webhook(&self, kind: Kind) -> bool {
        let mut inner = self.lock();
        let Inner { global, rng, .. } = &mut *inner;
        let (next, rate) = match kind {
            Kind::WebhookDuplicate => (
                &mut global.webhook_duplicate_next,
                global.webhook_duplicate_rate,
            ),
            Kind::WebhookForged => (&mut global.webhook_forged_next, global.webhook_forged_rate),
            _ => (
                &mut global.webhook_out_of_order_next,
                global.webhook_out_of_order_rate,
            ),
        };
        let hit = spend(next) || (rate > 0.0 && rng.random::<f64>() < rate);
        if hit {
            inner.count(None, kind);
        }
        hit
    }
}

/// Applies the faults to every Vipps API request.
pub(super) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(state) = req.app_data::<web::Data<SimState>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let op = Operation::from_request(req.method().as_str(), req.path());
    let decision = state.faults.decide(op);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    let Some(injection) = decision.injection else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    if let Some(op) = op {
        tracing::debug!(operation = op.as_str(), fault = ?injection, "fault injected");
    }
    match injection {
        Injection::ServerError(status) => Ok(req.into_response(server_error(status))),
        Injection::Locked { retry_after } => {
            let problem = Problem::epayment(
                StatusCode::LOCKED,
                "Locked",
                "The resource is locked by another request. Try again later.",
                &[],
                None,
            )
            .with_header("retry-after", retry_after.max(1));
            Ok(req.into_response(problem.error_response()))
        }
        Injection::TooManyRequests { retry_after } => {
            Ok(req.into_response(Problem::too_many_requests(retry_after).error_response()))
        }
        Injection::Hang(hold) => {
            let res = next.call(req).await?;
            // The client normally gives up long before this; if it does not, it gets what a
            // gateway answers for an upstream that never replied.
            tokio::time::sleep(hold).await;
            let (req, _) = res.into_parts();
            Ok(ServiceResponse::new(
                req,
                server_error(StatusCode::GATEWAY_TIMEOUT),
            ))
        }
        Injection::Drop => {
            let res = next.call(req).await?;
            let (req, res) = res.into_parts();
            // A body that fails before its first byte makes actix close the connection without
            // sending the head, so the client sees the connection drop mid-request.
            let broken = futures_util::stream::once(async {
                Err::<web::Bytes, _>(std::io::Error::other(
                    "connection dropped by fault injection",
                ))
            });
            Ok(ServiceResponse::new(
                req,
                HttpResponse::build(res.status()).streaming(broken),
            ))
        }
    }
}

fn server_error(status: StatusCode) -> HttpResponse {
    Problem::epayment(
        status,
        status.canonical_reason().unwrap_or("Server Error"),
        "The service failed to answer. Try again later.",
        &[],
        None,
    )
    .error_response()
}

pub(super) fn control_routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/faults", web::get().to(get_faults))
        .route("/faults", web::put().to(put_global))
        .route("/faults", web::delete().to(clear_faults))
        .route("/faults/{operation}", web::put().to(put_operation))
        .route("/faults/{operation}", web::delete().to(clear_operation));
}

fn bad_request(field: &str, reason: &str) -> Problem {
    Problem::params(
        StatusCode::BAD_REQUEST,
        "Bad Request",
        &format!("{field}: {reason}"),
        &[(field, reason)],
    )
}

/// Parses a configuration, naming the field at fault when it is not one.
fn parse_config(body: &[u8]) -> Result<FaultConfig, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.inner();
        if inner.is_syntax() || inner.is_eof() {
            return bad_request("body", &format!("not valid JSON: {inner}"));
        }
        let path = e.path().to_string();
        // An unknown field is reported at its parent, here the whole body.
        let field = if path == "." || path.starts_with('?') {
            "body"
        } else {
            path.as_str()
        };
        bad_request(field, &inner.to_string())
    })
}

fn parse_operation(raw: &str) -> Result<Operation, Problem> {
    Operation::ALL
        .into_iter()
        .find(|op| op.as_str() == raw)
        .ok_or_else(|| {
            let known: Vec<&str> = Operation::ALL.iter().map(|op| op.as_str()).collect();
            bad_request(
                "operation",
                &format!("unknown operation `{raw}`; known: {}", known.join(", ")),
            )
        })
}

fn view(state: &SimState) -> HttpResponse {
    HttpResponse::Ok().json(state.faults.view())
}

async fn get_faults(state: web::Data<SimState>) -> HttpResponse {
    view(&state)
}

async fn put_global(state: web::Data<SimState>, body: web::Bytes) -> Result<HttpResponse, Problem> {
    let config = parse_config(&body)?;
    state
        .faults
        .set_global(config)
        .map_err(|e| bad_request(&e.field, &e.reason))?;
    Ok(view(&state))
}

async fn put_operation(
    state: web::Data<SimState>,
    operation: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, Problem> {
    let op = parse_operation(&operation)?;
    let config = parse_config(&body)?;
    state
        .faults
        .set_operation(op, config)
        .map_err(|e| bad_request(&e.field, &e.reason))?;
    Ok(view(&state))
}

async fn clear_operation(
    state: web::Data<SimState>,
    operation: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let op = parse_operation(&operation)?;
    state.faults.clear_operation(op);
    Ok(view(&state))
}

async fn clear_faults(state: web::Data<SimState>) -> HttpResponse {
    state.faults.clear();
    view(&state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeded(config: FaultConfig) -> Faults {
        let faults = Faults::default();
        faults
            .set_global(FaultConfig {
                seed: Some(7),
                ..config
            })
            .unwrap();
        faults
    }

    #[test]
    fn counts_are_spent_before_shares_in_a_fixed_order() {
        let faults = seeded(FaultConfig {
            too_many_requests_next: 2,
            server_error_next: 1,
            server_error_status: Some(502),
            locked_next: 1,
            retry_after_secs: Some(4),
            ..FaultConfig::default()
        });
        let got: Vec<Option<Injection>> = (0..5).map(|_| faults.decide(None).injection).collect();
        assert_eq!(
            got,
            vec![
                Some(Injection::TooManyRequests { retry_after: 4 }),
                Some(Injection::TooManyRequests { retry_after: 4 }),
                Some(Injection::ServerError(StatusCode::BAD_GATEWAY)),
                Some(Injection::Locked { retry_after: 4 }),
                None,
            ]
        );
        let view = faults.view();
        assert_eq!(view.global.too_many_requests_next, 0);
        assert_eq!(view.injected.too_many_requests, 2);
        assert_eq!(view.injected.server_error, 1);
        assert_eq!(view.injected.locked, 1);
    }

    #[test]
    fn shares_are_close_to_their_rates_and_reproducible_with_a_seed() {
        let config = FaultConfig {
            server_error_rate: 0.25,
            drop_rate: 0.25,
            ..FaultConfig::default()
        };
        let run = || {
            let faults = seeded(config.clone());
            (0..2000)
                .map(|_| faults.decide(None).injection)
                .collect::<Vec<_>>()
        };
        let first = run();
        assert_eq!(first, run());
        let errors = first
            .iter()
            .filter(|i| matches!(i, Some(Injection::ServerError(_))))
            .count();
        let drops = first
            .iter()
            .filter(|i| matches!(i, Some(Injection::Drop)))
            .count();
        assert!((400..600).contains(&errors), "{errors}");
        assert!((400..600).contains(&drops), "{drops}");
    }

    #[test]
    fn operation_faults_apply_before_global_ones_and_latencies_add() {
        let faults = seeded(FaultConfig {
            latency_ms: 10,
            locked_rate: 1.0,
            ..FaultConfig::default()
        });
        faults
            .set_operation(
                Operation::PaymentCreate,
                FaultConfig {
                    latency_ms: 5,
                    hang_next: 1,
                    hang_ms: Some(1000),
                    ..FaultConfig::default()
                },
            )
            .unwrap();
        let d = faults.decide(Some(Operation::PaymentCreate));
        assert_eq!(d.delay, Duration::from_millis(15));
        assert_eq!(
            d.injection,
            Some(Injection::Hang(Duration::from_millis(1000)))
        );
        // The operation's count is spent; the global share applies again.
        let d = faults.decide(Some(Operation::PaymentCreate));
        assert_eq!(d.injection, Some(Injection::Locked { retry_after: 1 }));
        let d = faults.decide(Some(Operation::AccessToken));
        assert_eq!(d.delay, Duration::from_millis(10));
        let view = faults.view();
        assert_eq!(view.injected_by_operation["payment_create"].hang, 1);
        assert_eq!(view.injected_by_operation["payment_create"].locked, 1);
        assert_eq!(view.injected_by_operation["access_token"].latency, 1);
        assert_eq!(view.injected.latency, 3);
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let faults = seeded(FaultConfig {
            latency_ms: 100,
            jitter_ms: 50,
            ..FaultConfig::default()
        });
        for _ in 0..200 {
            let d = faults.decide(None).delay;
            assert!(
                (Duration::from_millis(100)..=Duration::from_millis(150)).contains(&d),
                "{d:?}"
            );
        }
    }

    #[test]
    fn webhook_rolls_spend_counts_then_roll_shares() {
        let faults = seeded(FaultConfig {
            webhook_duplicate_next: 2,
            webhook_out_of_order_rate: 1.0,
            ..FaultConfig::default()
        });
        let dups: Vec<bool> = (0..3).map(|_| faults.roll_webhook_duplicate()).collect();
        assert_eq!(dups, vec![true, true, false]);
        assert!(faults.roll_webhook_out_of_order());
        assert!(!faults.roll_webhook_forged());
        let view = faults.view();
        assert_eq!(view.injected.webhook_duplicate, 2);
        assert_eq!(view.injected.webhook_out_of_order, 1);
        assert_eq!(view.injected.webhook_forged, 0);
        faults.clear();
        assert!(!faults.roll_webhook_out_of_order());
        assert_eq!(faults.view().injected, Counts::default());
    }

    #[test]
    fn invalid_configurations_name_the_field() {
        let cases: [(FaultConfig, Scope, &str); 6] = [
            (
                FaultConfig {
                    server_error_rate: 1.5,
                    ..FaultConfig::default()
                },
                Scope::Global,
                "serverErrorRate",
            ),
            (
                FaultConfig {
                    hang_rate: -0.1,
                    ..FaultConfig::default()
                },
                Scope::Global,
                "hangRate",
            ),
            (
                FaultConfig {
                    server_error_rate: 0.6,
                    drop_rate: 0.6,
                    ..FaultConfig::default()
                },
                Scope::Global,
                "serverErrorRate",
            ),
            (
                FaultConfig {
                    server_error_status: Some(404),
                    ..FaultConfig::default()
                },
                Scope::Global,
                "serverErrorStatus",
            ),
            (
                FaultConfig {
                    latency_ms: MAX_WAIT_MS + 1,
                    ..FaultConfig::default()
                },
                Scope::Global,
                "latencyMs",
            ),
            (
                FaultConfig {
                    webhook_duplicate_rate: 0.5,
                    ..FaultConfig::default()
                },
                Scope::Operation(Operation::PaymentGet),
                "webhookDuplicateRate",
            ),
        ];
        for (config, scope, field) in cases {
            let err = config.validate(scope).expect_err(field);
            assert_eq!(err.field, field, "{err}");
        }
        assert_eq!(FaultConfig::default().validate(Scope::Global), Ok(()));
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err = parse_config(br#"{"lockedRate": "high"}"#).unwrap_err();
        assert!(
            err.body["detail"]
                .as_str()
                .unwrap()
                .starts_with("lockedRate:")
        );
        let err = parse_config(br#"{"latency": 5}"#).unwrap_err();
        assert!(err.body["detail"].as_str().unwrap().contains("latency"));
        let err = parse_operation("payment_teleport").unwrap_err();
        assert!(
            err.body["detail"]
                .as_str()
                .unwrap()
                .contains("payment_teleport")
        );
    }
}
