//! lanehub's HTTP surface: operations endpoints, the terminal API and its WebSocket, Vipps
//! webhooks and the cashier UI.

pub mod api;
pub mod extract;
pub mod ops;
pub mod problem;
pub mod ui;
pub mod webhooks;

use actix_web::web;

/// Routes served on `api.listen`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(ops::routes)
        .configure(api::routes)
        .configure(ui::routes)
        .configure(webhooks::routes);
}
