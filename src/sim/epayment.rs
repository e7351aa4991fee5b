//! ePayment: create, get, events, cancel, capture, refund, force approve; rate limits per reference.

use std::sync::Arc;

use actix_web::web;
use tokio::time::Instant;

use super::SimState;

/// Every payment the simulator holds.
#[derive(Debug, Default)]
pub struct Payments {}

pub(super) fn api_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn control_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn tick(_state: &Arc<SimState>, _now: Instant) {}
