//! Every metric lanehub exports, declared in one place with its help text; dashboards use only
//! these names. Labels are bounded enums; the `store` label comes from Prometheus' scrape config.

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
/// `lanehub_vipps_circuit_open`: 1 while the circuit breaker fails fast.
pub const VIPPS_CIRCUIT_OPEN: &str = "lanehub_vipps_circuit_open";
/// `lanehub_webhooks_received_total{event, verdict}`.
pub const WEBHOOKS_RECEIVED: &str = "lanehub_webhooks_received_total";
/// `lanehub_store_queue_depth`: requests waiting for the store thread.
pub const STORE_QUEUE_DEPTH: &str = "lanehub_store_queue_depth";
/// `lanehub_lane_invalid_transitions_total{lane}`: events the session had no transition for.
pub const LANE_INVALID_TRANSITIONS: &str = "lanehub_lane_invalid_transitions_total";
/// `lanehub_lane_pipeline_drops_total{lane}`: effects dropped because a lane's pipeline was full.
pub const LANE_PIPELINE_DROPS: &str = "lanehub_lane_pipeline_drops_total";
