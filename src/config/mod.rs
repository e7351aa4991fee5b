//! Typed, layered settings: the built-in defaults (`config/lanehub.toml`, compiled in), then an
//! optional file, then `LANEHUB__SECTION__KEY` environment variables.
//!
//! Unknown keys are rejected and every error names where the value came from (file, environment
//! variable or built-in defaults), the key and what is wrong. Secrets are `SecretString` so they
//! cannot reach a log by accident.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::domain::{LaneId, Msisdn};

mod layers;
mod members;

use layers::*;
pub use members::*;

/// The built-in defaults, which are also the documented configuration file.
pub const DEFAULTS: &str = include_str!("../../config/lanehub.toml");
const DEFAULTS_SOURCE: &str = "built-in defaults";
const ENV_PREFIX: &str = "LANEHUB__";

/// Demo credentials that ship in the default configuration; refused in remote Vipps mode.
pub const DEMO_TOKENS: [&str; 3] = ["demo-admin-token", "demo-lane-1-token", "demo-lane-2-token"];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub api: ApiSettings,
    pub vipps: VippsSettings,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub sim: SimSettings,
    pub session: SessionSettings,
    pub supervisor: SupervisorSettings,
    pub members: MembersSettings,
    #[serde(default)]
    pub lanes: Vec<LaneSettings>,
}

/// The waits of a checkout that store IT may tune; the rest are built-in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    #[serde(deserialize_with = "duration")]
    pub qr_exchange_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub login_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub payment_expiry: Duration,
    #[serde(deserialize_with = "duration")]
    pub payment_margin: Duration,
    #[serde(deserialize_with = "duration")]
    pub payment_first_poll: Duration,
    #[serde(deserialize_with = "duration")]
    pub payment_poll_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
}

impl SessionSettings {
    pub fn session_config(&self) -> crate::session::SessionConfig {
        crate::session::SessionConfig {
            qr_exchange_timeout: self.qr_exchange_timeout,
            login_timeout: self.login_timeout,
            payment_expiry: self.payment_expiry,
            payment_margin: self.payment_margin,
            payment_first_poll: self.payment_first_poll,
            payment_poll_interval: self.payment_poll_interval,
            idle_timeout: self.idle_timeout,
            ..crate::session::SessionConfig::default()
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SupervisorSettings {
    /// Restarts a lane may have within `restart_window` before it is marked down.
    pub max_restarts: usize,
    #[serde(deserialize_with = "duration")]
    pub restart_window: Duration,
    /// Threads the lane actors are spread over; 0 means one per CPU.
    pub lane_threads: usize,
    /// On SIGTERM or Ctrl-C, how long payments in flight may take to reach a final state before
    /// lanehub stops and leaves them to recovery at the next start.
    #[serde(deserialize_with = "duration")]
    pub shutdown_deadline: Duration,
    /// How often payments that Vipps never confirmed (their session gave up) are read back.
    #[serde(deserialize_with = "duration")]
    pub unconfirmed_payment_interval: Duration,
    /// How long after its creation such a payment is looked for before it counts as never
    /// created; one that appears within it is cancelled.
    #[serde(deserialize_with = "duration")]
    pub unconfirmed_payment_window: Duration,
    /// How often enrollments a session gave up on (the cashier moved on before the customer
    /// consented, or saving the member failed) are followed up.
    #[serde(deserialize_with = "duration")]
    pub late_enrollment_interval: Duration,
    /// How long after its Login started such an enrollment is followed: past it, one without
    /// the customer's consent counts as expired and one whose member cannot be saved as failed.
    #[serde(deserialize_with = "duration")]
    pub late_enrollment_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    pub listen: SocketAddr,
    pub admin_token: SecretString,
    /// Correctly signed webhook deliveries whose `x-ms-date` is further than this from now are
    /// accepted all the same, and counted as late.
    #[serde(deserialize_with = "duration")]
    pub webhook_date_tolerance: Duration,
    /// Test hooks (make a lane panic); never enable in a store.
    pub test_hooks: bool,
    /// How often the server pings a terminal's WebSocket; two missed pongs close it.
    #[serde(deserialize_with = "duration")]
    pub heartbeat_interval: Duration,
    /// PEM certificate chain for HTTPS; with `tls_key`. Neither set serves plain HTTP.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Connections served at once; past it new connections wait in the listen queue.
    pub max_connections: usize,
    /// A request's whole body must arrive within this, or the request gets 408 and its
    /// connection is closed.
    #[serde(deserialize_with = "duration")]
    pub body_timeout: Duration,
    /// Live WebSockets one lane accepts; one more is answered 429.
    pub max_websockets_per_lane: usize,
}

impl ApiSettings {
    /// The certificate and key paths when HTTPS is configured.
    pub fn tls(&self) -> Option<(&Path, &Path)> {
        self.tls_cert.as_deref().zip(self.tls_key.as_deref())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VippsMode {
    Simulator,
    Remote,
}

/// How lanehub authenticates to the Login endpoints (`vipps.login_client_auth`): the token
/// endpoint authentication method set for the client on portal.vipps.no.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginClientAuth {
    /// `Authorization: Basic` with `client_id:client_secret` (Vipps' default).
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VippsSettings {
    pub mode: VippsMode,
    pub base_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub subscription_key: SecretString,
    pub merchant_serial_number: String,
    /// How the Login calls carry the client credentials.
    pub login_client_auth: LoginClientAuth,
    pub system_name: String,
    pub plugin_name: String,
    #[serde(deserialize_with = "duration")]
    pub connect_timeout: Duration,
    #[serde(deserialize_with = "duration")]
    pub request_timeout: Duration,
    pub webhook_public_url: String,
    /// The scopes a Login asks for; `delegatedConsents` only once Vipps activated it.
    pub login_scopes: Vec<String>,
    /// Global ceiling on requests per second to Vipps, across all lanes.
    pub max_requests_per_second: u32,
    /// Requests that may wait for a rate-limit slot at once.
    pub max_waiters: usize,
    #[serde(deserialize_with = "duration")]
    pub max_rate_limit_wait: Duration,
    /// Overall deadline of one call, retries included.
    #[serde(deserialize_with = "duration")]
    pub retry_deadline: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_initial_backoff: Duration,
    #[serde(deserialize_with = "duration")]
    pub retry_max_backoff: Duration,
    /// Consecutive failures that open the circuit breaker.
    pub circuit_failure_threshold: u32,
    #[serde(deserialize_with = "duration")]
    pub circuit_cool_down: Duration,
    /// Refresh the access token this long before it expires.
    #[serde(deserialize_with = "duration")]
    pub token_refresh_before: Duration,
    /// A failed webhook registration is tried again after this, doubling per failure up to
    /// `webhook_registration_max_backoff`.
    #[serde(deserialize_with = "duration")]
    pub webhook_registration_backoff: Duration,
    #[serde(deserialize_with = "duration")]
    pub webhook_registration_max_backoff: Duration,
}

impl VippsSettings {
    pub fn actor_settings(&self) -> crate::vipps::actor::VippsActorSettings {
        crate::vipps::actor::VippsActorSettings {
            max_requests_per_second: self.max_requests_per_second,
            max_waiters: self.max_waiters,
            max_rate_limit_wait: self.max_rate_limit_wait,
            retry_deadline: self.retry_deadline,
            retry_initial_backoff: self.retry_initial_backoff,
            retry_max_backoff: self.retry_max_backoff,
            circuit_failure_threshold: self.circuit_failure_threshold,
            circuit_cool_down: self.circuit_cool_down,
            token_refresh_before: self.token_refresh_before,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// This store's name within the chain: kept with the members it enrolls and sent to the
    /// CRM. Empty only with the `sqlite` membership provider.
    pub name: String,
    pub data_dir: PathBuf,
    /// How long the journal records of a closed session are kept before they are pruned.
    #[serde(deserialize_with = "retention")]
    pub journal_retention: Duration,
}

/// The shortest `store.journal_retention`: a disputed checkout is looked into from its journal.
pub const MIN_JOURNAL_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);
/// The longest `store.journal_retention` (about ten years).
pub const MAX_JOURNAL_RETENTION: Duration = Duration::from_secs(3650 * 24 * 60 * 60);

/// A retention period: a duration like `duration`, but measured in days, up to ten years.
fn retention<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(
        d,
        "90d",
        MIN_JOURNAL_RETENTION..=MAX_JOURNAL_RETENTION,
        "is not between 1 day and 3650 days",
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub level: String,
    pub format: LogFormat,
}

/// Which Vipps the simulator plays (`sim.profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SimProfile {
    /// Every API answers as documented.
    Default,
    /// As the real test environment (apitest.vipps.no): check-in answers 500, an access-token
    /// request without `Content-Length` is refused with 411, and a Login asking for
    /// `delegatedConsents` is refused with `invalid_scope` (as before Vipps activates it).
    TestEnvironment,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimSettings {
    pub listen: SocketAddr,
    pub profile: SimProfile,
    #[serde(deserialize_with = "duration")]
    pub token_lifetime: Duration,
    #[serde(deserialize_with = "duration")]
    pub payment_expiry: Duration,
    #[serde(deserialize_with = "duration")]
    pub login_expiry: Duration,
    #[serde(deserialize_with = "duration")]
    pub login_interval: Duration,
    #[serde(deserialize_with = "duration")]
    pub webhook_retry_initial: Duration,
    #[serde(deserialize_with = "duration")]
    pub webhook_retry_max: Duration,
    #[serde(deserialize_with = "duration")]
    pub webhook_retry_for: Duration,
    pub rate_limits: bool,
    /// Whether Vipps activated `delegatedConsents` for the merchants' Login clients.
    pub login_delegated_consents: bool,
    #[serde(default)]
    pub merchants: Vec<SimMerchant>,
    #[serde(default)]
    pub customers: Vec<SimCustomer>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimMerchant {
    pub name: String,
    pub client_id: String,
    pub client_secret: SecretString,
    pub subscription_key: SecretString,
    pub merchant_serial_number: String,
}

/// What a virtual customer does with a payment request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentBehaviour {
    Approve,
    Decline,
    Ignore,
}

/// What a virtual customer does with a Login request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LoginBehaviour {
    Consent,
    Deny,
    Ignore,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimCustomer {
    pub phone_number: Msisdn,
    pub name: String,
    pub email: String,
    #[serde(default)]
    pub member: bool,
    pub payment: PaymentBehaviour,
    #[serde(deserialize_with = "duration")]
    pub payment_delay: Duration,
    pub login: LoginBehaviour,
    #[serde(deserialize_with = "duration")]
    pub login_delay: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneSettings {
    pub id: LaneId,
    pub token: SecretString,
    #[serde(default)]
    pub scanners: Vec<ScannerSettings>,
}

/// Who faces a scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerRole {
    Customer,
    Cashier,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScannerSource {
    Hid,
    Terminal,
    Simulated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HidProtocol {
    HidPos,
    Keyboard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyboardLayout {
    Us,
    No,
}

/// One scanner of a lane. `vid`/`pid` (and optionally `serial` or `path`) select a `hid` device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannerSettings {
    pub role: ScannerRole,
    pub source: ScannerSource,
    pub vid: Option<u16>,
    pub pid: Option<u16>,
    pub serial: Option<String>,
    pub path: Option<String>,
    pub protocol: Option<HidProtocol>,
    pub layout: Option<KeyboardLayout>,
    #[serde(default, deserialize_with = "opt_duration")]
    pub inter_report_timeout: Option<Duration>,
}

/// No setting needs longer; beyond it timers would overflow the clock at start-up.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 60 * 60);

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    bounded_duration(
        d,
        "5s",
        Duration::ZERO..=MAX_DURATION,
        "is longer than 30 days",
    )
}

/// A humantime duration within `bounds`; the errors show `example` as the expected form and say
/// `out_of_bounds` of a value outside them.
fn bounded_duration<'de, D: Deserializer<'de>>(
    d: D,
    example: &str,
    bounds: RangeInclusive<Duration>,
    out_of_bounds: &str,
) -> Result<Duration, D::Error> {
    let raw = String::deserialize(d)?;
    let value = humantime::parse_duration(&raw).map_err(|e| {
        serde::de::Error::custom(format!(
            "`{raw}` is not a duration like \"{example}\" ({e})"
        ))
    })?;
    if !bounds.contains(&value) {
        return Err(serde::de::Error::custom(format!("`{raw}` {out_of_bounds}")));
    }
    Ok(value)
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// A configuration error naming the source, the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}: {}{message}", key_prefix(.key))]
pub struct ConfigError {
    /// A file path, an environment variable name, or "built-in defaults".
    pub origin: String,
    /// The dotted key, empty for errors about a whole file.
    pub key: String,
    pub message: String,
}

fn key_prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("key `{key}`: ")
    }
}

impl Settings {
    /// Loads the built-in defaults, then `file` if given, then `LANEHUB__…` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let settings: Settings = Layers::load(file, env)?.into_typed()?;
        settings.validate(file)?;
        Ok(settings)
    }

    /// Loads with the process environment.
    pub fn load_from_process(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load(file, std::env::vars())
    }

    fn validate(&self, file: Option<&Path>) -> Result<(), ConfigError> {
        let source = file.map_or(DEFAULTS_SOURCE.to_owned(), |p| p.display().to_string());
        let err = |key: &str, message: String| ConfigError {
            origin: source.clone(),
            key: key.to_owned(),
            message,
        };
        let msn = &self.vipps.merchant_serial_number;
        if !(4..=7).contains(&msn.len()) || !msn.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(
                "vipps.merchant_serial_number",
                "expected 4 to 7 digits".into(),
            ));
        }
        for (key, value) in [
            ("vipps.system_name", &self.vipps.system_name),
            ("vipps.plugin_name", &self.vipps.plugin_name),
        ] {
            if value.is_empty() || value.len() > 30 {
                return Err(err(key, "expected 1 to 30 characters".into()));
            }
        }
        self.validate_exposure(&source)?;
        let mut seen = std::collections::HashSet::new();
        for (i, lane) in self.lanes.iter().enumerate() {
            if !seen.insert(lane.id.clone()) {
                return Err(err(
                    &format!("lanes[{i}].id"),
                    format!("lane `{}` is defined twice", lane.id),
                ));
            }
            if lane.token.expose_secret().len() < 16 {
                return Err(err(
                    &format!("lanes[{i}].token"),
                    "a lane token needs at least 16 characters".into(),
                ));
            }
            for (j, s) in lane.scanners.iter().enumerate() {
                let key = format!("lanes[{i}].scanners[{j}]");
                if s.source == ScannerSource::Hid && (s.vid.is_none() || s.pid.is_none()) {
                    return Err(err(&key, "a hid scanner needs `vid` and `pid`".into()));
                }
                if s.source == ScannerSource::Hid && s.protocol.is_none() {
                    return Err(err(
                        &key,
                        "a hid scanner needs `protocol` (\"hid-pos\" or \"keyboard\")".into(),
                    ));
                }
            }
        }
        if let Some(message) = login_scopes_problem(&self.vipps.login_scopes) {
            return Err(err("vipps.login_scopes", message));
        }
        if self.vipps.max_requests_per_second == 0 {
            return Err(err(
                "vipps.max_requests_per_second",
                "must be at least 1".into(),
            ));
        }
        if self.supervisor.max_restarts == 0 {
            return Err(err("supervisor.max_restarts", "must be at least 1".into()));
        }
        for (key, value) in [
            (
                "supervisor.unconfirmed_payment_interval",
                self.supervisor.unconfirmed_payment_interval,
            ),
            (
                "supervisor.late_enrollment_interval",
                self.supervisor.late_enrollment_interval,
            ),
            (
                "supervisor.late_enrollment_window",
                self.supervisor.late_enrollment_window,
            ),
        ] {
            if value.is_zero() {
                return Err(err(key, "must be above 0".into()));
            }
        }
        // The enrollment follower reads the journals of closed sessions within its window.
        if self.store.journal_retention < self.supervisor.late_enrollment_window {
            return Err(err(
                "store.journal_retention",
                "must be at least `supervisor.late_enrollment_window`".into(),
            ));
        }
        if self.session.payment_poll_interval.is_zero() {
            return Err(err(
                "session.payment_poll_interval",
                "must be above 0".into(),
            ));
        }
        if self.vipps.webhook_registration_backoff.is_zero() {
            return Err(err(
                "vipps.webhook_registration_backoff",
                "must be above 0".into(),
            ));
        }
        if self.vipps.webhook_registration_max_backoff < self.vipps.webhook_registration_backoff {
            return Err(err(
                "vipps.webhook_registration_max_backoff",
                "must be at least `webhook_registration_backoff`".into(),
            ));
        }
        if self.api.heartbeat_interval.is_zero() {
            return Err(err("api.heartbeat_interval", "must be above 0".into()));
        }
        match (&self.api.tls_cert, &self.api.tls_key) {
            (Some(_), None) => {
                return Err(err(
                    "api.tls_key",
                    "missing: `tls_cert` and `tls_key` are set together or not at all".into(),
                ));
            }
            (None, Some(_)) => {
                return Err(err(
                    "api.tls_cert",
                    "missing: `tls_cert` and `tls_key` are set together or not at all".into(),
                ));
            }
            (Some(cert), Some(key)) => {
                for (name, path) in [("api.tls_cert", cert), ("api.tls_key", key)] {
                    if let Err(e) = std::fs::File::open(path) {
                        return Err(err(name, format!("cannot read `{}`: {e}", path.display())));
                    }
                }
            }
            (None, None) => {}
        }
        self.members
            .validate(&self.store)
            .map_err(|(key, message)| err(key, message))?;
        if self.api.admin_token.expose_secret().len() < 16 {
            return Err(err(
                "api.admin_token",
                "the admin token needs at least 16 characters".into(),
            ));
        }
        let mut customers = std::collections::HashSet::new();
        for (i, c) in self.sim.customers.iter().enumerate() {
            if !customers.insert(c.phone_number.clone()) {
                return Err(err(
                    &format!("sim.customers[{i}].phone_number"),
                    "defined twice".into(),
                ));
            }
        }
        Ok(())
    }
}

/// Hardening: what lanehub exposes and to whom. Errors name keys, never a secret's value.
impl Settings {
    fn validate_exposure(&self, source: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| ConfigError {
            origin: source.to_owned(),
            key: key.to_owned(),
            message,
        };
        if self.vipps.mode == VippsMode::Remote {
            check_url(&self.vipps.base_url)
                .map_err(|why| err("vipps.base_url", format!("remote mode needs {why}")))?;
            if self.api.test_hooks {
                return Err(err(
                    "api.test_hooks",
                    "test hooks are refused in remote Vipps mode (they can crash a lane)".into(),
                ));
            }
            let demo = self.demo_token_keys();
            if let Some(first) = demo.first() {
                return Err(err(
                    first,
                    format!(
                        "demo tokens are refused in remote Vipps mode; set real ones for: {}",
                        demo.join(", ")
                    ),
                ));
            }
        }
        if !self.api.listen.ip().is_loopback() {
            let demo = self.demo_token_keys();
            if !demo.is_empty() {
                return Err(err(
                    "api.listen",
                    format!(
                        "`{}` is reachable from the network, where demo tokens are refused; \
                         set real ones for: {}",
                        self.api.listen,
                        demo.join(", ")
                    ),
                ));
            }
        }
        let url = &self.vipps.webhook_public_url;
        if !url.is_empty() {
            check_url(url).map_err(|why| {
                err(
                    "vipps.webhook_public_url",
                    format!("Vipps only delivers webhooks to {why}"),
                )
            })?;
        }
        // Every token names one caller: a shared token would let one lane act as another, or
        // as the admin.
        let admin = self.api.admin_token.expose_secret();
        for (i, lane) in self.lanes.iter().enumerate() {
            let token = lane.token.expose_secret();
            let key = format!("lanes[{i}].token");
            if token == admin {
                return Err(err(
                    &key,
                    "is the same as `api.admin_token`; every lane needs a token of its own".into(),
                ));
            }
            if let Some(j) = self.lanes[..i]
                .iter()
                .position(|other| other.token.expose_secret() == token)
            {
                return Err(err(
                    &key,
                    format!(
                        "is the same as `lanes[{j}].token`; every lane needs a token of its own"
                    ),
                ));
            }
        }
        let api = &self.api;
        if api.max_connections == 0 {
            return Err(err("api.max_connections", "must be at least 1".into()));
        }
        if api.max_websockets_per_lane == 0 {
            return Err(err(
                "api.max_websockets_per_lane",
                "must be at least 1".into(),
            ));
        }
        if api.body_timeout.is_zero() || api.body_timeout > MAX_BODY_TIMEOUT {
            return Err(err(
                "api.body_timeout",
                "must be above 0 and at most 10s (a stalled body holds a connection that long)"
                    .into(),
            ));
        }
        Ok(())
    }

    /// The keys whose token is one of the shipped demo values.
    fn demo_token_keys(&self) -> Vec<String> {
        let mut keys = vec![];
        if DEMO_TOKENS.contains(&self.api.admin_token.expose_secret()) {
            keys.push("api.admin_token".to_owned());
        }
        for (i, lane) in self.lanes.iter().enumerate() {
            if DEMO_TOKENS.contains(&lane.token.expose_secret()) {
                keys.push(format!("lanes[{i}].token"));
            }
        }
        keys
    }
}

/// The longest `api.body_timeout`: the webhook route takes bodies without a token.
pub const MAX_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether `url` is https, or http to this machine (a `lanehub sim` beside lanehub); the error
/// says what is accepted.
fn check_url(url: &str) -> Result<(), String> {
    const WANTED: &str = "an https URL (http only to a loopback host such as 127.0.0.1)";
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{WANTED}; `{url}`: {e}"))?;
    if parsed.host_str().is_none() {
        return Err(format!("{WANTED}; `{url}` has no host"));
    }
    if https_or_loopback_http(&parsed) {
        Ok(())
    } else {
        Err(format!("{WANTED}, not `{url}`"))
    }
}

/// Whether `url` is https, or plain http to a loopback host (`localhost`, 127.0.0.1, `[::1]`):
/// the only callback addresses lanehub and its simulator accept.
pub fn https_or_loopback_http(url: &reqwest::Url) -> bool {
    let loopback = url.host_str().is_some_and(|host| {
        host.eq_ignore_ascii_case("localhost")
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match url.scheme() {
        "https" => true,
        "http" => loopback,
        _ => false,
    }
}

/// What the commands that only touch the database need (`backup`, `members import|export`).
#[derive(Debug, Clone, Deserialize)]
pub struct DatabaseSettings {
    pub store: StoreSettings,
    pub log: LogSettings,
    pub members: MembersSettings,
}

impl DatabaseSettings {
    /// Loads the layers like [`Settings::load`] but reads only `[store]`, `[log]` and
    /// `[members]`, and checks none of the secrets: tokens, Vipps credentials and the members
    /// provider's secrets live in the service's environment, which a shell running
    /// `lanehub backup` does not have. The members commands check what they use.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<DatabaseSettings, ConfigError> {
        Layers::load(file, env)?.into_typed()
    }

    /// Loads with the process environment.
    pub fn load_from_process(file: Option<&Path>) -> Result<DatabaseSettings, ConfigError> {
        Self::load(file, std::env::vars())
    }
}

/// What is wrong with `vipps.login_scopes`, if anything.
fn login_scopes_problem(scopes: &[String]) -> Option<String> {
    if !scopes.iter().any(|s| s == "openid") {
        return Some("must include \"openid\"".into());
    }
    scopes
        .iter()
        .find(|s| s.is_empty() || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(|s| format!("`{s}` is not a scope name (letters, digits and _ only)"))
}
