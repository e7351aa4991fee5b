//! `HidPosDecoder`: scans from USB HID POS scanners (usage page 0x8C) sending Honeywell-style
//! 64-byte input reports.
//!
//! Report layout, as the recorded vectors show it:
//!
//! | bytes  | meaning                                                              |
//! |--------|----------------------------------------------------------------------|
//! | 0      | report id `0x02`                                                     |
//! | 1      | number of data bytes in this report (0 to 56), the AIM id not counted |
//! | 2..5   | AIM symbology identifier such as `]Q1`, or three zero bytes           |
//! | 5..61  | data, zero padded                                                    |
//! | 61     | Honeywell code id (`s` QR, `d` EAN-13); not used                     |
//! | 62     | reserved                                                             |
//! | 63     | bit 0 set: more reports of this scan follow                          |
//!
//! A long scan spans several reports, each repeating the AIM id. What must stay true: after an
//! error the decoder has recovered; if the bad report announced more reports, they are skipped up
//! to the scan's last report so that its tail is never taken for a new scan.

use std::fmt;

use crate::scanner::decode::{DecodeError, MAX_SCAN_BYTES, Scan};

/// The length of every HID POS input report, report id included.
pub const REPORT_LEN: usize = 64;
/// The report id of a scanned-data report.
pub const REPORT_ID: u8 = 0x02;
const COUNT_AT: usize = 1;
const AIM_AT: usize = 2;
const DATA_AT: usize = 5;
/// The most data bytes one report carries.
pub const MAX_DATA_PER_REPORT: usize = 56;
const CONTINUATION_AT: usize = 63;

/// Decodes HID POS reports, one at a time, into scans.
#[derive(Clone, Default)]
pub struct HidPosDecoder {
    pending: Vec<u8>,
    symbology: Option<[u8; 3]>,
    in_scan: bool,
    /// Skipping the remaining reports of a scan that already failed.
    discarding: bool,
}

// The pending bytes may hold a phone number: Debug shows only their count.
impl fmt::Debug for HidPosDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HidPosDecoder")
            .field("pending_bytes", &self.pending.len())
            .field("in_scan", &self.in_scan)
            .field("discarding", &self.discarding)
            .finish()
    }
}

impl HidPosDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one input report; returns a scan when its last report has arrived.
    pub fn feed(&mut self, report: &[u8]) -> Result<Option<Scan>, DecodeError> {
        let Some(&id) = report.first() else {
            return Err(DecodeError::WrongLength {
                expected: REPORT_LEN,
                got: 0,
            });
        };
        if id != REPORT_ID {
            // Some other report of the device (status, for one): the scan in progress goes on.
            return Err(DecodeError::UnexpectedReportId {
                expected: REPORT_ID,
                got: id,
            });
        }
        if report.len() != REPORT_LEN {
            // Nothing in a truncated report can be trusted, not even its continuation flag. In
            // the middle of a scan, assume more follows: skipping a scan is safer than reporting
            // the tail of a broken one (`ReportDecoder`'s timeout ends the skipping anyway).
            let in_scan = self.in_scan();
            self.reset();
            self.discarding = in_scan;
            return Err(DecodeError::WrongLength {
                expected: REPORT_LEN,
                got: report.len(),
            });
        }
        let more = report[CONTINUATION_AT] & 0x01 != 0;
        if self.discarding {
            self.discarding = more;
            return Ok(None);
        }

        let count = report[COUNT_AT];
        if usize::from(count) > MAX_DATA_PER_REPORT {
            return self.fail(
                more,
                DecodeError::ImpossibleByteCount {
                    count,
                    max: MAX_DATA_PER_REPORT,
                },
            );
        }
        let aim = [report[AIM_AT], report[AIM_AT + 1], report[AIM_AT + 2]];
        let symbology = if aim == [0; 3] {
            None
        } else if aim[0] == b']' && aim[1].is_ascii_graphic() && aim[2].is_ascii_graphic() {
            Some(aim)
        } else {
            return self.fail(more, DecodeError::BadSymbologyId { bytes: aim });
        };
        if self.in_scan && self.symbology != symbology {
            let err = DecodeError::SymbologyChanged {
                first: aim_label(self.symbology),
                then: aim_label(symbology),
            };
            return self.fail(more, err);
        }
        let count = usize::from(count);
        if self.pending.len() + count > MAX_SCAN_BYTES {
            return self.fail(
                more,
                DecodeError::TooLong {
                    max: MAX_SCAN_BYTES,
                },
            );
        }

        self.in_scan = true;
        self.symbology = symbology;
        self.pending
            .extend_from_slice(&report[DATA_AT..DATA_AT + count]);
        if more {
            return Ok(None);
        }

        let bytes = std::mem::take(&mut self.pending);
        let symbology = self.symbology.take();
        self.in_scan = false;
        if bytes.is_empty() {
            return Err(DecodeError::EmptyScan);
        }
        let text = String::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 {
            valid_up_to: e.utf8_error().valid_up_to(),
        })?;
        Ok(Some(Scan {
            text,
            symbology: symbology.map(|a| a.iter().map(|&b| char::from(b)).collect()),
        }))
    }

    /// True while a scan has started (or is being skipped) and its last report has not arrived.
    pub fn in_scan(&self) -> bool {
        self.in_scan || self.discarding
    }

    /// Forgets any partial scan.
    pub fn reset(&mut self) {
        self.pending.clear();
        self.symbology = None;
        self.in_scan = false;
        self.discarding = false;
    }

    fn fail(&mut self, more: bool, err: DecodeError) -> Result<Option<Scan>, DecodeError> {
        self.reset();
        self.discarding = more;
        Err(err)
    }
}

fn aim_label(aim: Option<[u8; 3]>) -> String {
    match aim {
        Some(a) => a.iter().map(|&b| char::from(b)).collect(),
        None => "none".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// A well-formed report carrying `data` (at most 56 bytes).
    fn report(aim: &[u8; 3], data: &[u8], more: bool) -> Vec<u8> {
        let mut r = vec![0u8; REPORT_LEN];
        r[0] = REPORT_ID;
        r[1] = u8::try_from(data.len()).expect("test data fits a report");
        r[2..5].copy_from_slice(aim);
        r[5..5 + data.len()].copy_from_slice(data);
        r[61] = b's';
        r[63] = u8::from(more);
        r
    }

    /// Feeds a scan's last report and returns the scan it completes.
    fn last_report(d: &mut HidPosDecoder, aim: &[u8; 3], data: &[u8]) -> Scan {
        let got = d.feed(&report(aim, data, false)).unwrap();
        got.expect("the last report completes a scan")
    }

    fn scan(text: &str, symbology: Option<&str>) -> Scan {
        Scan {
            text: text.to_owned(),
            symbology: symbology.map(str::to_owned),
        }
    }

    #[test]
    fn single_report_with_aim() {
        let mut d = HidPosDecoder::new();
        let got = d.feed(&report(b"]E0", b"7038010009457", false)).unwrap();
        assert_eq!(got, Some(scan("7038010009457", Some("]E0"))));
        assert!(!d.in_scan());
    }

    #[test]
    fn without_aim_the_symbology_is_none() {
        let mut d = HidPosDecoder::new();
        let got = d.feed(&report(&[0; 3], b"ABC", false)).unwrap();
        assert_eq!(got, Some(scan("ABC", None)));
    }

    #[test]
    fn continuation_joins_reports() {
        let mut d = HidPosDecoder::new();
        let first = [b'a'; 56];
        assert_eq!(d.feed(&report(b"]Q1", &first, true)).unwrap(), None);
        assert!(d.in_scan());
        assert_eq!(d.feed(&report(b"]Q1", b"bc", true)).unwrap(), None);
        let got = last_report(&mut d, b"]Q1", b"d");
        assert_eq!(got.text, format!("{}bcd", "a".repeat(56)));
        assert_eq!(got.symbology.as_deref(), Some("]Q1"));
    }

    #[test]
    fn utf8_character_split_across_reports() {
        let mut d = HidPosDecoder::new();
        let ae = "æ".as_bytes();
        assert_eq!(d.feed(&report(b"]Q1", &ae[..1], true)).unwrap(), None);
        assert_eq!(last_report(&mut d, b"]Q1", &ae[1..]).text, "æ");
    }

    #[test]
    fn garbage_is_a_typed_error_and_the_next_scan_decodes() {
        let good = report(b"]E0", b"12345670", false);
        let mut too_many = report(b"]E0", b"1", false);
        too_many[1] = 57;
        let mut bad_aim = report(b"]E0", b"1", false);
        bad_aim[2] = b'x';
        let mut not_utf8 = report(b"]Q1", &[0xff, 0xfe], false);
        not_utf8[61] = 0;
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "wrong_length"),
            (good[..63].to_vec(), "wrong_length"),
            ([good.clone(), vec![0]].concat(), "wrong_length"),
            (too_many, "byte_count"),
            (bad_aim, "symbology_id"),
            (not_utf8, "not_utf8"),
            (report(b"]Q1", b"", false), "empty_scan"),
        ];
        for (bad, kind) in cases {
            let mut d = HidPosDecoder::new();
            let err = d.feed(&bad).unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
            assert!(!d.in_scan(), "{kind}: decoder must recover");
            let next = d.feed(&good).unwrap().unwrap();
            assert_eq!(next.text, "12345670", "{kind}");
        }
    }

    /// The decoder is in step again: a whole scan that follows decodes.
    fn assert_next_scan_decodes(d: &mut HidPosDecoder) {
        assert_eq!(last_report(d, b"]E0", b"12345670").text, "12345670");
    }

    #[test]
    fn another_report_id_leaves_the_scan_in_progress_alone() {
        let mut d = HidPosDecoder::new();
        d.feed(&report(b"]Q1", b"ab", true)).unwrap();
        let mut status = report(b"]Q1", b"zz", false);
        status[0] = 0x04;
        assert_eq!(
            d.feed(&status).unwrap_err(),
            DecodeError::UnexpectedReportId {
                expected: 0x02,
                got: 0x04
            }
        );
        assert_eq!(last_report(&mut d, b"]Q1", b"cd").text, "abcd");
    }

    #[test]
    fn a_truncated_report_drops_the_partial_scan_and_its_tail() {
        let mut d = HidPosDecoder::new();
        d.feed(&report(b"]Q1", b"ab", true)).unwrap();
        let short = report(b"]Q1", b"cd", true)[..20].to_vec();
        assert_eq!(d.feed(&short).unwrap_err().kind(), "wrong_length");
        assert_eq!(d.feed(&report(b"]Q1", b"ef", false)).unwrap(), None);
        assert_next_scan_decodes(&mut d);
    }

    #[test]
    fn a_failed_report_that_announces_more_skips_the_rest_of_its_scan() {
        let mut d = HidPosDecoder::new();
        let mut bad = report(b"]Q1", b"ab", true);
        bad[1] = 200;
        assert_eq!(d.feed(&bad).unwrap_err().kind(), "byte_count");
        assert!(d.in_scan());
        // The tail of the failed scan is skipped, not decoded as a scan of its own.
        assert_eq!(d.feed(&report(b"]Q1", b"tail", true)).unwrap(), None);
        assert_eq!(d.feed(&report(b"]Q1", b"end", false)).unwrap(), None);
        assert!(!d.in_scan());
        assert_next_scan_decodes(&mut d);
    }

    #[test]
    fn symbology_change_within_a_scan_is_an_error() {
        let mut d = HidPosDecoder::new();
        d.feed(&report(b"]Q1", b"ab", true)).unwrap();
        let err = d.feed(&report(b"]E0", b"12", false)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::SymbologyChanged {
                first: "]Q1".into(),
                then: "]E0".into()
            }
        );
        assert!(!d.in_scan());
    }

    #[test]
    fn overlong_scan_is_refused() {
        let mut d = HidPosDecoder::new();
        let chunk = [b'x'; 56];
        let mut result = Ok(None);
        for _ in 0..=(MAX_SCAN_BYTES / 56) {
            result = d.feed(&report(b"]Q1", &chunk, true));
            if result.is_err() {
                break;
            }
        }
        assert_eq!(result.unwrap_err().kind(), "too_long");
        // The rest of the overlong scan is skipped up to its last report.
        assert_eq!(d.feed(&report(b"]Q1", &chunk, false)).unwrap(), None);
        assert_eq!(last_report(&mut d, b"]Q1", b"ok").text, "ok");
    }

    #[test]
    fn debug_does_not_show_pending_text() {
        let mut d = HidPosDecoder::new();
        d.feed(&report(b"]Q1", b"4791234567", true)).unwrap();
        let shown = format!("{d:?}");
        assert!(!shown.contains("4791234567"), "{shown}");
    }
}
