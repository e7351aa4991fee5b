//! `lanehub bench vipps` through the real binary: a short run prints one JSON object with every
//! figure, accounts for every offered call, and provokes no 429. No timing is asserted.

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

fn number(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("{path} is missing or not a number in {v}"))
}

#[test]
fn a_short_vipps_bench_reports_every_figure_and_no_429() {
    let out = lanehub(&[
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).expect("UTF-8 output");
    let report: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e}): {stdout}"));

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
    let out = lanehub(&["bench", "vipps", "--ceiling", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--ceiling"), "{stderr}");
}
