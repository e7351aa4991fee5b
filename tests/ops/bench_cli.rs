//! `lanehub bench` through the real binary. `bench --lanes N --duration S --json`: a short run
//! prints one JSON object with every figure, both sides complete checkouts and every number is
//! finite; with `--rate` (open loop) both sides run the same arrivals. `bench vipps`: every
//! figure, every offered call accounted for, no 429. No timing is asserted.

use std::process::{Command, Output};

use serde_json::Value;

fn lanehub(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lanehub"))
        .args(args)
        .env_remove("LANEHUB_CONFIG")
        .env("RUST_LOG", "warn")
        .output()
        .expect("the lanehub binary runs")
}

/// Runs a benchmark that must succeed and returns the one JSON object it printed.
fn json_report(args: &[&str]) -> Value {
    let out = lanehub(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));
    report
}

/// Runs a command line that must be refused and returns what it said.
fn refused(args: &[&str]) -> String {
    let out = lanehub(args);
    assert!(!out.status.success(), "{args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn number(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is missing or not a number in {v}"))
}

#[test]
fn a_short_vipps_bench_reports_every_figure_and_no_429() {
    let report = json_report(&[
        "bench",
        "vipps",
        "--requests",
        "50",
        "--seconds",
        "1",
        "--ceiling",
        "20",
        "--json",
    ]);

    for path in [
        "/latency/plain/p50_us",
        "/latency/plain/p99_us",
        "/latency/actor/p50_us",
        "/latency/actor/p99_us",
        "/latency/added_p50_us",
        "/latency/added_p99_us",
        "/latency/by_operation/payment_get/added_p50_us",
        "/latency/by_operation/qr_exchange/added_p99_us",
        "/ceiling/achieved_rps",
        "/ceiling/share_of_ceiling",
        "/ceiling/achieved_rps_with_drain",
        "/ceiling/peak_successes_per_second",
    ] {
        number(&report, path);
    }
    assert_eq!(number(&report, "/latency/samples_per_path"), 50.0);
    assert_eq!(number(&report, "/latency/plain/count"), 50.0);
    assert_eq!(number(&report, "/latency/actor/count"), 50.0);
    assert_eq!(number(&report, "/ceiling/ceiling_rps"), 20.0);
    assert_eq!(number(&report, "/ceiling/offered_rps"), 60.0);
    assert_eq!(number(&report, "/ceiling/offered"), 60.0);

    // Every offered call either succeeded or failed with a named kind.
    let failed: f64 = report
        .pointer("/ceiling/failed")
        .and_then(Value::as_object)
        .expect("ceiling.failed is an object")
        .values()
        .map(|v| v.as_f64().expect("a count"))
        .sum();
    assert_eq!(number(&report, "/ceiling/succeeded") + failed, 60.0);
    assert!(number(&report, "/ceiling/succeeded") > 0.0);

    assert_eq!(number(&report, "/latency/http_429"), 0.0);
    assert_eq!(number(&report, "/ceiling/http_429"), 0.0);
    assert_eq!(
        report.pointer("/targets/zero_429"),
        Some(&Value::Bool(true))
    );
}

#[test]
fn a_zero_ceiling_is_refused_with_its_name() {
    let stderr = refused(&["bench", "vipps", "--ceiling", "0"]);
    assert!(stderr.contains("--ceiling"), "{stderr}");
}

#[test]
fn a_short_lanes_bench_reports_every_figure() {
    let report = json_report(&["bench", "--lanes", "3", "--duration", "1", "--json"]);

    for path in [
        "/flows_per_second",
        "/ratio_to_floor",
        "/added_latency_p99_ms",
        "/rss_per_idle_lane_kib",
        "/cpu_seconds_per_flow",
        "/floor_flows_per_second",
        "/floor_cpu_seconds_per_flow",
    ] {
        let v = number(&report, path);
        assert!(v.is_finite(), "{path} = {v}");
    }
    assert!(number(&report, "/flows_per_second") > 0.0);
    assert!(number(&report, "/ratio_to_floor") > 0.0);
    assert!(number(&report, "/rss_per_idle_lane_kib") >= 0.0);
    assert!(number(&report, "/cpu_seconds_per_flow") >= 0.0);
    assert_eq!(number(&report, "/lanes"), 3.0);
    for side in ["lanehub", "floor"] {
        assert!(number(&report, &format!("/{side}/flows")) > 0.0, "{side}");
        assert_eq!(
            number(&report, &format!("/{side}/failed")),
            0.0,
            "{side}: {report}"
        );
        assert_eq!(number(&report, &format!("/{side}/http_429")), 0.0, "{side}");
        for step in [
            "scan_to_check_in_request",
            "pay_command_to_payment_request",
            "vipps_answer_to_terminal_event",
        ] {
            let p99 = number(&report, &format!("/{side}/steps/{step}/p99_ms"));
            assert!(p99.is_finite() && p99 >= 0.0, "{side} {step} p99 = {p99}");
            assert!(number(&report, &format!("/{side}/steps/{step}/count")) > 0.0);
            let added = number(&report, &format!("/added_latency_ms/{step}/p99_ms"));
            assert!(added.is_finite(), "{step} added p99 = {added}");
        }
    }
    // The floor makes as many status reads per checkout as lanehub did (rounded), and one more
    // only when a read came before the customer's approval.
    let target = number(&report, "/lanehub/status_reads_per_flow")
        .round()
        .max(1.0);
    let floor_reads = number(&report, "/floor/status_reads_per_flow");
    assert!(
        (target..target + 1.0).contains(&floor_reads),
        "floor {floor_reads} reads per checkout, lanehub {target}"
    );
}

#[test]
fn a_lanes_bench_without_lanes_is_refused_with_its_name() {
    let stderr = refused(&["bench", "--lanes", "0", "--duration", "1"]);
    assert!(stderr.contains("--lanes"), "{stderr}");
}

#[test]
fn a_short_open_loop_runs_the_same_arrivals_on_both_sides() {
    let report = json_report(&[
        "bench",
        "--lanes",
        "3",
        "--rate",
        "5",
        "--duration",
        "2",
        "--seed",
        "16",
        "--json",
    ]);

    assert_eq!(report["mode"], "open", "{report}");
    assert_eq!(number(&report, "/seed"), 16.0);
    assert_eq!(number(&report, "/rate_per_second"), 5.0);
    let arrivals = number(&report, "/lanehub/arrivals");
    assert!(arrivals > 0.0, "{report}");
    assert_eq!(number(&report, "/floor/arrivals"), arrivals, "{report}");
    assert_eq!(number(&report, "/offered_per_second"), arrivals / 2.0);
    for side in ["lanehub", "floor"] {
        for field in ["failed", "unfinished"] {
            assert_eq!(
                number(&report, &format!("/{side}/{field}")),
                0.0,
                "{side} {field}: {report}"
            );
        }
        // Every arrival ended paid (inside the window or in the drain).
        let completed = number(&report, &format!("/{side}/completed"));
        assert_eq!(completed, arrivals, "{side}: {report}");
        number(&report, &format!("/{side}/arrivals_queued"));
        number(&report, &format!("/{side}/lane_wait/p99_ms"));
    }
    for path in ["/added_latency_p99_ms", "/cpu_seconds_per_flow"] {
        assert!(number(&report, path).is_finite(), "{path}: {report}");
    }
}

#[test]
fn a_rate_that_is_not_a_positive_number_is_refused_with_its_name() {
    for rate in ["0", "abc", "inf"] {
        let stderr = refused(&["bench", "--lanes", "1", "--rate", rate, "--duration", "1"]);
        assert!(
            stderr.contains("--rate") && stderr.contains("checkouts per second"),
            "--rate {rate}: {stderr}"
        );
    }
}
