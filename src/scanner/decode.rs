//! What every decoder produces (`Scan`) or reports (`DecodeError`), and `ReportDecoder`, which
//! picks the decoder for a configured protocol and drops a scan left unfinished too long.
//!
//! Decoders are pure: the caller passes each report and the time it arrived.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{HidProtocol, KeyboardLayout, ScannerSettings};
use crate::scanner::hidpos::HidPosDecoder;
use crate::scanner::keyboard::{DEFAULT_INTER_REPORT_TIMEOUT, KeyboardDecoder};

/// The longest scan text a decoder assembles; longer input is garbage, not a bigger buffer.
pub const MAX_SCAN_BYTES: usize = 4096;

/// One decoded scan: its text and the AIM symbology identifier (such as `]Q1`) when the scanner
/// sent one.
#[derive(Clone, PartialEq, Eq)]
pub struct Scan {
    pub text: String,
    pub symbology: Option<String>,
}

impl Scan {
    /// A scan that arrived as text (terminal or simulated scanner), without a symbology.
    pub fn from_text(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            symbology: None,
        }
    }
}

// The text may be a personal QR holding a phone number: Debug shows only its length.
impl fmt::Debug for Scan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scan")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("symbology", &self.symbology)
            .finish()
    }
}

/// Why a report could not be decoded. The decoder has already recovered when it returns one.
/// Its `kind()` label is the variant's name in snake_case unless the variant names another.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum DecodeError {
    #[error("report has {got} bytes, expected {expected}")]
    WrongLength { expected: usize, got: usize },
    #[error("report id is {got:#04x}, expected {expected:#04x}")]
    #[strum(serialize = "report_id")]
    UnexpectedReportId { expected: u8, got: u8 },
    #[error("report claims {count} data bytes, at most {max} fit")]
    #[strum(serialize = "byte_count")]
    ImpossibleByteCount { count: u8, max: usize },
    #[error(
        "symbology identifier bytes {bytes:02x?} are neither an AIM id (`]` and two characters) nor empty"
    )]
    #[strum(serialize = "symbology_id")]
    BadSymbologyId { bytes: [u8; 3] },
    #[error("symbology changed from {first} to {then} within one scan")]
    SymbologyChanged { first: String, then: String },
    #[error("scan text is not UTF-8 (valid up to byte {valid_up_to})")]
    NotUtf8 { valid_up_to: usize },
    #[error("scan is longer than {max} bytes")]
    TooLong { max: usize },
    #[error(
        "keycode {keycode:#04x} with modifiers {modifiers:#04x} has no character in this layout"
    )]
    UnknownKeycode { keycode: u8, modifiers: u8 },
    #[error("modifiers {modifiers:#04x} (Ctrl, Alt or GUI) are not used by scanners")]
    #[strum(serialize = "modifiers")]
    UnsupportedModifiers { modifiers: u8 },
    #[error("scan ended without any text")]
    EmptyScan,
}

/// Splits a leading AIM symbology identifier (`]`, a symbology letter, a modifier character)
/// off `text`.
pub(crate) fn split_aim(text: &str) -> (Option<&str>, &str) {
    let b = text.as_bytes();
    if b.len() >= 3 && b[0] == b']' && b[1].is_ascii_alphabetic() && b[2].is_ascii_alphanumeric() {
        // The first three bytes are ASCII, so 3 is a char boundary.
        (Some(&text[..3]), &text[3..])
    } else {
        (None, text)
    }
}

/// The decoder for one configured scanner, either protocol, with the inter-report timeout
/// applied to both.
#[derive(Debug, Clone)]
pub enum ReportDecoder {
    HidPos {
        decoder: HidPosDecoder,
        timeout: Duration,
        last_report: Option<Instant>,
    },
    Keyboard(KeyboardDecoder),
}

impl ReportDecoder {
    /// A decoder for `protocol`; `layout` only matters for keyboard scanners.
    pub fn new(protocol: HidProtocol, layout: KeyboardLayout, timeout: Duration) -> Self {
        match protocol {
            HidProtocol::HidPos => ReportDecoder::HidPos {
                decoder: HidPosDecoder::new(),
                timeout,
                last_report: None,
            },
            HidProtocol::Keyboard => ReportDecoder::Keyboard(KeyboardDecoder::new(layout, timeout)),
        }
    }

    /// The decoder a `hid` scanner's settings ask for, with the documented defaults (US layout,
    /// 50 ms); `None` when the settings name no protocol.
    pub fn for_settings(settings: &ScannerSettings) -> Option<Self> {
        Some(Self::new(
            settings.protocol?,
            settings.layout.unwrap_or(KeyboardLayout::Us),
            settings
                .inter_report_timeout
                .unwrap_or(DEFAULT_INTER_REPORT_TIMEOUT),
        ))
    }

    /// Feeds one report that arrived at `at`; a partial scan older than the timeout is dropped
    /// first.
    pub fn feed(&mut self, report: &[u8], at: Instant) -> Result<Option<Scan>, DecodeError> {
        self.expire(at);
        match self {
            ReportDecoder::HidPos {
                decoder,
                last_report,
                ..
            } => {
                *last_report = Some(at);
                decoder.feed(report)
            }
            ReportDecoder::Keyboard(k) => k.feed(report, at),
        }
    }

    /// Drops a partial scan whose last report is older than the timeout; true if one was dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        match self {
            ReportDecoder::HidPos {
                decoder,
                timeout,
                last_report,
            } => {
                let stale =
                    last_report.is_some_and(|last| now.saturating_duration_since(last) > *timeout);
                if stale && decoder.in_scan() {
                    decoder.reset();
                    true
                } else {
                    false
                }
            }
            ReportDecoder::Keyboard(k) => k.expire(now),
        }
    }

    /// Forgets everything, as after reopening the device.
    pub fn reset(&mut self) {
        match self {
            ReportDecoder::HidPos {
                decoder,
                last_report,
                ..
            } => {
                decoder.reset();
                *last_report = None;
            }
            ReportDecoder::Keyboard(k) => k.reset(),
        }
    }

    /// True while a scan has started and not yet ended.
    pub fn in_scan(&self) -> bool {
        match self {
            ReportDecoder::HidPos { decoder, .. } => decoder.in_scan(),
            ReportDecoder::Keyboard(k) => k.in_scan(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TIMEOUT: Duration = DEFAULT_INTER_REPORT_TIMEOUT;

    fn hidpos(aim: &[u8; 3], data: &[u8], more: bool) -> Vec<u8> {
        let mut r = vec![0u8; 64];
        r[0] = 0x02;
        r[1] = u8::try_from(data.len()).expect("test data fits one report");
        r[2..5].copy_from_slice(aim);
        r[5..5 + data.len()].copy_from_slice(data);
        r[63] = u8::from(more);
        r
    }

    /// "]Q1" then "12345670", Enter, each key pressed and released (US layout).
    fn keyboard_scan() -> Vec<Vec<u8>> {
        let keys = [
            (0, 0x30),
            (0x02, 0x14),
            (0, 0x1E),
            (0, 0x1E),
            (0, 0x1F),
            (0, 0x20),
            (0, 0x21),
            (0, 0x22),
            (0, 0x23),
            (0, 0x24),
            (0, 0x27),
            (0, 0x28),
        ];
        keys.iter()
            .flat_map(|&(m, k)| [vec![m, 0, k, 0, 0, 0, 0, 0], vec![0; 8]])
            .collect()
    }

    fn expected_keyboard_scan() -> Scan {
        Scan {
            text: "12345670".into(),
            symbology: Some("]Q1".into()),
        }
    }

    #[test]
    fn hidpos_partial_scan_is_dropped_after_the_timeout() {
        let start = Instant::now();
        let mut d = ReportDecoder::new(HidProtocol::HidPos, KeyboardLayout::Us, TIMEOUT);
        assert_eq!(d.feed(&hidpos(b"]Q1", b"abc", true), start), Ok(None));
        assert!(d.in_scan());
        // The last report of that scan never came; a new scan starts after the timeout.
        let later = start + TIMEOUT + Duration::from_millis(1);
        let got = d.feed(&hidpos(b"]E0", b"12345670", false), later).unwrap();
        assert_eq!(got.map(|s| s.text), Some("12345670".to_owned()));

        // Within the timeout the reports join.
        let mut d = ReportDecoder::new(HidProtocol::HidPos, KeyboardLayout::Us, TIMEOUT);
        d.feed(&hidpos(b"]Q1", b"ab", true), start).unwrap();
        let got = d
            .feed(&hidpos(b"]Q1", b"c", false), start + TIMEOUT)
            .unwrap();
        assert_eq!(got.map(|s| s.text), Some("abc".to_owned()));
    }

    #[test]
    fn expire_and_reset() {
        let start = Instant::now();
        let mut d = ReportDecoder::new(HidProtocol::HidPos, KeyboardLayout::Us, TIMEOUT);
        assert!(!d.expire(start), "nothing to expire");
        d.feed(&hidpos(b"]Q1", b"ab", true), start).unwrap();
        assert!(!d.expire(start + TIMEOUT));
        assert!(d.expire(start + TIMEOUT * 2));
        assert!(!d.in_scan());
        d.feed(&hidpos(b"]Q1", b"ab", true), start).unwrap();
        d.reset();
        assert!(!d.in_scan());
    }

    #[test]
    fn settings_pick_protocol_layout_and_timeout() {
        let mut s = ScannerSettings {
            role: crate::config::ScannerRole::Cashier,
            source: crate::config::ScannerSource::Hid,
            vid: Some(1),
            pid: Some(2),
            serial: None,
            path: None,
            protocol: None,
            layout: None,
            inter_report_timeout: None,
        };
        assert!(ReportDecoder::for_settings(&s).is_none());
        s.protocol = Some(HidProtocol::Keyboard);
        s.inter_report_timeout = Some(Duration::from_millis(5));
        let mut d = ReportDecoder::for_settings(&s).unwrap();
        let start = Instant::now();
        d.feed(&[0, 0, 0x1E, 0, 0, 0, 0, 0], start).unwrap();
        // Past the configured 5 ms, not the default 50 ms, the partial scan is gone.
        assert!(d.expire(start + Duration::from_millis(6)));
    }

    #[test]
    fn split_aim_needs_the_aim_shape() {
        assert_eq!(split_aim("]Q1abc"), (Some("]Q1"), "abc"));
        assert_eq!(split_aim("]e0"), (Some("]e0"), ""));
        assert_eq!(split_aim("]1Q"), (None, "]1Q"));
        assert_eq!(split_aim("]Q"), (None, "]Q"));
        assert_eq!(split_aim("]Qæ"), (None, "]Qæ"));
        assert_eq!(split_aim(""), (None, ""));
    }

    /// Reports of any length, and well-formed-looking HID POS reports with random content.
    fn garbage_report() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..80),
            proptest::collection::vec(any::<u8>(), 8..=8),
            proptest::collection::vec(any::<u8>(), 63..=63).prop_map(|mut r| {
                r.insert(0, 0x02);
                r
            }),
        ]
    }

    proptest! {
        #[test]
        fn arbitrary_reports_never_panic_either_decoder(
            reports in proptest::collection::vec(garbage_report(), 0..40),
            gaps_ms in proptest::collection::vec(0u64..120, 40),
        ) {
            let mut hid = HidPosDecoder::new();
            let mut us = KeyboardDecoder::new(KeyboardLayout::Us, TIMEOUT);
            let mut no = KeyboardDecoder::new(KeyboardLayout::No, TIMEOUT);
            let mut at = Instant::now();
            for (report, gap) in reports.iter().zip(gaps_ms) {
                at += Duration::from_millis(gap);
                for result in [hid.feed(report), us.feed(report, at), no.feed(report, at)] {
                    if let Ok(Some(scan)) = result {
                        prop_assert!(!scan.text.is_empty());
                        prop_assert!(scan.text.len() <= MAX_SCAN_BYTES);
                    }
                }
            }
        }

        #[test]
        fn after_any_garbage_and_a_pause_the_next_scan_decodes(
            reports in proptest::collection::vec(garbage_report(), 0..40),
        ) {
            let late = TIMEOUT + Duration::from_millis(1);

            let mut d = ReportDecoder::new(HidProtocol::HidPos, KeyboardLayout::Us, TIMEOUT);
            let mut at = Instant::now();
            for r in &reports {
                at += Duration::from_millis(1);
                let _ = d.feed(r, at);
            }
            let got = d.feed(&hidpos(b"]E0", b"12345670", false), at + late);
            prop_assert_eq!(got, Ok(Some(Scan { text: "12345670".into(), symbology: Some("]E0".into()) })));

            let mut d = ReportDecoder::new(HidProtocol::Keyboard, KeyboardLayout::Us, TIMEOUT);
            let mut at = Instant::now();
            for r in &reports {
                at += Duration::from_millis(1);
                let _ = d.feed(r, at);
            }
            // A release of every key after the pause, then the scan.
            at += late;
            prop_assert_eq!(d.feed(&[0; 8], at), Ok(None));
            let mut scans = Vec::new();
            for r in keyboard_scan() {
                at += Duration::from_millis(1);
                match d.feed(&r, at) {
                    Ok(Some(scan)) => scans.push(scan),
                    Ok(None) => {}
                    Err(e) => prop_assert!(false, "unexpected error {e}"),
                }
            }
            prop_assert_eq!(scans, vec![expected_keyboard_scan()]);
        }
    }
}
