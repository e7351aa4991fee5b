//! Webhooks API (register, list, delete) and signed, ordered, retried deliveries.

use std::sync::Arc;

use actix_web::web;
use tokio::time::Instant;

use super::SimState;

/// Registrations and their delivery queues.
#[derive(Debug, Default)]
pub struct Webhooks {}

impl Webhooks {
    /// Queues `payload` as event `event` for every registration of merchant `msn` that asked for it.
    pub fn publish(&self, _msn: &str, _event: &str, _payload: serde_json::Value) {}
}

pub(super) fn api_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn control_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn tick(_state: &Arc<SimState>, _now: Instant) {}
