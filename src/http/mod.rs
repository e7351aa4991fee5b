//! lanehub's HTTP surface: health, the terminal API and its WebSocket, later webhooks and the UI.

pub mod api;
pub mod extract;
pub mod problem;
pub mod ui;
pub mod webhooks;

use actix_web::{HttpResponse, web};

/// Routes served on `api.listen`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/healthz", web::get().to(healthz))
        .configure(api::routes)
        .configure(ui::routes)
        .configure(webhooks::routes);
}

/// The process lives and serves HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok()
        .json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}
