//! lanehub's HTTP surface: operations endpoints, the terminal API and its WebSocket, Vipps
//! webhooks and the cashier UI.

pub mod api;
pub mod extract;
pub mod limits;
pub mod ops;
pub mod problem;
pub mod socket;
pub mod ui;
pub mod webhooks;

use actix_web::http::Method;
use actix_web::{Handler, HttpResponse, Resource, Responder, web};

use problem::ApiError;

/// Routes served on `api.listen`.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.configure(ops::routes)
        .configure(api::routes)
        .configure(ui::routes)
        .configure(webhooks::routes);
}

/// A resource at `path` served by `handler` for its one method; any other method gets a 405
/// problem with `Allow` naming the right one.
pub(crate) fn resource<F, Args>(
    path: &str,
    (method, route): (Method, actix_web::Route),
    handler: F,
) -> Resource
where
    F: Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(route.to(handler))
        .default_service(web::to(move || {
            let allow = method.clone();
            async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
        }))
}
