//! Every metric family with its kind, unit, labels and help text: the one list that
//! `describe_all`, the zero-initialisation, the docs, the dashboards and their tests read.

use metrics::Unit;

use super::*;

use MetricKind::{Counter, Gauge};

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

pub(super) const VERSION: &str = env!("CARGO_PKG_VERSION");

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
        MEMBERS_OUTBOX_WAITING,
        Gauge,
        Some(Unit::Count),
        &[],
        "Enrollments in the CRM outbox waiting for delivery (members.provider = \"http\").",
    ),
    def(
        MEMBERS_OUTBOX_REFUSED,
        Gauge,
        Some(Unit::Count),
        &[],
        "Enrollments the CRM refused for good, kept until `lanehub members outbox retry`.",
    ),
    def(
        MEMBERS_OUTBOX_OLDEST_AGE,
        Gauge,
        Some(Unit::Seconds),
        &[],
        "How long the oldest enrollment waiting in the CRM outbox has waited; 0 when none.",
    ),
    def(
        MEMBERS_OUTBOX_DELIVERIES,
        Counter,
        Some(Unit::Count),
        &[fixed("outcome", OutboxDelivery::LABELS)],
        "Attempts to deliver an enrollment from the outbox to the CRM, by outcome.",
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
