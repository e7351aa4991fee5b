//! lanehub's side of the wire to Vipps: the HTTP client, the actor in front of it (tokens,
//! limits, retries, circuit), the webhook receiver and the webhook registration at start.

#[path = "../common/mod.rs"]
mod common;

mod actor;
mod client;
mod webhook_receiver;
mod webhook_registration;
