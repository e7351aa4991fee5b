//! Operations endpoints: `/healthz` (the process lives), `/readyz` (lanes up, Vipps reachable
//! with a valid token), `/metrics` (Prometheus text format).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::lane::Lanes;
use crate::metrics::MetricsHandle;
use crate::startup::AppState;

/// How long `/readyz` waits for a Vipps access token before answering not ready.
pub const READY_TOKEN_DEADLINE: Duration = Duration::from_secs(3);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .route("/metrics", web::get().to(metrics));
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn readyz(lanes: web::Data<Lanes>, state: web::Data<AppState>) -> HttpResponse {
    let all = lanes.all();
    let down: Vec<String> = all
        .iter()
        .filter(|l| !l.is_up())
        .map(|l| l.id().to_string())
        .collect();
    let vipps = state.vipps.with_deadline(READY_TOKEN_DEADLINE);
    let token = vipps.access_token().await;
    let circuit_open = state.vipps.status().await.is_ok_and(|s| s.circuit_open);
    let vipps_ok = token.is_ok() && !circuit_open;
    let ready = down.is_empty() && vipps_ok;
    let body = json!({
        "ready": ready,
        "lanes": {"total": all.len(), "down": down},
        "vipps": {
            "token": token.is_ok(),
            "circuitOpen": circuit_open,
            "error": token.err().map(|e| e.to_string()),
        },
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(handle: web::Data<MetricsHandle>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}
