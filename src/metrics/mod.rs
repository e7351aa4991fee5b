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

use metrics_exporter_prometheus::PrometheusRecorder;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::domain::{Amount, Currency, LaneId};
use crate::procfs::ProcessStats;
use crate::vipps::{Api, Operation};

mod catalog;
#[macro_use]
mod labels;

pub use catalog::*;
pub use labels::*;

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
/// `lanehub_members_outbox_waiting`: enrollments waiting for delivery to the CRM.
pub const MEMBERS_OUTBOX_WAITING: &str = "lanehub_members_outbox_waiting";
/// `lanehub_members_outbox_refused`: enrollments the CRM refused, kept until retried.
pub const MEMBERS_OUTBOX_REFUSED: &str = "lanehub_members_outbox_refused";
/// `lanehub_members_outbox_oldest_age_seconds`: how long the oldest waiting one has waited.
pub const MEMBERS_OUTBOX_OLDEST_AGE: &str = "lanehub_members_outbox_oldest_age_seconds";
/// `lanehub_members_outbox_deliveries_total{outcome}`.
pub const MEMBERS_OUTBOX_DELIVERIES: &str = "lanehub_members_outbox_deliveries_total";
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

/// Why metrics could not be installed.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
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

/// One attempt to deliver an enrollment from the outbox to the CRM.
pub fn outbox_delivery(outcome: OutboxDelivery) {
    metrics::counter!(MEMBERS_OUTBOX_DELIVERIES, "outcome" => outcome.as_str()).increment(1);
}

/// The CRM outbox as it is at `now`.
pub fn outbox_stats(stats: &crate::store::OutboxStats, now: chrono::DateTime<chrono::Utc>) {
    metrics::gauge!(MEMBERS_OUTBOX_WAITING).set(stats.waiting as f64);
    metrics::gauge!(MEMBERS_OUTBOX_REFUSED).set(stats.refused as f64);
    let age = stats
        .oldest
        .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    metrics::gauge!(MEMBERS_OUTBOX_OLDEST_AGE).set(age);
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

/// The value of a `process_*` family in `stats`.
fn process_value(stats: &ProcessStats, name: &str) -> Option<f64> {
    match name {
        PROCESS_CPU_SECONDS => stats.cpu_seconds,
        PROCESS_RESIDENT_MEMORY => stats.resident_bytes.map(|v| v as f64),
        PROCESS_VIRTUAL_MEMORY => stats.virtual_bytes.map(|v| v as f64),
        PROCESS_OPEN_FDS => stats.open_fds.map(|v| v as f64),
        PROCESS_MAX_FDS => stats.max_fds.map(|v| v as f64),
        PROCESS_THREADS => stats.threads.map(|v| v as f64),
        PROCESS_START_TIME => stats.start_time_seconds,
        _ => None,
    }
}

/// Appends the process families to a text exposition; families `/proc` cannot tell are left
/// out (e.g. on other systems).
fn render_process(out: &mut String) {
    let stats = ProcessStats::read();
    for def in PROCESS {
        if let Some(value) = process_value(&stats, def.name) {
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
            let states = SessionStateGauges::new(&l1);
            states.set("awaiting_payment");
            states.set("awaiting_capture");
            states.set("no_such_state");
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
        for (series, value) in [
            ("lanehub_scans_total{lane=\"1\",kind=\"vipps_qr\"}", 1.0),
            ("lanehub_lane_up{lane=\"1\"}", 1.0),
            (
                "lanehub_payments_captured_minor_units_total{currency=\"NOK\"}",
                12_345.0,
            ),
            ("lanehub_scans_total{lane=\"1\",kind=\"product\"}", 0.0),
        ] {
            assert_eq!(sample(&text, series), Some(value), "{series}");
        }
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
        for (status, outcome) in [
            (201, RequestOutcome::Ok),
            (400, RequestOutcome::ClientError),
            (403, RequestOutcome::Unauthorized),
            (423, RequestOutcome::ClientError),
            (429, RequestOutcome::RateLimited),
            (503, RequestOutcome::ServerError),
        ] {
            assert_eq!(RequestOutcome::from_status(status), outcome, "{status}");
        }
    }

    #[test]
    fn webhook_events_map_from_vipps_names() {
        // Every known name maps to its own label, in the list's order.
        for (i, name) in crate::vipps::WEBHOOK_EVENTS.iter().enumerate() {
            let event = WebhookEvent::from_vipps_name(name);
            assert_eq!(event, WebhookEvent::ALL[i]);
            assert!(
                name.contains(event.as_str().trim_start_matches("login_")),
                "{name}"
            );
        }
        assert_eq!(
            WebhookEvent::ALL.len(),
            crate::vipps::WEBHOOK_EVENTS.len() + 1,
            "one label per known event, and unknown"
        );
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
