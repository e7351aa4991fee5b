//! `lanehub demo` through the real binary: it announces where it listens and which tokens open
//! its lanes, prints progress lines, completes paid checkouts, and `/metrics` counts them. It
//! refuses remote Vipps mode with a clear error.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::process::{BIN, Process};

/// A progress line's `key=value` numbers, or `None` for other lines.
fn progress(line: &str) -> Option<HashMap<String, u64>> {
    let rest = line.strip_prefix("demo: ")?;
    if !rest.contains("checkouts=") {
        return None;
    }
    rest.split_whitespace()
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| v.parse().ok().map(|v| (k.to_owned(), v)))
        .collect()
}

/// GET `path` over plain HTTP/1.0; the body, or `None` once lanehub has stopped listening.
fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1);
    assert_eq!(status, Some("200"), "GET {path}: {head}");
    Some(body.to_owned())
}

/// The sum of `lanehub_payments_total{…,outcome="paid"}` over lanes.
fn paid_in_metrics(text: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with("lanehub_payments_total{") && l.contains("outcome=\"paid\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn demo_completes_paid_checkouts_and_metrics_count_them() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut child = Command::new(BIN)
        .args(["demo", "--lanes", "2", "--duration", "8"])
        .env_remove("LANEHUB_CONFIG")
        .env("LANEHUB__API__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__SIM__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__STORE__DATA_DIR", data.path())
        .env("LANEHUB__LOG__LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut running = Process::killed_at_end(child);

    let mut lines = BufReader::new(stdout).lines();
    let first = lines
        .next()
        .expect("a first line")
        .expect("stdout is UTF-8");
    let addr = first
        .strip_prefix("lanehub listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line: {first:?}"))
        .to_owned();

    let mut all = vec![first.clone()];
    let mut summaries = Vec::new();
    let mut paid_metric = 0.0_f64;
    // Read until the demo ends at --duration; /metrics is read at each progress line while
    // lanehub still listens.
    for line in lines {
        let line = line.expect("stdout is UTF-8");
        if let Some(numbers) = progress(&line) {
            if let Some(text) = http_get(&addr, "/metrics") {
                paid_metric = paid_metric.max(paid_in_metrics(&text));
            }
            summaries.push(numbers);
        }
        all.push(line);
    }
    let status = running.child.wait().expect("the demo ends");
    let transcript = all.join("\n");
    eprintln!("{transcript}");
    assert!(status.success(), "{status}\n{transcript}");

    for token in ["demo-lane-1-token", "demo-lane-2-token"] {
        assert!(
            transcript.contains(token),
            "{token} not printed:\n{transcript}"
        );
    }
    assert!(summaries.len() >= 2, "progress lines:\n{transcript}");
    let last = summaries.last().expect("at least two summaries");
    assert_eq!(last["lanes"], 2, "{transcript}");
    assert!(last["checkouts"] > 0 && last["paid"] > 0, "{transcript}");
    assert!(last["paid"] <= last["checkouts"], "{transcript}");
    assert!(
        paid_metric > 0.0,
        "lanehub_payments_total shows no paid payment while the demo ran:\n{transcript}"
    );
}

#[test]
fn demo_refuses_remote_vipps_mode() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let out = Command::new(BIN)
        .args(["demo", "--lanes", "1"])
        .env_remove("LANEHUB_CONFIG")
        .env("LANEHUB__VIPPS__MODE", "remote")
        // Remote mode refuses the shipped demo tokens before the demo is asked.
        .env("LANEHUB__API__ADMIN_TOKEN", "a-real-admin-token-0123")
        .env("LANEHUB__LANES__0__TOKEN", "a-real-lane-token-0001")
        .env("LANEHUB__LANES__1__TOKEN", "a-real-lane-token-0002")
        .env("LANEHUB__STORE__DATA_DIR", data.path())
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("vipps.mode = \"remote\"") && stderr.contains("simulator"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing started");
}

#[test]
fn demo_checks_its_options() {
    for (args, complaint) in [
        (&["demo", "--lanes", "0"][..], "--lanes"),
        (&["demo", "--lanes", "100"][..], "--lanes"),
        (&["demo", "--pause-scale", "fast"][..], "not a number"),
        (&["demo", "--duration", "0"][..], "--duration"),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .output()
            .expect("the binary runs");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(complaint), "{args:?}: {stderr}");
    }
}
