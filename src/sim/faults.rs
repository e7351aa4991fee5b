//! Fault injection for the Vipps API routes, globally and per operation.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

/// The faults in force.
#[derive(Debug, Default)]
pub struct Faults {}

impl Faults {
    /// Whether the next webhook delivery should also be sent a second time.
    pub fn roll_webhook_duplicate(&self) -> bool {
        false
    }

    /// Whether the next webhook delivery should be held back and sent after the one behind it.
    pub fn roll_webhook_out_of_order(&self) -> bool {
        false
    }
}

pub(super) async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    next.call(req).await
}

pub(super) fn control_routes(_cfg: &mut web::ServiceConfig) {}
