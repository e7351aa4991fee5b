//! Operations endpoints: `/healthz` (the process lives), `/readyz` (lanes up, Vipps reachable
//! with a valid token, not shutting down), `/metrics` (Prometheus text format). None needs a
//! token.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::http::Method;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::resource;
use crate::lane::Lanes;
use crate::metrics::MetricsHandle;
use crate::startup::AppState;
use crate::vipps::ApiStatus;

/// How long `/readyz` waits for a Vipps access token before answering not ready.
pub const READY_TOKEN_DEADLINE: Duration = Duration::from_secs(3);

pub fn routes(cfg: &mut web::ServiceConfig) {
    let get = || (Method::GET, web::get());
    cfg.service(resource("/healthz", get(), healthz))
        .service(resource("/readyz", get(), readyz))
        .service(resource("/metrics", get(), metrics));
}

/// The process is alive.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = "0.1.0")]
    pub version: &'static str,
}

/// Whether lanehub can take checkouts now, and if not, why.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// lanehub is draining for shutdown and takes no new checkouts.
    #[serde(rename = "shuttingDown")]
    pub shutting_down: bool,
    pub lanes: LanesReadiness,
    pub vipps: VippsReadiness,
    pub store: StoreReadiness,
}

/// Whether lanehub can write its database (journal, payments, members).
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreReadiness {
    pub writable: bool,
    /// Why the latest write failed (e.g. "database or disk is full").
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LanesReadiness {
    pub total: usize,
    /// Ids of the lanes whose actor is not running.
    pub down: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VippsReadiness {
    /// Whether a Vipps access token could be had.
    pub token: bool,
    /// Whether a circuit that payments need (access token, ePayment) is open.
    pub circuit_open: bool,
    /// Why no token could be had.
    pub error: Option<String>,
    /// Each Vipps API's circuit, by API (`access_token`, `qr`, `check_in`, `login`, `epayment`,
    /// `webhooks`). Only `access_token` and `epayment` decide readiness.
    pub apis: BTreeMap<&'static str, ApiReadiness>,
}

/// One Vipps API's circuit breaker.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiReadiness {
    /// `closed`, `open` or `half_open`.
    #[schema(example = "closed")]
    pub circuit: &'static str,
    /// Whole seconds until a call may try again, while calls fail fast.
    pub retry_in_secs: Option<u64>,
}

/// Liveness: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/healthz", security(()), responses(
    (status = 200, description = "The process is alive", body = Health),
))]
pub(crate) async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Readiness: every lane is up, Vipps answers with a valid token, its circuit closed, the store
/// takes writes, and lanehub is not shutting down.
#[utoipa::path(get, path = "/readyz", security(()), responses(
    (status = 200, description = "Ready for checkouts", body = Readiness),
    (status = 503, description = "Not ready; the body says what is missing", body = Readiness),
))]
pub(crate) async fn readyz(lanes: web::Data<Lanes>, state: web::Data<AppState>) -> HttpResponse {
    let shutting_down = state.shutdown.is_draining();
    let all = lanes.all();
    let down: Vec<String> = all
        .iter()
        .filter(|l| !l.is_up())
        .map(|l| l.id().to_string())
        .collect();
    let vipps = state.vipps.with_deadline(READY_TOKEN_DEADLINE);
    let token = vipps.access_token().await;
    let status = state.vipps.status().await.ok();
    let apis: Vec<ApiStatus> = status.map(|s| s.apis.to_vec()).unwrap_or_default();
    let circuit_open = apis
        .iter()
        .any(|a| a.api.needed_for_payments() && a.is_open());
    let vipps_ok = token.is_ok() && !circuit_open;
    let store = state.store.health_now();
    let ready = down.is_empty() && vipps_ok && !shutting_down && store.writable;
    let body = Readiness {
        ready,
        shutting_down,
        lanes: LanesReadiness {
            total: all.len(),
            down,
        },
        vipps: VippsReadiness {
            token: token.is_ok(),
            circuit_open,
            error: token.err().map(|e| e.to_string()),
            apis: apis
                .iter()
                .map(|a| {
                    let readiness = ApiReadiness {
                        circuit: a.circuit,
                        retry_in_secs: a.retry_in.map(|d| d.as_secs_f64().ceil() as u64),
                    };
                    (a.api.as_str(), readiness)
                })
                .collect(),
        },
        store: StoreReadiness {
            writable: store.writable,
            error: store.error,
        },
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Every metric in the Prometheus text format (see docs/metrics.md).
#[utoipa::path(get, path = "/metrics", security(()), responses(
    (status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"),
))]
pub(crate) async fn metrics(handle: web::Data<MetricsHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
