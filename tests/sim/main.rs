//! The built-in Vipps simulator on its own: ePayment, identity and Login, webhooks and their
//! faults, bad input of every kind, conformance with the official OpenAPI files (and the harness
//! that checks it), and the fuzz corpus replayed through the fuzz targets' oracles.

#[path = "../common/mod.rs"]
mod common;

mod bad_input;
mod epayment;
mod faults;
mod fuzz_regressions;
mod identity;
mod receiver;
mod spec_conformance;
mod spec_harness;
mod webhook_faults;
mod webhooks;
