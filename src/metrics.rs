//! Every metric lanehub exports, declared in one place with its help text; dashboards use only
//! these names. Labels take values from closed lists; the `store` label comes from Prometheus'
//! scrape config.
//!
//! What must stay true:
//! - [`RECORDED`] and [`PROCESS`] list every metric family lanehub exposes: `describe_all`, the
//!   zero-initialisation, `docs/metrics.md`, the dashboards and their tests all read from them.
//! - Every label value comes from a closed list here (or is a configured lane id), so the number
//!   of series is bounded; every known combination exists at 0 from start, so `rate()` and
//!   `increase()` see the first event.
//! - Histograms have explicit buckets with one at each latency objective; never summaries.
//!
//! Wiring: [`install`] once at start-up (it is idempotent), [`init_lane`] for each lane the
//! supervisor starts, [`MetricsHandle::render`] at `GET /metrics`; the recording functions at the
//! bottom (`scan_received`, `vipps_request`, …) at the places the events happen.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use metrics::Unit;
use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{Amount, Currency, LaneId};
use crate::vipps::{Api, Operation};

use MetricKind::{Counter, Gauge};

/// `lanehub_build_info{version}`: always 1.
pub const BUILD_INFO: &str = "lanehub_build_info";
/// `lanehub_lane_up{lane}`: 1 while the lane's actor runs.
pub const LANE_UP: &str = "lanehub_lane_up";
/// `lanehub_lane_restarts_total{lane, reason}`.
pub const LANE_RESTARTS: &str = "lanehub_lane_restarts_total";
/// `lanehub_lane_session_state{lane, state}`: 1 for the current state.
pub const LANE_SESSION_STATE: &str = "lanehub_lane_session_state";
/// `lanehub_scans_total{lane, kind}`; kind is vipps_qr, product or unknown.
pub const SCANS: &str = "lanehub_scans_total";
/// `lanehub_scanner_connected{lane}`.
pub const SCANNER_CONNECTED: &str = "lanehub_scanner_connected";
/// `lanehub_terminals_connected{lane}`.
pub const TERMINALS_CONNECTED: &str = "lanehub_terminals_connected";
/// `lanehub_sessions_total{lane, outcome}`.
pub const SESSIONS: &str = "lanehub_sessions_total";
/// `lanehub_session_duration_seconds{outcome}` histogram.
pub const SESSION_DURATION: &str = "lanehub_session_duration_seconds";
/// `lanehub_membership_checks_total{lane, result}`; result is member or non_member.
pub const MEMBERSHIP_CHECKS: &str = "lanehub_membership_checks_total";
/// `lanehub_enrollments_total{lane, outcome}`.
pub const ENROLLMENTS: &str = "lanehub_enrollments_total";
/// `lanehub_late_enrollments_total{outcome}`.
pub const LATE_ENROLLMENTS: &str = "lanehub_late_enrollments_total";
/// `lanehub_payments_total{lane, outcome}`.
pub const PAYMENTS: &str = "lanehub_payments_total";
/// `lanehub_payments_captured_minor_units_total{currency}`.
pub const PAYMENTS_CAPTURED_MINOR_UNITS: &str = "lanehub_payments_captured_minor_units_total";
/// `lanehub_vipps_requests_total{operation, outcome}`.
pub const VIPPS_REQUESTS: &str = "lanehub_vipps_requests_total";
/// `lanehub_vipps_request_duration_seconds{operation}` histogram.
pub const VIPPS_REQUEST_DURATION: &str = "lanehub_vipps_request_duration_seconds";
/// `lanehub_vipps_retries_total{operation, reason}`.
pub const VIPPS_RETRIES: &str = "lanehub_vipps_retries_total";
/// `lanehub_vipps_rate_limit_wait_seconds{operation}` histogram.
pub const VIPPS_RATE_LIMIT_WAIT: &str = "lanehub_vipps_rate_limit_wait_seconds";
/// `lanehub_vipps_circuit_open{api}`: 1 while the API's circuit breaker fails fast.
pub const VIPPS_CIRCUIT_OPEN: &str = "lanehub_vipps_circuit_open";
/// `lanehub_webhooks_received_total{event, verdict}`.
pub const WEBHOOKS_RECEIVED: &str = "lanehub_webhooks_received_total";
/// `lanehub_webhooks_late_total`: correctly signed webhooks whose `x-ms-date` was further from
/// lanehub's clock than `api.webhook_date_tolerance`, accepted all the same.
pub const WEBHOOKS_LATE: &str = "lanehub_webhooks_late_total";
/// `lanehub_payment_pending_since_timestamp_seconds{lane}`: when the lane's unfinished payment
/// was requested (Unix seconds), 0 when it has none.
pub const PAYMENT_PENDING_SINCE: &str = "lanehub_payment_pending_since_timestamp_seconds";
/// `lanehub_session_invalid_transitions_total{lane, state}`: events the session rejected.
pub const SESSION_INVALID_TRANSITIONS: &str = "lanehub_session_invalid_transitions_total";
/// `lanehub_store_queue_depth`: requests waiting for the store thread.
pub const STORE_QUEUE_DEPTH: &str = "lanehub_store_queue_depth";
/// `lanehub_store_errors_total{kind}`: store requests that failed, by what went wrong.
pub const STORE_ERRORS: &str = "lanehub_store_errors_total";
/// `lanehub_store_writable`: 1 while the store takes writes, 0 while it refuses them.
pub const STORE_WRITABLE: &str = "lanehub_store_writable";
/// `lanehub_queue_depth{queue}`: messages waiting, summed over lanes for per-lane queues.
pub const QUEUE_DEPTH: &str = "lanehub_queue_depth";
/// `lanehub_queue_dropped_total{queue}`: messages dropped because the queue was full.
pub const QUEUE_DROPPED: &str = "lanehub_queue_dropped_total";

/// `process_cpu_seconds_total`: user and system CPU time (the Prometheus client convention).
pub const PROCESS_CPU_SECONDS: &str = "process_cpu_seconds_total";
/// `process_resident_memory_bytes`.
pub const PROCESS_RESIDENT_MEMORY: &str = "process_resident_memory_bytes";
/// `process_virtual_memory_bytes`.
pub const PROCESS_VIRTUAL_MEMORY: &str = "process_virtual_memory_bytes";
/// `process_open_fds`.
pub const PROCESS_OPEN_FDS: &str = "process_open_fds";
/// `process_max_fds`.
pub const PROCESS_MAX_FDS: &str = "process_max_fds";
/// `process_threads`.
pub const PROCESS_THREADS: &str = "process_threads";
/// `process_start_time_seconds`: Unix time the process started.
pub const PROCESS_START_TIME: &str = "process_start_time_seconds";

/// The latency objective for one Vipps call; a bucket of its histogram sits here.
pub const VIPPS_LATENCY_OBJECTIVE_SECONDS: f64 = 1.0;
/// The objective for a checkout session from first scan to outcome; a bucket sits here.
pub const SESSION_DURATION_OBJECTIVE_SECONDS: f64 = 60.0;

/// Buckets of `lanehub_vipps_request_duration_seconds`: the 1 s objective, the 3 s connect
/// timeout and the 10 s request timeout are bounds.
pub const VIPPS_REQUEST_DURATION_BUCKETS: &[f64] =
    &[0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0];
/// Buckets of `lanehub_session_duration_seconds`: the 60 s objective and Vipps' 10 min payment
/// expiry are bounds.
pub const SESSION_DURATION_BUCKETS: &[f64] = &[
    5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 900.0,
];
/// Buckets of `lanehub_vipps_rate_limit_wait_seconds`: 12 s is the spacing of Vipps' 5 per
/// minute mutation limit.
pub const RATE_LIMIT_WAIT_BUCKETS: &[f64] =
    &[0.01, 0.05, 0.1, 0.5, 1.0, 2.0, 5.0, 12.0, 30.0, 60.0];

/// How often the upkeep thread drains histogram samples between scrapes.
pub const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Declares a closed set of label values: an enum, `ALL`, `LABELS` (the same, as text) and
/// `as_str()`.
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $( $(#[$vmeta])* $variant ),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every value's label, in the order of `ALL`.
            pub const LABELS: &'static [&'static str] = &[$($label),+];

            /// The metric label.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $label),+ }
            }
        }
    };
}

label_enum! {
    /// Why the supervisor restarted a lane (`lanehub_lane_restarts_total{reason}`).
    RestartReason {
        /// The lane actor panicked.
        Panic => "panic",
        /// The lane actor stopped without being told to.
        Stopped => "stopped",
    }
}

label_enum! {
    /// The result of one Vipps call (`lanehub_vipps_requests_total{outcome}`). Counted once per
    /// HTTP attempt, and once for a call lanehub refused before the wire (circuit open,
    /// overloaded). The error ratio counts everything except `ok` and `client_error`.
    RequestOutcome {
        /// A 2xx answer.
        Ok => "ok",
        /// Another 4xx (expected business answers: pending login, 404, 409, 422, 423).
        ClientError => "client_error",
        /// 401 or 403: credentials or subscription wrong.
        Unauthorized => "unauthorized",
        /// 429.
        RateLimited => "rate_limited",
        /// 5xx.
        ServerError => "server_error",
        /// No answer within the timeout.
        Timeout => "timeout",
        /// The connection failed or broke.
        Connection => "connection",
        /// A 2xx answer whose body lanehub could not read.
        Decode => "decode",
        /// Refused by lanehub: the circuit breaker is open.
        CircuitOpen => "circuit_open",
        /// Refused by lanehub: too many requests waiting in its rate limiter.
        Overloaded => "overloaded",
    }
}

impl RequestOutcome {
    /// The outcome of an HTTP answer with this status.
    pub fn from_status(status: u16) -> RequestOutcome {
        match status {
            200..=299 => RequestOutcome::Ok,
            401 | 403 => RequestOutcome::Unauthorized,
            429 => RequestOutcome::RateLimited,
            500..=599 => RequestOutcome::ServerError,
            _ => RequestOutcome::ClientError,
        }
    }
}

label_enum! {
    /// Why a Vipps call was sent again (`lanehub_vipps_retries_total{reason}`).
    RetryReason {
        Timeout => "timeout",
        Connection => "connection",
        ServerError => "server_error",
        /// 429, after waiting for `Retry-After`.
        RateLimited => "rate_limited",
        /// 423 Locked.
        Locked => "locked",
        /// 401 on a cached access token: fetched a new one and tried again.
        TokenExpired => "token_expired",
    }
}

label_enum! {
    /// Which webhook arrived (`lanehub_webhooks_received_total{event}`); `unknown` when the
    /// name is not one lanehub knows or the body could not be trusted (bad signature).
    WebhookEvent {
        Created => "created",
        Authorized => "authorized",
        Aborted => "aborted",
        Expired => "expired",
        Cancelled => "cancelled",
        Captured => "captured",
        Refunded => "refunded",
        Terminated => "terminated",
        /// `login.merchant-initiated.ping.v1`.
        LoginPing => "login_ping",
        Unknown => "unknown",
    }
}

impl WebhookEvent {
    /// The label for a Vipps event name such as `epayments.payment.captured.v1`.
    pub fn from_vipps_name(name: &str) -> WebhookEvent {
        match name {
            "epayments.payment.created.v1" => WebhookEvent::Created,
            "epayments.payment.authorized.v1" => WebhookEvent::Authorized,
            "epayments.payment.aborted.v1" => WebhookEvent::Aborted,
            "epayments.payment.expired.v1" => WebhookEvent::Expired,
            "epayments.payment.cancelled.v1" => WebhookEvent::Cancelled,
            "epayments.payment.captured.v1" => WebhookEvent::Captured,
            "epayments.payment.refunded.v1" => WebhookEvent::Refunded,
            "epayments.payment.terminated.v1" => WebhookEvent::Terminated,
            "login.merchant-initiated.ping.v1" => WebhookEvent::LoginPing,
            _ => WebhookEvent::Unknown,
        }
    }
}

label_enum! {
    /// What lanehub did with a webhook (`lanehub_webhooks_received_total{verdict}`).
    WebhookVerdict {
        /// Verified and handed to the lane.
        Accepted => "accepted",
        /// Verified, but already seen.
        Duplicate => "duplicate",
        /// Missing or wrong signature, or body hash mismatch.
        BadSignature => "bad_signature",
        /// Signed, but not a body lanehub can read.
        Malformed => "malformed",
        /// About a payment or login lanehub does not know.
        UnknownReference => "unknown_reference",
    }
}

label_enum! {
    /// How the enrollment follower finished an enrollment a session had given up on
    /// (`lanehub_late_enrollments_total{outcome}`); also the store's `late_enrollments.outcome`.
    LateEnrollmentOutcome {
        /// The customer consented after all: the member was stored.
        Enrolled => "enrolled",
        /// The customer declined in the Vipps app.
        Denied => "denied",
        /// The customer did not answer before the Login (or the follower's window) expired.
        Expired => "expired",
        /// Consented, but userinfo or the member store kept failing until the window passed.
        Failed => "failed",
    }
}

label_enum! {
    /// A bounded queue whose depth and drops are exported (`lanehub_queue_depth{queue}`).
    Queue {
        /// Lane actors' mailboxes, summed over lanes.
        LaneMailbox => "lane_mailbox",
        /// Lanes' journal-and-call pipelines, summed over lanes.
        LanePipeline => "lane_pipeline",
        /// The Vipps client actor's mailbox.
        VippsMailbox => "vipps_mailbox",
        /// Scanner threads to their lane.
        ScannerEvents => "scanner_events",
        /// Updates waiting to be sent to lane terminals, summed over terminals.
        TerminalUpdates => "terminal_updates",
        /// Journal writes a lane keeps to write again once the store takes writes.
        JournalBacklog => "journal_backlog",
    }
}

label_enum! {
    /// What went wrong with a store request (`lanehub_store_errors_total{kind}`).
    StoreFault {
        /// The disk (or the database's size limit) is full.
        DiskFull => "disk_full",
        /// The operating system reported an I/O error.
        Io => "io",
        /// The file or its directory cannot be written (permissions, a read-only mount).
        ReadOnly => "read_only",
        /// Another process held the database lock too long.
        Busy => "busy",
        /// The database file is damaged.
        Corrupt => "corrupt",
        /// SQLite rolled back or did not commit the transaction.
        NotCommitted => "not_committed",
        /// The data broke a rule of the schema (a bug, or a hand-edited database).
        Constraint => "constraint",
        /// The store thread has stopped.
        Closed => "closed",
        /// Anything else.
        Other => "other",
    }
}

// Labels owned by other modules. Each list must equal its owner's labels; tests beside the
// owners check that (the session module's `STATE_LABELS`, `Outcome::LABELS`,
// `EnrollmentOutcome::LABELS`, `Membership::LABELS`; the scanner's `ScanKind::label`).

/// `state` of `lanehub_lane_session_state`: `crate::session::STATE_LABELS`.
pub const SESSION_STATES: &[&str] = &[
    "idle",
    "awaiting_qr_exchange",
    "awaiting_membership",
    "ready_for_payment",
    "awaiting_login_start",
    "awaiting_consent",
    "awaiting_member_store",
    "awaiting_payment_creation",
    "awaiting_payment",
    "awaiting_capture",
    "awaiting_cancel",
];

/// `outcome` of `lanehub_sessions_total`, `lanehub_session_duration_seconds` and
/// `lanehub_payments_total` (a payment ends with its session's outcome):
/// `crate::session::Outcome::LABELS`.
pub const SESSION_OUTCOMES: &[&str] = &[
    "paid",
    "declined",
    "expired",
    "cancelled",
    "failed",
    "unavailable",
    "abandoned",
    "closed",
    "interrupted",
];

/// `outcome` of `lanehub_enrollments_total`: `crate::session::EnrollmentOutcome::LABELS`.
pub const ENROLLMENT_OUTCOMES: &[&str] = &[
    "enrolled",
    "denied",
    "expired",
    "failed",
    "unavailable",
    "abandoned",
];

/// `result` of `lanehub_membership_checks_total`: `crate::session::Membership::LABELS`.
pub const MEMBERSHIP_RESULTS: &[&str] = &["member", "non_member", "unknown"];

/// `kind` of `lanehub_scans_total`: `crate::scanner::ScanKind::label`.
pub const SCAN_KINDS: &[&str] = &["vipps_qr", "product", "unknown"];

/// What kind of series a metric family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    /// The `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
        }
    }
}

/// Where a label's values come from.
#[derive(Debug, Clone, Copy)]
pub enum LabelValues {
    /// A configured lane id; zeroed per lane by [`init_lane`].
    Lane,
    /// A closed list.
    Fixed(&'static [&'static str]),
    /// `Operation::ALL`.
    VippsOperation,
    /// `Api::ALL`.
    VippsApi,
    /// `Currency::ALL`.
    Currency,
    /// This build's version.
    Version,
}

impl LabelValues {
    /// The values known without configuration (none for `Lane`).
    pub fn known(self) -> Vec<&'static str> {
        match self {
            LabelValues::Lane => Vec::new(),
            LabelValues::Fixed(values) => values.to_vec(),
            LabelValues::VippsOperation => Operation::ALL.iter().map(|o| o.as_str()).collect(),
            LabelValues::VippsApi => Api::ALL.iter().map(|a| a.as_str()).collect(),
            LabelValues::Currency => Currency::ALL.iter().map(|c| c.as_str()).collect(),
            LabelValues::Version => vec![VERSION],
        }
    }
}

/// One label of a metric family.
#[derive(Debug, Clone, Copy)]
pub struct LabelDef {
    pub name: &'static str,
    pub values: LabelValues,
}

/// One metric family: the specification everything else is derived from.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Option<Unit>,
    pub help: &'static str,
    pub labels: &'static [LabelDef],
    /// Upper bounds of a histogram's buckets; empty for other kinds.
    pub buckets: &'static [f64],
}

impl MetricDef {
    /// Whether the family has a `lane` label (zeroed by [`init_lane`], not [`init_static`]).
    pub fn per_lane(&self) -> bool {
        self.labels
            .iter()
            .any(|l| matches!(l.values, LabelValues::Lane))
    }

    /// The names of the series this family exposes (`_bucket`, `_sum`, `_count` for histograms).
    pub fn series_names(&self) -> Vec<String> {
        match self.kind {
            MetricKind::Histogram => ["_bucket", "_sum", "_count"]
                .iter()
                .map(|suffix| format!("{}{suffix}", self.name))
                .collect(),
            MetricKind::Counter | MetricKind::Gauge => vec![self.name.to_owned()],
        }
    }
}

const VERSION: &str = env!("CARGO_PKG_VERSION");

const LANE: LabelDef = LabelDef {
    name: "lane",
    values: LabelValues::Lane,
};
const OPERATION: LabelDef = LabelDef {
    name: "operation",
    values: LabelValues::VippsOperation,
};

const fn fixed(name: &'static str, values: &'static [&'static str]) -> LabelDef {
    LabelDef {
        name,
        values: LabelValues::Fixed(values),
    }
}

const fn def(
    name: &'static str,
    kind: MetricKind,
    unit: Option<Unit>,
    labels: &'static [LabelDef],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind,
        unit,
        help,
        labels,
        buckets: &[],
    }
}

const fn histogram(
    name: &'static str,
    labels: &'static [LabelDef],
    buckets: &'static [f64],
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind: MetricKind::Histogram,
        unit: Some(Unit::Seconds),
        help,
        labels,
        buckets,
    }
}

/// Every family recorded through the `metrics` facade.
pub const RECORDED: &[MetricDef] = &[
    def(
        BUILD_INFO,
        Gauge,
        None,
        &[LabelDef {
            name: "version",
            values: LabelValues::Version,
        }],
        "Always 1; the version label says which lanehub runs.",
    ),
    def(
        LANE_UP,
        Gauge,
        None,
        &[LANE],
        "1 while the lane's actor runs, 0 while it is down or restarting.",
    ),
    def(
        LANE_RESTARTS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("reason", RestartReason::LABELS)],
        "Times the supervisor restarted the lane, by why it had stopped.",
    ),
    def(
        LANE_SESSION_STATE,
        Gauge,
        None,
        &[LANE, fixed("state", SESSION_STATES)],
        "1 for the state the lane's checkout session is in, 0 for the others.",
    ),
    def(
        SCANS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("kind", SCAN_KINDS)],
        "Scans the lane received, by what was scanned.",
    ),
    def(
        SCANNER_CONNECTED,
        Gauge,
        None,
        &[LANE],
        "Scanners of the lane that are connected.",
    ),
    def(
        TERMINALS_CONNECTED,
        Gauge,
        None,
        &[LANE],
        "Lane terminals connected to the lane (WebSocket).",
    ),
    def(
        SESSIONS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("outcome", SESSION_OUTCOMES)],
        "Checkout sessions finished, by outcome.",
    ),
    histogram(
        SESSION_DURATION,
        &[fixed("outcome", SESSION_OUTCOMES)],
        SESSION_DURATION_BUCKETS,
        "Time from a session's first customer scan to its outcome.",
    ),
    def(
        MEMBERSHIP_CHECKS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("result", MEMBERSHIP_RESULTS)],
        "Scanned customers looked up in the loyalty club, by result.",
    ),
    def(
        ENROLLMENTS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("outcome", ENROLLMENT_OUTCOMES)],
        "Loyalty club enrollments (Vipps Login from phone number) finished, by outcome.",
    ),
    def(
        LATE_ENROLLMENTS,
        Counter,
        Some(Unit::Count),
        &[fixed("outcome", LateEnrollmentOutcome::LABELS)],
        "Enrollments a session gave up on that the enrollment follower finished, by outcome.",
    ),
    def(
        PAYMENTS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("outcome", SESSION_OUTCOMES)],
        "Payment requests finished, by their session's outcome; their sum is the payments requested.",
    ),
    def(
        PAYMENT_PENDING_SINCE,
        Gauge,
        Some(Unit::Seconds),
        &[LANE],
        "Unix time at which the lane's unfinished payment was requested; 0 when it has none.",
    ),
    def(
        PAYMENTS_CAPTURED_MINOR_UNITS,
        Counter,
        Some(Unit::Count),
        &[LabelDef {
            name: "currency",
            values: LabelValues::Currency,
        }],
        "Money captured, in minor units (øre, cents) of the currency.",
    ),
    def(
        SESSION_INVALID_TRANSITIONS,
        Counter,
        Some(Unit::Count),
        &[LANE, fixed("state", SESSION_STATES)],
        "Events the lane's session rejected as invalid in its state.",
    ),
    def(
        VIPPS_REQUESTS,
        Counter,
        Some(Unit::Count),
        &[OPERATION, fixed("outcome", RequestOutcome::LABELS)],
        "Vipps calls, once per HTTP attempt, by operation and outcome.",
    ),
    histogram(
        VIPPS_REQUEST_DURATION,
        &[OPERATION],
        VIPPS_REQUEST_DURATION_BUCKETS,
        "Duration of one HTTP attempt to Vipps, by operation.",
    ),
    def(
        VIPPS_RETRIES,
        Counter,
        Some(Unit::Count),
        &[OPERATION, fixed("reason", RetryReason::LABELS)],
        "Vipps calls sent again, by operation and why.",
    ),
    histogram(
        VIPPS_RATE_LIMIT_WAIT,
        &[OPERATION],
        RATE_LIMIT_WAIT_BUCKETS,
        "Time a Vipps call waited in lanehub's rate limiter or for Retry-After.",
    ),
    def(
        VIPPS_CIRCUIT_OPEN,
        Gauge,
        None,
        &[LabelDef {
            name: "api",
            values: LabelValues::VippsApi,
        }],
        "1 while the Vipps API's circuit breaker is open and its calls fail fast.",
    ),
    def(
        WEBHOOKS_RECEIVED,
        Counter,
        Some(Unit::Count),
        &[
            fixed("event", WebhookEvent::LABELS),
            fixed("verdict", WebhookVerdict::LABELS),
        ],
        "Vipps webhooks received, by event and what lanehub did with them.",
    ),
    def(
        WEBHOOKS_LATE,
        Counter,
        Some(Unit::Count),
        &[],
        "Correctly signed webhooks accepted although their x-ms-date was older (or newer) than the tolerance.",
    ),
    def(
        QUEUE_DEPTH,
        Gauge,
        Some(Unit::Count),
        &[fixed("queue", Queue::LABELS)],
        "Messages waiting in a bounded queue, summed over lanes or terminals.",
    ),
    def(
        STORE_QUEUE_DEPTH,
        Gauge,
        Some(Unit::Count),
        &[],
        "Requests waiting for the store (SQLite) thread.",
    ),
    def(
        STORE_ERRORS,
        Counter,
        Some(Unit::Count),
        &[fixed("kind", StoreFault::LABELS)],
        "Store (SQLite) requests that failed, by what went wrong.",
    ),
    def(
        STORE_WRITABLE,
        Gauge,
        None,
        &[],
        "1 while the store takes writes, 0 while it refuses them (a full disk, an I/O error).",
    ),
    def(
        QUEUE_DROPPED,
        Counter,
        Some(Unit::Count),
        &[fixed("queue", Queue::LABELS)],
        "Messages dropped because a bounded queue was full.",
    ),
];

/// The process families, read from `/proc/self` at each scrape (Linux only).
pub const PROCESS: &[MetricDef] = &[
    def(
        PROCESS_CPU_SECONDS,
        Counter,
        Some(Unit::Seconds),
        &[],
        "Total user and system CPU time spent in seconds.",
    ),
    def(
        PROCESS_RESIDENT_MEMORY,
        Gauge,
        Some(Unit::Bytes),
        &[],
        "Resident memory size in bytes.",
    ),
    def(
        PROCESS_VIRTUAL_MEMORY,
        Gauge,
        Some(Unit::Bytes),
        &[],
        "Virtual memory size in bytes.",
    ),
    def(
        PROCESS_OPEN_FDS,
        Gauge,
        None,
        &[],
        "Number of open file descriptors.",
    ),
    def(
        PROCESS_MAX_FDS,
        Gauge,
        None,
        &[],
        "Maximum number of open file descriptors.",
    ),
    def(PROCESS_THREADS, Gauge, None, &[], "Number of OS threads."),
    def(
        PROCESS_START_TIME,
        Gauge,
        Some(Unit::Seconds),
        &[],
        "Start time of the process since the Unix epoch in seconds.",
    ),
];

/// Every family lanehub exports: [`RECORDED`] then [`PROCESS`].
pub fn catalog() -> impl Iterator<Item = &'static MetricDef> {
    RECORDED.iter().chain(PROCESS.iter())
}

/// The family with this name, or the histogram a `_bucket`/`_sum`/`_count` series belongs to.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    catalog().find(|d| d.name == name || d.series_names().iter().any(|s| s == name))
}

/// Why metrics could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A recorder that is not lanehub's is already installed in this process.
    #[error("another metrics recorder is already installed in this process")]
    OtherRecorder,
    /// The Prometheus recorder rejected its configuration.
    #[error("cannot build the Prometheus recorder: {0}")]
    Build(#[source] BuildError),
    /// The upkeep thread could not be started.
    #[error("cannot start the metrics upkeep thread: {0}")]
    Upkeep(#[source] std::io::Error),
}

impl MetricsError {
    /// A short, bounded label for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            MetricsError::OtherRecorder => "other_recorder",
            MetricsError::Build(_) => "build",
            MetricsError::Upkeep(_) => "upkeep",
        }
    }
}

/// The installed recorder: renders the text served at `GET /metrics`. Cheap to clone.
#[derive(Debug, Clone)]
pub struct MetricsHandle {
    prometheus: PrometheusHandle,
}

impl MetricsHandle {
    /// Wraps a recorder's handle (tests build one with [`build_recorder`]).
    pub fn new(prometheus: PrometheusHandle) -> Self {
        Self { prometheus }
    }

    /// The Prometheus text exposition: every recorded family, then the process families.
    pub fn render(&self) -> String {
        let mut text = self.prometheus.render();
        render_process(&mut text);
        text
    }

    /// The exporter's own handle.
    pub fn prometheus(&self) -> &PrometheusHandle {
        &self.prometheus
    }
}

/// The recorder lanehub uses, with every histogram's explicit buckets, not installed.
pub fn build_recorder() -> Result<PrometheusRecorder, BuildError> {
    let mut builder = PrometheusBuilder::new();
    for def in RECORDED.iter().filter(|d| d.kind == MetricKind::Histogram) {
        builder =
            builder.set_buckets_for_metric(Matcher::Full(def.name.to_owned()), def.buckets)?;
    }
    Ok(builder.build_recorder())
}

static INSTALLED: Mutex<Option<MetricsHandle>> = Mutex::new(None);

/// Installs lanehub's recorder as the process' global one, describes every family, zeroes every
/// series that does not depend on lanes and starts the upkeep thread. Idempotent: later calls
/// return the first handle.
pub fn install() -> Result<MetricsHandle, MetricsError> {
    // A poisoned lock only means another install panicked; the Option is still consistent.
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(handle) = installed.as_ref() {
        return Ok(handle.clone());
    }
    let recorder = build_recorder().map_err(MetricsError::Build)?;
    let handle = MetricsHandle::new(recorder.handle());
    metrics::set_global_recorder(recorder).map_err(|_| MetricsError::OtherRecorder)?;
    let upkeep = handle.prometheus.clone();
    // A plain thread, not a tokio task: it outlives any runtime and needs no clock control.
    std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            }
        })
        .map_err(MetricsError::Upkeep)?;
    describe_all();
    init_static();
    *installed = Some(handle.clone());
    Ok(handle)
}

/// Gives every recorded family its help text and unit.
pub fn describe_all() {
    for def in RECORDED {
        let name = def.name;
        let help = def.help;
        match (def.kind, def.unit) {
            (MetricKind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (MetricKind::Counter, None) => metrics::describe_counter!(name, help),
            (MetricKind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (MetricKind::Gauge, None) => metrics::describe_gauge!(name, help),
            (MetricKind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (MetricKind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
}

/// Creates every series that does not depend on lanes at 0 (build info at 1). Never lowers a
/// value already recorded, so calling it again is harmless.
pub fn init_static() {
    for def in RECORDED.iter().filter(|d| !d.per_lane()) {
        for labels in combinations(def, None) {
            register_zero(def, labels);
        }
    }
    metrics::gauge!(BUILD_INFO, "version" => VERSION).set(1.0);
}

/// Creates every series of one lane at 0. Never lowers a value already recorded, so the
/// supervisor may call it again when it restarts the lane.
pub fn init_lane(lane: &LaneId) {
    for def in RECORDED.iter().filter(|d| d.per_lane()) {
        for labels in combinations(def, Some(lane)) {
            register_zero(def, labels);
        }
    }
}

/// Every combination of a family's label values; `lane` fills a lane label.
fn combinations(def: &MetricDef, lane: Option<&LaneId>) -> Vec<Vec<metrics::Label>> {
    let mut combos: Vec<Vec<metrics::Label>> = vec![Vec::new()];
    for label in def.labels {
        let values: Vec<String> = match (label.values, lane) {
            (LabelValues::Lane, Some(lane)) => vec![lane.as_str().to_owned()],
            (LabelValues::Lane, None) => return Vec::new(),
            (values, _) => values.known().into_iter().map(str::to_owned).collect(),
        };
        combos = combos
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |value| {
                    let mut labels = prefix.clone();
                    labels.push(metrics::Label::new(label.name, value.clone()));
                    labels
                })
            })
            .collect();
    }
    combos
}

fn register_zero(def: &MetricDef, labels: Vec<metrics::Label>) {
    let name = def.name;
    // Registering creates the series at 0 and leaves an existing one alone.
    match def.kind {
        MetricKind::Counter => metrics::counter!(name, labels).increment(0),
        MetricKind::Gauge => drop(metrics::gauge!(name, labels)),
        MetricKind::Histogram => drop(metrics::histogram!(name, labels)),
    }
}

// ---- Recording: one function per event, so call sites cannot invent labels. ----

fn lane_label(lane: &LaneId) -> String {
    lane.as_str().to_owned()
}

/// The lane's actor started (`true`) or stopped (`false`).
pub fn lane_up(lane: &LaneId, up: bool) {
    metrics::gauge!(LANE_UP, "lane" => lane_label(lane)).set(if up { 1.0 } else { 0.0 });
}

/// The supervisor restarted the lane.
pub fn lane_restarted(lane: &LaneId, reason: RestartReason) {
    metrics::counter!(LANE_RESTARTS, "lane" => lane_label(lane), "reason" => reason.as_str())
        .increment(1);
}

/// `value` as the `'static` entry of `list`, or `None` (logged) when the list lacks it, so an
/// unexpected label never creates a series.
fn known_label(list: &'static [&'static str], value: &str, what: &str) -> Option<&'static str> {
    let found = list.iter().copied().find(|v| *v == value);
    if found.is_none() {
        tracing::warn!(
            label = what,
            value,
            "metric label value is not declared in lanehub::metrics"
        );
    }
    found
}

/// The lane's session entered `state` (one of [`SESSION_STATES`]): sets it to 1 and every other
/// state to 0.
pub fn session_state(lane: &LaneId, state: &str) {
    SessionStateGauges::new(lane).set(state);
}

/// A lane's session-state gauges, looked up once: a lane changes state several times per
/// checkout and each change sets every state's series.
pub struct SessionStateGauges {
    gauges: Vec<metrics::Gauge>,
}

impl SessionStateGauges {
    pub fn new(lane: &LaneId) -> Self {
        let gauges = SESSION_STATES
            .iter()
            .map(|&s| metrics::gauge!(LANE_SESSION_STATE, "lane" => lane_label(lane), "state" => s))
            .collect();
        SessionStateGauges { gauges }
    }

    /// Sets `state` (one of [`SESSION_STATES`]) to 1 and every other state to 0.
    pub fn set(&self, state: &str) {
        if known_label(SESSION_STATES, state, "state").is_none() {
            return;
        }
        for (&s, gauge) in SESSION_STATES.iter().zip(&self.gauges) {
            gauge.set(if s == state { 1.0 } else { 0.0 });
        }
    }
}

/// The session rejected an event in `state` (one of [`SESSION_STATES`]).
pub fn session_invalid_transition(lane: &LaneId, state: &str) {
    if let Some(state) = known_label(SESSION_STATES, state, "state") {
        metrics::counter!(
            SESSION_INVALID_TRANSITIONS,
            "lane" => lane_label(lane),
            "state" => state
        )
        .increment(1);
    }
}

/// The lane received a scan of `kind` (one of [`SCAN_KINDS`]).
pub fn scan_received(lane: &LaneId, kind: &str) {
    if let Some(kind) = known_label(SCAN_KINDS, kind, "kind") {
        metrics::counter!(SCANS, "lane" => lane_label(lane), "kind" => kind).increment(1);
    }
}

/// How many of the lane's scanners are connected now.
pub fn scanners_connected(lane: &LaneId, connected: usize) {
    metrics::gauge!(SCANNER_CONNECTED, "lane" => lane_label(lane)).set(connected as f64);
}

/// How many terminals are connected to the lane now.
pub fn terminals_connected(lane: &LaneId, connected: usize) {
    metrics::gauge!(TERMINALS_CONNECTED, "lane" => lane_label(lane)).set(connected as f64);
}

/// A checkout session ended with `outcome` (one of [`SESSION_OUTCOMES`]) after `duration`.
pub fn session_finished(lane: &LaneId, outcome: &str, duration: Duration) {
    if let Some(outcome) = known_label(SESSION_OUTCOMES, outcome, "outcome") {
        metrics::counter!(SESSIONS, "lane" => lane_label(lane), "outcome" => outcome).increment(1);
        metrics::histogram!(SESSION_DURATION, "outcome" => outcome).record(duration.as_secs_f64());
    }
}

/// A scanned customer was looked up in the loyalty club (`result` one of
/// [`MEMBERSHIP_RESULTS`]).
pub fn membership_checked(lane: &LaneId, result: &str) {
    if let Some(result) = known_label(MEMBERSHIP_RESULTS, result, "result") {
        metrics::counter!(MEMBERSHIP_CHECKS, "lane" => lane_label(lane), "result" => result)
            .increment(1);
    }
}

/// An enrollment ended with `outcome` (one of [`ENROLLMENT_OUTCOMES`]).
pub fn enrollment_finished(lane: &LaneId, outcome: &str) {
    if let Some(outcome) = known_label(ENROLLMENT_OUTCOMES, outcome, "outcome") {
        metrics::counter!(ENROLLMENTS, "lane" => lane_label(lane), "outcome" => outcome)
            .increment(1);
    }
}

/// The enrollment follower finished a late enrollment.
pub fn late_enrollment_finished(outcome: LateEnrollmentOutcome) {
    metrics::counter!(LATE_ENROLLMENTS, "outcome" => outcome.as_str()).increment(1);
}

/// A payment request ended with its session's `outcome` (one of [`SESSION_OUTCOMES`]); also
/// clears the lane's pending payment.
pub fn payment_finished(lane: &LaneId, outcome: &str) {
    if let Some(outcome) = known_label(SESSION_OUTCOMES, outcome, "outcome") {
        metrics::counter!(PAYMENTS, "lane" => lane_label(lane), "outcome" => outcome).increment(1);
    }
    payment_pending(lane, None);
}

/// The lane's unfinished payment was requested at `since` (wall clock), or it has none.
pub fn payment_pending(lane: &LaneId, since: Option<SystemTime>) {
    let value = since
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    metrics::gauge!(PAYMENT_PENDING_SINCE, "lane" => lane_label(lane)).set(value);
}

/// Money was captured (what `aggregate.capturedAmount` grew by).
pub fn amount_captured(amount: Amount) {
    metrics::counter!(PAYMENTS_CAPTURED_MINOR_UNITS, "currency" => amount.currency.as_str())
        .increment(amount.value);
}

/// One Vipps HTTP attempt (or a call refused before the wire) ended after `duration`. Refused
/// calls are counted but not timed.
pub fn vipps_request(operation: Operation, outcome: RequestOutcome, duration: Duration) {
    let op = operation.as_str();
    metrics::counter!(VIPPS_REQUESTS, "operation" => op, "outcome" => outcome.as_str())
        .increment(1);
    if !matches!(
        outcome,
        RequestOutcome::CircuitOpen | RequestOutcome::Overloaded
    ) {
        metrics::histogram!(VIPPS_REQUEST_DURATION, "operation" => op)
            .record(duration.as_secs_f64());
    }
}

/// A Vipps call is sent again.
pub fn vipps_retry(operation: Operation, reason: RetryReason) {
    metrics::counter!(VIPPS_RETRIES, "operation" => operation.as_str(), "reason" => reason.as_str())
        .increment(1);
}

/// A Vipps call waited `wait` in lanehub's rate limiter or for `Retry-After`.
pub fn vipps_rate_limit_wait(operation: Operation, wait: Duration) {
    metrics::histogram!(VIPPS_RATE_LIMIT_WAIT, "operation" => operation.as_str())
        .record(wait.as_secs_f64());
}

/// The circuit breaker of a Vipps API opened (`true`) or closed (`false`).
pub fn vipps_circuit_open(api: Api, open: bool) {
    metrics::gauge!(VIPPS_CIRCUIT_OPEN, "api" => api.as_str()).set(if open { 1.0 } else { 0.0 });
}

/// A correctly signed webhook arrived with an `x-ms-date` outside the tolerance.
pub fn webhook_late() {
    metrics::counter!(WEBHOOKS_LATE).increment(1);
}

/// A webhook arrived and got a verdict.
pub fn webhook_received(event: WebhookEvent, verdict: WebhookVerdict) {
    metrics::counter!(WEBHOOKS_RECEIVED, "event" => event.as_str(), "verdict" => verdict.as_str())
        .increment(1);
}

/// The depth gauge of a queue: `increment(1.0)` on send, `decrement(1.0)` on receive, or `set`.
pub fn queue_depth(queue: Queue) -> metrics::Gauge {
    metrics::gauge!(QUEUE_DEPTH, "queue" => queue.as_str())
}

/// A message was dropped because the queue was full.
pub fn queue_dropped(queue: Queue) {
    metrics::counter!(QUEUE_DROPPED, "queue" => queue.as_str()).increment(1);
}

// ---- Process metrics, read from /proc/self at scrape time. ----

/// Linux reports CPU times in /proc in USER_HZ ticks, fixed at 100 by the kernel ABI.
const USER_HZ: f64 = 100.0;

/// What `/proc/self` says about this process.
#[derive(Debug, Clone, Default, PartialEq)]
struct ProcessStats {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    threads: Option<u64>,
    start_time_seconds: Option<f64>,
}

impl ProcessStats {
    fn read() -> ProcessStats {
        let read = |path: &str| std::fs::read_to_string(path).ok();
        let mut stats = ProcessStats::default();
        if let Some(stat) = read("/proc/self/stat") {
            let boot_time = read("/proc/stat").as_deref().and_then(parse_boot_time);
            parse_stat(&stat, boot_time, &mut stats);
        }
        if let Some(status) = read("/proc/self/status") {
            stats.resident_bytes = status_kib(&status, "VmRSS:").map(|kib| kib * 1024);
        }
        stats.max_fds = read("/proc/self/limits").as_deref().and_then(parse_max_fds);
        stats.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|dir| dir.count() as u64);
        stats
    }

    fn value(&self, name: &str) -> Option<f64> {
        match name {
            PROCESS_CPU_SECONDS => self.cpu_seconds,
            PROCESS_RESIDENT_MEMORY => self.resident_bytes.map(|v| v as f64),
            PROCESS_VIRTUAL_MEMORY => self.virtual_bytes.map(|v| v as f64),
            PROCESS_OPEN_FDS => self.open_fds.map(|v| v as f64),
            PROCESS_MAX_FDS => self.max_fds.map(|v| v as f64),
            PROCESS_THREADS => self.threads.map(|v| v as f64),
            PROCESS_START_TIME => self.start_time_seconds,
            _ => None,
        }
    }
}

/// Reads `/proc/self/stat`: CPU ticks, threads, start time and virtual size.
fn parse_stat(stat: &str, boot_time: Option<u64>, stats: &mut ProcessStats) {
    // The command name (field 2) may contain spaces and parentheses: fields restart after the
    // last ')'. Index 0 below is field 3 (state).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    if let (Some(utime), Some(stime)) = (field(14), field(15)) {
        stats.cpu_seconds = Some((utime + stime) as f64 / USER_HZ);
    }
    stats.threads = field(20);
    stats.virtual_bytes = field(23);
    if let (Some(start_ticks), Some(boot)) = (field(22), boot_time) {
        stats.start_time_seconds = Some(boot as f64 + start_ticks as f64 / USER_HZ);
    }
}

/// `btime` in `/proc/stat`: the boot time in Unix seconds.
fn parse_boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   1234 kB` line of `/proc/self/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
fn parse_max_fds(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Appends the process families to a text exposition; families `/proc` cannot tell are left
/// out (e.g. on other systems).
fn render_process(out: &mut String) {
    let stats = ProcessStats::read();
    for def in PROCESS {
        if let Some(value) = stats.value(def.name) {
            // Writing to a String cannot fail.
            let _ = write!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n",
                name = def.name,
                help = def.help,
                kind = def.kind.as_str(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(id: &str) -> LaneId {
        id.parse().expect("test lane ids are valid")
    }

    /// Runs `f` against a fresh, local recorder and returns what it renders.
    fn render_with(f: impl FnOnce()) -> String {
        let recorder = build_recorder().expect("the built-in buckets are not empty");
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe_all();
            f();
        });
        handle.render()
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(|v| v.parse().expect("sample values are numbers"))
    }

    #[test]
    fn names_are_unique_and_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for def in catalog() {
            assert!(seen.insert(def.name), "{} declared twice", def.name);
            assert!(!def.help.is_empty(), "{} has no help text", def.name);
            assert_eq!(
                def.kind == MetricKind::Counter,
                def.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                def.name
            );
            assert_eq!(
                def.kind == MetricKind::Histogram,
                !def.buckets.is_empty(),
                "{}: histograms and only histograms have buckets",
                def.name
            );
            assert!(
                def.buckets.windows(2).all(|w| w[0] < w[1]),
                "{}: buckets must increase",
                def.name
            );
        }
    }

    #[test]
    fn histograms_have_a_bucket_at_each_objective() {
        assert!(VIPPS_REQUEST_DURATION_BUCKETS.contains(&VIPPS_LATENCY_OBJECTIVE_SECONDS));
        assert!(SESSION_DURATION_BUCKETS.contains(&SESSION_DURATION_OBJECTIVE_SECONDS));
    }

    #[test]
    fn session_state_sets_exactly_one_state() {
        let l1 = lane("1");
        let text = render_with(|| {
            init_lane(&l1);
            session_state(&l1, "awaiting_payment");
            session_state(&l1, "awaiting_capture");
            session_state(&l1, "no_such_state");
        });
        for state in SESSION_STATES {
            let series = format!("{LANE_SESSION_STATE}{{lane=\"1\",state=\"{state}\"}}");
            let expected = if *state == "awaiting_capture" {
                1.0
            } else {
                0.0
            };
            assert_eq!(sample(&text, &series), Some(expected), "{series}");
        }
        assert!(!text.contains("no_such_state"));
    }

    #[test]
    fn undeclared_label_values_create_no_series() {
        let l1 = lane("1");
        let text = render_with(|| {
            scan_received(&l1, "qr_from_mars");
            session_finished(&l1, "vanished", Duration::from_secs(3));
            membership_checked(&l1, "maybe");
            enrollment_finished(&l1, "postponed");
            payment_finished(&l1, "captured");
            session_invalid_transition(&l1, "dreaming");
            scan_received(&l1, "product");
        });
        for bad in [
            "qr_from_mars",
            "vanished",
            "maybe",
            "postponed",
            "\"captured\"",
            "dreaming",
        ] {
            assert!(!text.contains(bad), "{bad} became a series:\n{text}");
        }
        assert_eq!(
            sample(&text, "lanehub_scans_total{lane=\"1\",kind=\"product\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn init_never_lowers_recorded_values() {
        let l1 = lane("1");
        let text = render_with(|| {
            init_static();
            init_lane(&l1);
            scan_received(&l1, "vipps_qr");
            lane_up(&l1, true);
            amount_captured(Amount::nok(12_345));
            init_static();
            init_lane(&l1);
        });
        assert_eq!(
            sample(&text, "lanehub_scans_total{lane=\"1\",kind=\"vipps_qr\"}"),
            Some(1.0)
        );
        assert_eq!(sample(&text, "lanehub_lane_up{lane=\"1\"}"), Some(1.0));
        assert_eq!(
            sample(
                &text,
                "lanehub_payments_captured_minor_units_total{currency=\"NOK\"}"
            ),
            Some(12_345.0)
        );
        assert_eq!(
            sample(&text, "lanehub_scans_total{lane=\"1\",kind=\"product\"}"),
            Some(0.0)
        );
    }

    #[test]
    fn payment_pending_is_set_and_cleared_by_the_outcome() {
        let l1 = lane("1");
        let series = "lanehub_payment_pending_since_timestamp_seconds{lane=\"1\"}";
        let since = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let text = render_with(|| payment_pending(&l1, Some(since)));
        assert_eq!(sample(&text, series), Some(1_700_000_000.0));
        let text = render_with(|| {
            payment_pending(&l1, Some(since));
            payment_finished(&l1, "paid");
        });
        assert_eq!(sample(&text, series), Some(0.0));
        assert_eq!(
            sample(&text, "lanehub_payments_total{lane=\"1\",outcome=\"paid\"}"),
            Some(1.0)
        );
    }

    #[test]
    fn vipps_requests_are_timed_into_explicit_buckets_unless_refused() {
        let text = render_with(|| {
            vipps_request(
                Operation::PaymentCreate,
                RequestOutcome::Ok,
                Duration::from_millis(700),
            );
            vipps_request(
                Operation::PaymentCreate,
                RequestOutcome::CircuitOpen,
                Duration::ZERO,
            );
        });
        let bucket = |le: &str| {
            sample(
                &text,
                &format!(
                    "lanehub_vipps_request_duration_seconds_bucket{{operation=\"payment_create\",le=\"{le}\"}}"
                ),
            )
        };
        assert_eq!(bucket("0.5"), Some(0.0));
        assert_eq!(bucket("1"), Some(1.0));
        assert_eq!(bucket("+Inf"), Some(1.0));
        assert!(!text.contains("quantile"));
        assert_eq!(
            sample(
                &text,
                "lanehub_vipps_requests_total{operation=\"payment_create\",outcome=\"circuit_open\"}"
            ),
            Some(1.0)
        );
    }

    #[test]
    fn request_outcomes_follow_the_http_status() {
        assert_eq!(RequestOutcome::from_status(201), RequestOutcome::Ok);
        assert_eq!(
            RequestOutcome::from_status(400),
            RequestOutcome::ClientError
        );
        assert_eq!(
            RequestOutcome::from_status(403),
            RequestOutcome::Unauthorized
        );
        assert_eq!(
            RequestOutcome::from_status(423),
            RequestOutcome::ClientError
        );
        assert_eq!(
            RequestOutcome::from_status(429),
            RequestOutcome::RateLimited
        );
        assert_eq!(
            RequestOutcome::from_status(503),
            RequestOutcome::ServerError
        );
    }

    #[test]
    fn webhook_events_map_from_vipps_names() {
        assert_eq!(
            WebhookEvent::from_vipps_name("epayments.payment.captured.v1"),
            WebhookEvent::Captured
        );
        assert_eq!(
            WebhookEvent::from_vipps_name("login.merchant-initiated.ping.v1"),
            WebhookEvent::LoginPing
        );
        assert_eq!(
            WebhookEvent::from_vipps_name("epayments.payment.captured.v2"),
            WebhookEvent::Unknown
        );
    }

    #[test]
    fn proc_files_are_parsed() {
        // A command name with spaces and a ')' must not shift the fields.
        let stat = "4242 (lane hub) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 50 0 0 20 0 7 0 12345 104857600 2560 18446744073709551615";
        let mut stats = ProcessStats::default();
        parse_stat(stat, Some(1_700_000_000), &mut stats);
        assert_eq!(stats.cpu_seconds, Some(3.0));
        assert_eq!(stats.threads, Some(7));
        assert_eq!(stats.virtual_bytes, Some(104_857_600));
        assert_eq!(stats.start_time_seconds, Some(1_700_000_123.45));
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(
            status_kib("Name:\tlanehub\nVmRSS:\t   20480 kB\n", "VmRSS:"),
            Some(20_480)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(limits), Some(1024));
        assert_eq!(parse_max_fds("garbage"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_families_render_on_linux() {
        let mut text = String::new();
        render_process(&mut text);
        for def in PROCESS {
            assert!(
                text.contains(&format!("# TYPE {} {}\n", def.name, def.kind.as_str())),
                "{} missing from:\n{text}",
                def.name
            );
        }
    }
}
