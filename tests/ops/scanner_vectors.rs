//! Every recorded HID report vector decodes exactly to the scans its manifest lists.
//!
//! The vectors live in `../shared/scanner-vectors` next to the repository, or wherever
//! `LANEHUB_SCANNER_VECTORS` points. Without them the test warns and passes, except under CI
//! (`CI=true`), where missing vectors fail it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lanehub::config::{HidProtocol, KeyboardLayout};
use lanehub::scanner::{DEFAULT_INTER_REPORT_TIMEOUT, ReportDecoder, Scan};
use serde::Deserialize;
use tokio::time::Instant;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Vector {
    file: String,
    protocol: HidProtocol,
    layout: Option<KeyboardLayout>,
    scans: Vec<ExpectedScan>,
}

#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct ExpectedScan {
    text: String,
    symbology: Option<String>,
}

/// The vectors directory, or `None` (with a warning that `what` is skipped) when it is absent
/// outside CI.
pub fn vectors_dir(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("LANEHUB_SCANNER_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/scanner-vectors"));
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    let message = format!(
        "scanner vectors not found at {} (set LANEHUB_SCANNER_VECTORS)",
        dir.display()
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{message}");
    }
    // Straight to stderr: the test harness captures `eprintln!`, and this must be seen.
    let _ = writeln!(
        std::io::stderr(),
        "\n*** WARNING: {message}; SKIPPING the {what} ***\n"
    );
    None
}

/// Reports from a vector file: hex bytes, one report per line, `#` comments. Parsed here rather
/// than with the CLI's parser so the vectors check the decoders on their own.
fn reports(path: &Path) -> Vec<Vec<u8>> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.split_whitespace()
                .map(|b| {
                    u8::from_str_radix(b, 16)
                        .unwrap_or_else(|e| panic!("{}: bad byte {b}: {e}", path.display()))
                })
                .collect()
        })
        .collect()
}

#[test]
fn every_vector_decodes_to_its_manifest_scans() {
    let Some(dir) = vectors_dir("scanner vector tests") else {
        return;
    };
    let manifest = std::fs::read_to_string(dir.join("manifest.json")).expect("readable manifest");
    let vectors: Vec<Vector> = serde_json::from_str(&manifest).expect("well-formed manifest");
    assert!(!vectors.is_empty(), "the manifest lists no vectors");

    for vector in &vectors {
        let mut decoder = ReportDecoder::new(
            vector.protocol,
            vector.layout.unwrap_or(KeyboardLayout::Us),
            DEFAULT_INTER_REPORT_TIMEOUT,
        );
        // A scanner sends its reports about 1 ms apart, far inside the inter-report timeout.
        let mut at = Instant::now();
        let mut scans: Vec<Scan> = Vec::new();
        for (i, report) in reports(&dir.join(&vector.file)).iter().enumerate() {
            at += Duration::from_millis(1);
            match decoder.feed(report, at) {
                Ok(Some(scan)) => scans.push(scan),
                Ok(None) => {}
                Err(e) => panic!("{}: report {} does not decode: {e}", vector.file, i + 1),
            }
        }
        assert!(
            !decoder.in_scan(),
            "{}: the vector ends inside a scan",
            vector.file
        );
        let got: Vec<ExpectedScan> = scans
            .into_iter()
            .map(|s| ExpectedScan {
                text: s.text,
                symbology: s.symbology,
            })
            .collect();
        assert_eq!(got, vector.scans, "{}", vector.file);
    }

    for protocol in [HidProtocol::HidPos, HidProtocol::Keyboard] {
        assert!(
            vectors.iter().any(|v| v.protocol == protocol),
            "no vector for {protocol:?}"
        );
    }
}
