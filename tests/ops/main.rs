//! What operators touch besides the terminal API: configuration, the metrics exposition, the
//! Grafana dashboards and alerts, and the `scanner`, `bench` and `demo` subcommands.
//!
//! No test here starts lanehub in-process: `metrics` installs the process' global recorder and
//! asserts on a rendering taken once, which a running lanehub in the same process would change.

#[path = "../common/mod.rs"]
mod common;

mod bench_cli;
mod config;
mod dashboards;
mod demo;
mod metrics;
mod scanner_cli;
mod scanner_vectors;
