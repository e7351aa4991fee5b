//! Fuzzing in the normal `cargo test`: every input a fuzz target ever crashed on, inline, and a
//! replay of the committed fuzz corpus, both through the same oracles the fuzz targets run
//! (`fuzz/src/lib.rs`, included here so that cargo-fuzz is not needed to run them).
//!
//! What must stay true: a crash found by `.ci/fuzz.sh` is fixed, then added here with its input
//! and to `fuzz/corpus/<target>/`.

#[path = "../../fuzz/src/lib.rs"]
mod oracle;

use std::path::Path;

use lanehub::http::api::ScanBody;
use lanehub::http::extract::parse_json;
use lanehub::http::problem::ApiError;

/// A fuzz target's oracle: panics when the input breaks a property.
type Oracle = fn(&[u8]);

/// Each fuzz target's corpus directory and its oracle.
const TARGETS: [(&str, Oracle); 6] = [
    ("classify_scan", oracle::classify_scan),
    ("hidpos_decoder", oracle::hidpos_decoder),
    ("keyboard_decoder", oracle::keyboard_decoder),
    ("terminal_api_bodies", oracle::terminal_api_bodies),
    ("webhook_verify", oracle::webhook_verify),
    ("config_toml", oracle::config_toml),
];

#[test]
fn the_committed_corpus_passes_every_oracle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, oracle) in TARGETS {
        let dir = root.join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.expect("a readable corpus directory").path();
            let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            // A failing input names itself in the panic message of the oracle's assertion.
            eprintln!("replaying {}", path.display());
            oracle(&input);
            replayed += 1;
        }
        assert!(replayed > 0, "{target} has no committed corpus");
    }
}

/// terminal_api_bodies found `{"": …}`: the error named an empty field (`"field": ""` in the
/// problem answer). Fixed in `parse_json`: a path with an empty key names no field.
#[test]
fn an_empty_json_key_names_no_field() {
    let crash = br#"{"": {"value": 23990, "currency": "NOK"}}"#;
    oracle::terminal_api_bodies(crash);

    for body in [&crash[..], br#"{"text": "x", "": 1}"#] {
        match parse_json::<ScanBody>(body) {
            Err(ApiError::InvalidBody { field, detail }) => {
                assert_eq!(field, None);
                assert!(detail.contains("unknown field ``"), "{detail}");
                assert!(!detail.starts_with("malformed JSON"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
    }
    // A real field is still named.
    match parse_json::<ScanBody>(br#"{"text": 5}"#) {
        Err(ApiError::InvalidBody { field, .. }) => assert_eq!(field.as_deref(), Some("text")),
        other => panic!("{other:?}"),
    }
    // Well-formed JSON of the wrong shape is not called malformed.
    match parse_json::<ScanBody>(b"true") {
        Err(ApiError::InvalidBody { field, detail }) => {
            assert_eq!(field, None);
            assert!(!detail.starts_with("malformed JSON"), "{detail}");
            assert!(detail.contains("expected struct ScanBody"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

/// webhook_verify found a date holding a replacement character whose changed byte decoded back
/// to the same text: the oracle's mistake (it now skips an unchanged date), not lanehub's.
#[test]
fn a_date_changed_back_by_lossy_decoding_is_not_a_change() {
    let mut crash = vec![0x07, 0x01, b'k', 0x01, b'/', 0x01, b'h', 0x1d];
    crash.extend_from_slice(b"Mon, 01 Jan 2\xff\xff\xff\xff00:00:00 GMT");
    crash.extend_from_slice(b",47DEQpj8HBSa+/TIm");
    crash.extend_from_slice(&[0x1d; 108]);
    crash.extend_from_slice(b"W+5JCG3hSuFU=K");
    crash.extend_from_slice(b"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Sig");
    crash.extend_from_slice(b"\xff\xff\xff\xffre=====\x02\x00\x00\x00\xff");
    oracle::webhook_verify(&crash);
}
