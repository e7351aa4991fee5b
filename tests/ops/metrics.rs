//! The exposition lanehub serves at `/metrics`: every family of the table with help and
//! type, real histograms, zeros for every known series, and a clean `promtool check metrics`.
//!
//! One process installs the global recorder once, so every assertion works on one rendering.

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use lanehub::domain::{Currency, LaneId};
use lanehub::metrics::{self, MetricKind};
use lanehub::vipps::{Api, Operation};

/// The table: name and type. The catalogue may hold more, never less.
const TABLE: &[(&str, &str)] = &[
    ("lanehub_build_info", "gauge"),
    ("lanehub_lane_up", "gauge"),
    ("lanehub_lane_restarts_total", "counter"),
    ("lanehub_lane_session_state", "gauge"),
    ("lanehub_scans_total", "counter"),
    ("lanehub_scanner_connected", "gauge"),
    ("lanehub_terminals_connected", "gauge"),
    ("lanehub_sessions_total", "counter"),
    ("lanehub_session_duration_seconds", "histogram"),
    ("lanehub_membership_checks_total", "counter"),
    ("lanehub_enrollments_total", "counter"),
    ("lanehub_payments_total", "counter"),
    ("lanehub_payments_captured_minor_units_total", "counter"),
    ("lanehub_vipps_requests_total", "counter"),
    ("lanehub_vipps_request_duration_seconds", "histogram"),
    ("lanehub_vipps_retries_total", "counter"),
    ("lanehub_vipps_rate_limit_wait_seconds", "histogram"),
    ("lanehub_vipps_circuit_open", "gauge"),
    ("lanehub_webhooks_received_total", "counter"),
    ("lanehub_webhooks_late_total", "counter"),
];

fn lane(id: &str) -> LaneId {
    id.parse().expect("test lane ids are valid")
}

/// Installs metrics (twice: install must be idempotent), zeroes two lanes and renders.
fn rendered() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let handle = metrics::install().expect("first install succeeds");
        let again = metrics::install().expect("a second install returns the first handle");
        metrics::init_lane(&lane("1"));
        metrics::init_lane(&lane("till-2"));
        let text = again.render();
        assert!(handle.render().contains("lanehub_lane_up{lane=\"till-2\"}"));
        text
    })
}

/// `# HELP` and `# TYPE` lines by family name.
fn headers(text: &str) -> (HashMap<&str, &str>, HashMap<&str, &str>) {
    let mut help = HashMap::new();
    let mut types = HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            help.insert(name, text);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE lines name a type");
            types.insert(name, kind);
        }
    }
    (help, types)
}

/// The value of the series written exactly as `series` (name and labels in render order).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.parse().expect("sample values are numbers"))
}

/// Sample lines (name and labels) of a family, or of one series name of it.
fn samples<'a>(text: &'a str, series_name: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(series_name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .collect()
}

#[test]
fn every_family_of_the_table_has_help_and_type() {
    let text = rendered();
    let (help, types) = headers(text);
    for (name, kind) in TABLE {
        assert!(
            help.get(name).is_some_and(|h| !h.is_empty()),
            "{name} has no HELP line"
        );
        assert_eq!(types.get(name), Some(kind), "{name} has the wrong TYPE");
        let def = metrics::find(name).expect("every table name is in the catalogue");
        assert_eq!(def.kind.as_str(), *kind);
    }
    // Everything rendered is declared, and every declared family is rendered.
    for name in types.keys() {
        assert!(
            metrics::find(name).is_some(),
            "{name} is rendered but not declared in lanehub::metrics"
        );
    }
    for def in metrics::catalog() {
        assert!(
            types.contains_key(def.name),
            "{} is declared but not rendered after install + init_lane",
            def.name
        );
    }
}

#[test]
fn histograms_are_histograms_with_the_declared_buckets() {
    let text = rendered();
    assert!(!text.contains("quantile="), "no summaries");
    for def in metrics::catalog().filter(|d| d.kind == MetricKind::Histogram) {
        let buckets = samples(text, &format!("{}_bucket", def.name));
        assert!(!buckets.is_empty(), "{} has no _bucket series", def.name);
        for le in def.buckets {
            let le = format!("le=\"{le}\"");
            assert!(
                buckets.iter().any(|l| l.contains(&le)),
                "{} has no bucket {le}",
                def.name
            );
        }
        assert!(buckets.iter().any(|l| l.contains("le=\"+Inf\"")));
        assert!(!samples(text, &format!("{}_sum", def.name)).is_empty());
        assert!(!samples(text, &format!("{}_count", def.name)).is_empty());
    }
    // The request-duration histogram exists at zero for every operation.
    for op in Operation::ALL {
        let series = format!(
            "lanehub_vipps_request_duration_seconds_count{{operation=\"{}\"}}",
            op.as_str()
        );
        assert_eq!(value(text, &series), Some(0.0), "{series}");
    }
}

#[test]
fn every_known_series_exists_at_zero() {
    let text = rendered();
    assert_eq!(
        value(
            text,
            &format!(
                "lanehub_build_info{{version=\"{}\"}}",
                env!("CARGO_PKG_VERSION")
            )
        ),
        Some(1.0)
    );
    for api in Api::ALL {
        let series = format!("lanehub_vipps_circuit_open{{api=\"{}\"}}", api.as_str());
        assert_eq!(value(text, &series), Some(0.0), "{series}");
    }
    for op in Operation::ALL {
        for outcome in metrics::RequestOutcome::LABELS {
            let series = format!(
                "lanehub_vipps_requests_total{{operation=\"{}\",outcome=\"{outcome}\"}}",
                op.as_str()
            );
            assert_eq!(value(text, &series), Some(0.0), "{series}");
        }
    }
    for currency in Currency::ALL {
        let series = format!(
            "lanehub_payments_captured_minor_units_total{{currency=\"{}\"}}",
            currency.as_str()
        );
        assert_eq!(value(text, &series), Some(0.0), "{series}");
    }
    for event in metrics::WebhookEvent::LABELS {
        for verdict in metrics::WebhookVerdict::LABELS {
            let series = format!(
                "lanehub_webhooks_received_total{{event=\"{event}\",verdict=\"{verdict}\"}}"
            );
            assert_eq!(value(text, &series), Some(0.0), "{series}");
        }
    }
}

#[test]
fn per_lane_series_exist_at_zero_for_each_initialised_lane() {
    let text = rendered();
    for lane in ["1", "till-2"] {
        let at = |series: String| {
            assert_eq!(value(text, &series), Some(0.0), "{series}");
        };
        at(format!("lanehub_lane_up{{lane=\"{lane}\"}}"));
        at(format!("lanehub_scanner_connected{{lane=\"{lane}\"}}"));
        at(format!("lanehub_terminals_connected{{lane=\"{lane}\"}}"));
        at(format!(
            "lanehub_payment_pending_since_timestamp_seconds{{lane=\"{lane}\"}}"
        ));
        // Each labelled per-lane series, for every value of its second label.
        let labelled: [(&str, &str, &[&str]); 7] = [
            (
                "lanehub_lane_restarts_total",
                "reason",
                metrics::RestartReason::LABELS,
            ),
            (
                "lanehub_lane_session_state",
                "state",
                metrics::SESSION_STATES,
            ),
            ("lanehub_scans_total", "kind", metrics::SCAN_KINDS),
            (
                "lanehub_sessions_total",
                "outcome",
                metrics::SESSION_OUTCOMES,
            ),
            (
                "lanehub_membership_checks_total",
                "result",
                metrics::MEMBERSHIP_RESULTS,
            ),
            (
                "lanehub_enrollments_total",
                "outcome",
                metrics::ENROLLMENT_OUTCOMES,
            ),
            (
                "lanehub_payments_total",
                "outcome",
                metrics::SESSION_OUTCOMES,
            ),
        ];
        for (name, label, values) in labelled {
            for v in values {
                at(format!("{name}{{lane=\"{lane}\",{label}=\"{v}\"}}"));
            }
        }
    }
    // A lane nobody initialised has no series.
    assert!(!text.contains("lane=\"3\""));
}

#[test]
fn promtool_finds_nothing_to_complain_about() {
    let text = rendered();
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "promtool is not on PATH; CI must install the Debian package `prometheus`"
            );
            eprintln!(
                "\n*** SKIPPED promtool check metrics: promtool is not on PATH \
                 (apt-get install prometheus); under CI=true this fails ***\n"
            );
            return;
        }
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(text.as_bytes())
        .expect("promtool reads its stdin");
    let out = child.wait_with_output().expect("promtool runs to its end");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool check metrics is not clean ({}):\n{report}",
        out.status
    );
}

#[test]
fn every_family_and_label_value_is_documented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md");
    let docs = std::fs::read_to_string(path).expect("docs/metrics.md exists");
    for def in metrics::catalog() {
        assert!(
            docs.contains(&format!("`{}`", def.name)),
            "docs/metrics.md does not describe {}",
            def.name
        );
        for label in def.labels {
            assert!(
                docs.contains(&format!("`{}`", label.name)),
                "docs/metrics.md does not name label {} of {}",
                label.name,
                def.name
            );
            for value in label.values.known() {
                if value != env!("CARGO_PKG_VERSION") {
                    assert!(
                        docs.contains(&format!("`{value}`")),
                        "docs/metrics.md does not explain {}=\"{value}\" of {}",
                        label.name,
                        def.name
                    );
                }
            }
        }
    }
}
