//! Login from phone number (CIBA): backchannel authentication, token polling, userinfo, discovery.

use std::sync::Arc;

use actix_web::web;
use tokio::time::Instant;

use super::SimState;

/// Every Login request the simulator holds.
#[derive(Debug, Default)]
pub struct Logins {}

pub(super) fn api_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn control_routes(_cfg: &mut web::ServiceConfig) {}
pub(super) fn tick(_state: &Arc<SimState>, _now: Instant) {}
