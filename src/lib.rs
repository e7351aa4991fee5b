//! lanehub: a store controller for Vipps MobilePay "Loyalty at the Point of Sale".
//!
//! Lane terminals connect over HTTP and WebSocket. Each checkout lane is one actor that owns its
//! scanners and a pure session state machine; one shared Vipps-client actor fetches tokens,
//! rate-limits and retries every Vipps call; a supervisor restarts failed lanes and exports
//! Prometheus metrics. A built-in Vipps simulator lets all of it run without credentials.

pub mod backoff;
pub mod bench;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod followup;
pub mod http;
pub mod lane;
pub mod members;
pub mod metrics;
pub mod procfs;
pub mod refund;
pub mod scanner;
pub mod session;
pub mod shutdown;
pub mod sim;
pub mod startup;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod vipps;

/// Installs rustls' ring provider as the process default; reqwest is built without one.
pub fn install_crypto_provider() {
    // Err means another provider is already installed, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An error's kind: its variant's name in snake case, a bounded label for logs and metrics.
/// Every error that derives `strum::IntoStaticStr` (with `serialize_all = "snake_case"`) has it.
pub trait ErrorKind {
    fn kind(&self) -> &'static str;
}

impl<T> ErrorKind for T
where
    for<'a> &'a T: Into<&'static str>,
{
    fn kind(&self) -> &'static str {
        self.into()
    }
}
