//! Check-in: `POST /point-of-sale/v1/loyalty-check-in`, each call recorded for tests.

use actix_web::web;

/// One check-in the simulator received: what the customer's app showed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckInRecord {}

pub(super) fn api_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn control_routes(_cfg: &mut web::ServiceConfig) {}
