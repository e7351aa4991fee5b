//! `lanehub scanner decode` and `scanner list` through the real binary.
//!
//! The decode tests read the recorded vectors from `../shared/scanner-vectors` or
//! `LANEHUB_SCANNER_VECTORS`; without them they warn and pass, except under CI (`CI=true`).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde::Deserialize;
use serde_json::Value;

use crate::scanner_vectors::vectors_dir;

#[derive(Debug, Deserialize)]
struct Vector {
    file: String,
    protocol: String,
    layout: Option<String>,
    scans: Vec<Value>,
}

fn manifest(dir: &Path) -> Vec<Vector> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("readable manifest");
    serde_json::from_str(&text).expect("well-formed manifest")
}

/// Runs `lanehub <args>` with `stdin` as its input.
fn lanehub(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lanehub"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the lanehub binary starts");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    // Written from another thread so a full stdout pipe cannot deadlock the test.
    let writer = std::thread::spawn(move || input.write_all(&stdin));
    let output = child.wait_with_output().expect("lanehub runs to the end");
    writer
        .join()
        .expect("the writer thread does not panic")
        .expect("stdin accepted");
    output
}

fn json_lines(output: &Output) -> Vec<Value> {
    String::from_utf8(output.stdout.clone())
        .expect("UTF-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

fn decode_args(vector: &Vector) -> Vec<&str> {
    let mut args = vec!["scanner", "decode", "--protocol", vector.protocol.as_str()];
    if let Some(layout) = &vector.layout {
        args.extend(["--layout", layout.as_str()]);
    }
    args
}

/// The kind the scanned texts of the vectors must be classified as.
fn expected_kind(text: &str) -> &'static str {
    if text.starts_with("https://qr.vipps.no/28/2/01/031/47") {
        "vipps_qr"
    } else if text == "7038010009457" {
        "product"
    } else {
        panic!("no expected kind for a vector text of {} bytes", text.len())
    }
}

#[test]
fn decode_prints_one_json_line_per_scan_of_every_vector() {
    let Some(dir) = vectors_dir("scanner CLI vector tests") else {
        return;
    };
    for vector in manifest(&dir) {
        let input = std::fs::read(dir.join(&vector.file)).expect("readable vector");
        let output = lanehub(&decode_args(&vector), &input);
        assert!(
            output.status.success(),
            "{}: {:?}, stderr: {}",
            vector.file,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let lines = json_lines(&output);
        assert_eq!(lines.len(), vector.scans.len(), "{}", vector.file);
        for (line, expected) in lines.iter().zip(&vector.scans) {
            assert_eq!(line["text"], expected["text"], "{}", vector.file);
            assert_eq!(line["symbology"], expected["symbology"], "{}", vector.file);
            let text = line["text"].as_str().expect("text is a string");
            assert_eq!(line["kind"], expected_kind(text), "{}", vector.file);
            if line["kind"] == "vipps_qr" {
                assert_eq!(line["msisdn_masked"], "47******67", "{}", vector.file);
            }
        }
    }
}

#[test]
fn decode_reads_a_stream_of_several_scans() {
    let Some(dir) = vectors_dir("scanner CLI vector tests") else {
        return;
    };
    let vectors: Vec<Vector> = manifest(&dir)
        .into_iter()
        .filter(|v| v.protocol == "hid-pos")
        .collect();
    let mut input = Vec::new();
    let mut expected = Vec::new();
    for v in &vectors {
        input.extend(std::fs::read(dir.join(&v.file)).expect("readable vector"));
        input.push(b'\n');
        expected.extend(v.scans.iter().map(|s| s["text"].clone()));
    }
    let output = lanehub(&["scanner", "decode", "--protocol", "hid-pos"], &input);
    assert!(output.status.success());
    let texts: Vec<Value> = json_lines(&output)
        .into_iter()
        .map(|l| l["text"].clone())
        .collect();
    assert_eq!(texts, expected);
}

#[test]
fn bad_lines_are_named_on_stderr_and_decoding_goes_on() {
    let input = b"# a comment\n\
        00 00 1e 00 00 00 00 00\n\
        00 00 zz 00 00 00 00 00\n\
        00 00 00 00 00 00 00 00\n\
        \n\
        00 00 28 00 00 00 00 00\n\
        00 00 00 00 00\n";
    let output = lanehub(
        &[
            "scanner",
            "decode",
            "--protocol",
            "keyboard",
            "--layout",
            "no",
        ],
        input,
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3: `zz` is not hex"), "{stderr}");
    assert!(
        stderr.contains("line 7: report has 5 bytes, expected 8"),
        "{stderr}"
    );
    // The good lines around the bad one still make a scan.
    let lines = json_lines(&output);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["text"], "1");
    assert_eq!(lines[0]["kind"], "unknown");
}

#[test]
fn an_unknown_protocol_is_a_usage_error() {
    let output = lanehub(&["scanner", "decode", "--protocol", "serial"], b"");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("hid-pos"));
}

#[test]
fn list_prints_json_or_says_why_it_cannot() {
    let output = lanehub(&["scanner", "list", "--json"], b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        let devices: Value = serde_json::from_slice(&output.stdout).expect("a JSON array");
        let devices = devices.as_array().expect("an array of devices");
        for d in devices {
            for field in [
                "vid",
                "pid",
                "serial",
                "usage_page",
                "usage",
                "path",
                "manufacturer",
                "product",
            ] {
                assert!(d.get(field).is_some(), "{field} missing in {d}");
            }
        }
        if devices.is_empty() {
            assert!(stderr.contains("no HID devices found"), "{stderr}");
        }
    } else {
        assert!(stderr.contains("cannot initialise hidapi"), "{stderr}");
    }
}
