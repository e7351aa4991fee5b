//! lanehub's HTTP surface: health now; the terminal API, WebSocket, webhooks and UI join it.

use actix_web::{HttpResponse, web};

/// Routes served on `api.listen`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz));
}

/// The process lives and serves HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
