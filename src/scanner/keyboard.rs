//! `KeyboardDecoder`: scans from scanners that type like a USB boot keyboard.
//!
//! Each 8-byte report holds the modifier bits, a reserved byte and up to six pressed keys. A key
//! counts when it appears in a report and was not in the previous one, so a key held across
//! reports types once. Enter, keypad Enter or Tab ends a scan; a leading AIM identifier
//! (`]Q1`) is split off as the symbology. A partial scan whose last report is older than the
//! inter-report timeout is dropped, so a scan cut short never prefixes the next one.
//!
//! What must stay true: the decoder is pure (each report comes with its arrival time), never
//! panics, and after an error skips the rest of the broken scan up to its terminator (or the
//! timeout), so no fragment of it is ever reported as a scan.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::KeyboardLayout;
use crate::scanner::decode::{DecodeError, MAX_SCAN_BYTES, Scan, split_aim};

/// The length of a boot keyboard input report.
pub const REPORT_LEN: usize = 8;
/// How long a scan may pause between two reports before its partial text is dropped.
pub const DEFAULT_INTER_REPORT_TIMEOUT: Duration = Duration::from_millis(50);

const LEFT_CTRL: u8 = 0x01;
const LEFT_SHIFT: u8 = 0x02;
const LEFT_ALT: u8 = 0x04;
const LEFT_GUI: u8 = 0x08;
const RIGHT_CTRL: u8 = 0x10;
const RIGHT_SHIFT: u8 = 0x20;
/// AltGr on European layouts.
const RIGHT_ALT: u8 = 0x40;
const RIGHT_GUI: u8 = 0x80;

const KEY_ENTER: u8 = 0x28;
const KEY_TAB: u8 = 0x2B;
const KEY_KEYPAD_ENTER: u8 = 0x58;
/// Usages 0x01 to 0x03 (ErrorRollOver, POSTFail, ErrorUndefined) fill all slots when the
/// keyboard cannot report its state; such a report says nothing about which keys are down.
const LAST_ERROR_USAGE: u8 = 0x03;

/// Decodes boot keyboard reports, one at a time, into scans.
#[derive(Clone)]
pub struct KeyboardDecoder {
    layout: KeyboardLayout,
    timeout: Duration,
    /// Keys down in the previous report.
    previous: [u8; 6],
    text: String,
    /// Skipping the rest of a scan that already failed, up to its terminator.
    discarding: bool,
    last_report: Option<Instant>,
}

// The partial text may hold a phone number: Debug shows only its length.
impl fmt::Debug for KeyboardDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyboardDecoder")
            .field("layout", &self.layout)
            .field("timeout", &self.timeout)
            .field("pending_bytes", &self.text.len())
            .field("discarding", &self.discarding)
            .finish()
    }
}

/// What one key press did to the scan.
enum Press {
    Typed,
    Ended(Result<Option<Scan>, DecodeError>),
    Failed(DecodeError),
}

impl KeyboardDecoder {
    /// A decoder for `layout` that drops a partial scan after `timeout` without a report.
    pub fn new(layout: KeyboardLayout, timeout: Duration) -> Self {
        Self {
            layout,
            timeout,
            previous: [0; 6],
            text: String::new(),
            discarding: false,
            last_report: None,
        }
    }

    /// Feeds one report that arrived at `at`; returns a scan when its terminator was pressed.
    ///
    /// Should one report finish two scans or fail after finishing one (scanners send one key
    /// per report, so this does not happen in practice), the first outcome is returned.
    pub fn feed(&mut self, report: &[u8], at: Instant) -> Result<Option<Scan>, DecodeError> {
        self.expire(at);
        self.last_report = Some(at);
        if report.len() != REPORT_LEN {
            // A key may have been lost with this report, even the first of a scan, so the rest
            // of the scan is skipped. A scan that starts after the timeout is not affected.
            self.skip_rest_of_scan();
            return Err(DecodeError::WrongLength {
                expected: REPORT_LEN,
                got: report.len(),
            });
        }
        let modifiers = report[0];
        let mut keys = [0u8; 6];
        keys.copy_from_slice(&report[2..8]);
        if keys.iter().any(|&k| (0x01..=LAST_ERROR_USAGE).contains(&k)) {
            return Ok(None);
        }
        let pressed: Vec<u8> = keys
            .iter()
            .copied()
            .filter(|&k| k != 0 && !self.previous.contains(&k))
            .collect();
        self.previous = keys;

        let mut outcome: Option<Result<Option<Scan>, DecodeError>> = None;
        for key in pressed {
            let result = match self.press(modifiers, key) {
                Press::Typed => continue,
                Press::Ended(r) => r,
                Press::Failed(e) => Err(e),
            };
            if outcome.is_none() {
                outcome = Some(result);
            }
        }
        outcome.unwrap_or(Ok(None))
    }

    /// Drops a partial scan whose last report is older than the timeout; true if one was dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        let stale = self
            .last_report
            .is_some_and(|last| now.saturating_duration_since(last) > self.timeout);
        if stale && self.in_scan() {
            self.text.clear();
            self.discarding = false;
            true
        } else {
            false
        }
    }

    /// True while a scan has started (or is being skipped) and its terminator has not come.
    pub fn in_scan(&self) -> bool {
        !self.text.is_empty() || self.discarding
    }

    /// Forgets the partial scan and which keys were down, as after reopening the device.
    pub fn reset(&mut self) {
        self.previous = [0; 6];
        self.text.clear();
        self.discarding = false;
        self.last_report = None;
    }

    fn press(&mut self, modifiers: u8, key: u8) -> Press {
        if matches!(key, KEY_ENTER | KEY_KEYPAD_ENTER | KEY_TAB) {
            if self.discarding {
                self.discarding = false;
                return Press::Ended(Ok(None));
            }
            let text = std::mem::take(&mut self.text);
            let (symbology, rest) = split_aim(&text);
            if rest.is_empty() {
                return Press::Ended(Err(DecodeError::EmptyScan));
            }
            return Press::Ended(Ok(Some(Scan {
                text: rest.to_owned(),
                symbology: symbology.map(str::to_owned),
            })));
        }
        if self.discarding {
            return Press::Typed;
        }
        let shift = modifiers & (LEFT_SHIFT | RIGHT_SHIFT) != 0;
        let ctrl = modifiers & (LEFT_CTRL | RIGHT_CTRL) != 0;
        let left_alt = modifiers & LEFT_ALT != 0;
        // Ctrl+Alt is how some hosts and scanners spell AltGr.
        let altgr = modifiers & RIGHT_ALT != 0 || (ctrl && left_alt);
        let gui = modifiers & (LEFT_GUI | RIGHT_GUI) != 0;
        if gui || (ctrl && !altgr) || (left_alt && !ctrl) {
            self.skip_rest_of_scan();
            return Press::Failed(DecodeError::UnsupportedModifiers { modifiers });
        }
        let Some(c) = key_char(self.layout, key, shift, altgr) else {
            self.skip_rest_of_scan();
            return Press::Failed(DecodeError::UnknownKeycode {
                keycode: key,
                modifiers,
            });
        };
        if self.text.len() + c.len_utf8() > MAX_SCAN_BYTES {
            self.skip_rest_of_scan();
            return Press::Failed(DecodeError::TooLong {
                max: MAX_SCAN_BYTES,
            });
        }
        self.text.push(c);
        Press::Typed
    }

    /// A bad report starts or breaks a scan: skip everything up to its terminator (or the
    /// timeout), so no fragment of it is reported as a scan.
    fn skip_rest_of_scan(&mut self) {
        self.text.clear();
        self.discarding = true;
    }
}

/// The character `key` types on `layout` with the given modifiers, if any.
pub fn key_char(layout: KeyboardLayout, key: u8, shift: bool, altgr: bool) -> Option<char> {
    if (0x04..=0x1D).contains(&key) {
        let lower = char::from(b'a' + (key - 0x04));
        return match (altgr, layout) {
            (false, _) if shift => Some(lower.to_ascii_uppercase()),
            (false, _) => Some(lower),
            (true, KeyboardLayout::No) if key == 0x08 => Some('€'),
            (true, _) => None,
        };
    }
    if let Some(c) = keypad_char(layout, key) {
        // Keypad keys type the same with Shift; AltGr has no meaning there.
        return if altgr { None } else { Some(c) };
    }
    let (plain, shifted, alt) = match layout {
        KeyboardLayout::Us => us_key(key)?,
        KeyboardLayout::No => no_key(key)?,
    };
    match (shift, altgr) {
        (false, false) => Some(plain),
        (true, false) => Some(shifted),
        (_, true) => alt,
    }
}

/// Digits and punctuation on the US layout: (plain, Shift, AltGr).
fn us_key(key: u8) -> Option<(char, char, Option<char>)> {
    let (plain, shifted) = match key {
        0x1E..=0x27 => {
            let i = usize::from(key - 0x1E);
            (char::from(b"1234567890"[i]), char::from(b"!@#$%^&*()"[i]))
        }
        0x2C => (' ', ' '),
        0x2D => ('-', '_'),
        0x2E => ('=', '+'),
        0x2F => ('[', '{'),
        0x30 => (']', '}'),
        0x31 | 0x32 | 0x64 => ('\\', '|'),
        0x33 => (';', ':'),
        0x34 => ('\'', '"'),
        0x35 => ('`', '~'),
        0x36 => (',', '<'),
        0x37 => ('.', '>'),
        0x38 => ('/', '?'),
        _ => return None,
    };
    Some((plain, shifted, None))
}

/// Digits and punctuation on the Norwegian layout: (plain, Shift, AltGr). Dead keys (¨ ^ ~ ` ´)
/// type their own character; scanners send them alone, not to compose accents.
fn no_key(key: u8) -> Option<(char, char, Option<char>)> {
    Some(match key {
        0x1E => ('1', '!', None),
        0x1F => ('2', '"', Some('@')),
        0x20 => ('3', '#', Some('£')),
        0x21 => ('4', '¤', Some('$')),
        0x22 => ('5', '%', Some('€')),
        0x23 => ('6', '&', None),
        0x24 => ('7', '/', Some('{')),
        0x25 => ('8', '(', Some('[')),
        0x26 => ('9', ')', Some(']')),
        0x27 => ('0', '=', Some('}')),
        0x2C => (' ', ' ', None),
        0x2D => ('+', '?', None),
        0x2E => ('\\', '`', Some('´')),
        0x2F => ('å', 'Å', None),
        0x30 => ('¨', '^', Some('~')),
        // The key left of Enter: ISO keyboards send 0x32, some send 0x31.
        0x31 | 0x32 => ('\'', '*', None),
        0x33 => ('ø', 'Ø', None),
        0x34 => ('æ', 'Æ', None),
        0x35 => ('|', '§', None),
        0x36 => (',', ';', None),
        0x37 => ('.', ':', None),
        0x38 => ('-', '_', None),
        0x64 => ('<', '>', None),
        _ => return None,
    })
}

/// Keypad keys with Num Lock on; the decimal key follows the layout's decimal separator.
fn keypad_char(layout: KeyboardLayout, key: u8) -> Option<char> {
    Some(match key {
        0x54 => '/',
        0x55 => '*',
        0x56 => '-',
        0x57 => '+',
        0x59..=0x61 => char::from(b'1' + (key - 0x59)),
        0x62 => '0',
        0x63 => match layout {
            KeyboardLayout::Us => '.',
            KeyboardLayout::No => ',',
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    const SHIFT: u8 = LEFT_SHIFT;
    const ALTGR: u8 = RIGHT_ALT;

    /// Feeds press/release report pairs 1 ms apart, like a scanner does.
    struct Typist {
        decoder: KeyboardDecoder,
        now: Instant,
        outcomes: Vec<Result<Option<Scan>, DecodeError>>,
    }

    impl Typist {
        fn new(layout: KeyboardLayout) -> Self {
            Self {
                decoder: KeyboardDecoder::new(layout, DEFAULT_INTER_REPORT_TIMEOUT),
                now: Instant::now(),
                outcomes: Vec::new(),
            }
        }

        /// Feeds one report 1 ms after the previous one; its outcome is recorded.
        fn report(&mut self, r: [u8; 8]) {
            self.now += Duration::from_millis(1);
            let out = self.decoder.feed(&r, self.now);
            self.outcomes.push(out);
        }

        fn last_outcome(&self) -> Option<&Result<Option<Scan>, DecodeError>> {
            self.outcomes.last()
        }

        fn key(&mut self, modifiers: u8, key: u8) {
            self.report([modifiers, 0, key, 0, 0, 0, 0, 0]);
            self.report([0; 8]);
        }

        fn keys(&mut self, keys: &[(u8, u8)]) {
            for &(m, k) in keys {
                self.key(m, k);
            }
        }

        /// Types `text` on the US layout and ends the scan with Enter.
        fn type_scan(&mut self, text: &str) {
            self.keys(&us_keys(text));
            self.key(0, KEY_ENTER);
        }

        /// Every scan decoded so far.
        fn scans(&self) -> Vec<Scan> {
            self.outcomes
                .iter()
                .filter_map(|o| o.clone().ok().flatten())
                .collect()
        }

        fn errors(&self) -> Vec<&'static str> {
            self.outcomes
                .iter()
                .filter_map(|o| o.as_ref().err().map(ErrorKind::kind))
                .collect()
        }
    }

    /// Keys for an ASCII string on the US layout (letters, digits and a few signs).
    fn us_keys(s: &str) -> Vec<(u8, u8)> {
        s.chars()
            .map(|c| match c {
                'a'..='z' => (0, 0x04 + (c as u8 - b'a')),
                'A'..='Z' => (SHIFT, 0x04 + (c as u8 - b'A')),
                '1'..='9' => (0, 0x1E + (c as u8 - b'1')),
                '0' => (0, 0x27),
                ']' => (0, 0x30),
                ':' => (SHIFT, 0x33),
                '/' => (0, 0x38),
                '.' => (0, 0x37),
                '?' => (SHIFT, 0x38),
                '=' => (0, 0x2E),
                other => panic!("test helper has no key for {other:?}"),
            })
            .collect()
    }

    fn text(s: &str) -> Scan {
        Scan::from_text(s)
    }

    #[test]
    fn us_text_ends_with_enter() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.type_scan("https://qr.vipps.no/28?v=1");
        assert_eq!(t.scans(), vec![text("https://qr.vipps.no/28?v=1")]);
        assert!(t.errors().is_empty());
    }

    #[test]
    fn tab_and_keypad_enter_end_a_scan() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.keys(&us_keys("12345670"));
        t.key(0, KEY_TAB);
        t.keys(&[(0, 0x59), (0, 0x5A), (0, 0x62)]);
        t.key(0, KEY_KEYPAD_ENTER);
        assert_eq!(t.scans(), vec![text("12345670"), text("120")]);
    }

    #[test]
    fn norwegian_layout_types_the_vipps_url() {
        let mut t = Typist::new(KeyboardLayout::No);
        // "https://qr.vipps.no/28?v=1&x=æøå-ÆØÅ" with Norwegian key positions.
        let h = 0x04 + (b'h' - b'a');
        let tt = 0x04 + (b't' - b'a');
        let p = 0x04 + (b'p' - b'a');
        let s = 0x04 + (b's' - b'a');
        let v = 0x04 + (b'v' - b'a');
        let x = 0x04 + (b'x' - b'a');
        t.keys(&[
            (0, h),
            (0, tt),
            (0, tt),
            (0, p),
            (0, s),
            (SHIFT, 0x37), // ':'
            (SHIFT, 0x24), // '/'
            (SHIFT, 0x24),
            (0, 0x37),     // '.'
            (0, 0x1F),     // '2'
            (0, 0x25),     // '8'
            (SHIFT, 0x2D), // '?'
            (0, v),
            (SHIFT, 0x27), // '='
            (0, 0x1E),     // '1'
            (SHIFT, 0x23), // '&'
            (0, x),
            (SHIFT, 0x27),                // '='
            (0, 0x34),                    // 'æ'
            (0, 0x33),                    // 'ø'
            (0, 0x2F),                    // 'å'
            (0, 0x38),                    // '-'
            (SHIFT, 0x34),                // 'Æ'
            (RIGHT_SHIFT, 0x33),          // 'Ø'
            (SHIFT, 0x2F),                // 'Å'
            (ALTGR, 0x1F),                // '@'
            (LEFT_CTRL | LEFT_ALT, 0x21), // AltGr spelled Ctrl+Alt: '$'
        ]);
        t.key(0, KEY_ENTER);
        assert!(t.errors().is_empty(), "{:?}", t.errors());
        assert_eq!(t.scans(), vec![text("https://.28?v=1&x=æøå-ÆØÅ@$")]);
    }

    #[test]
    fn norwegian_and_us_differ_on_the_same_keys() {
        for (key, shift, us, no) in [
            (0x33, true, ':', 'Ø'),
            (0x38, false, '/', '-'),
            (0x38, true, '?', '_'),
            (0x24, true, '&', '/'),
            (0x2E, false, '=', '\\'),
            (0x2D, false, '-', '+'),
            (0x1F, true, '@', '"'),
        ] {
            assert_eq!(key_char(KeyboardLayout::Us, key, shift, false), Some(us));
            assert_eq!(key_char(KeyboardLayout::No, key, shift, false), Some(no));
        }
    }

    #[test]
    fn aim_prefix_is_split_off() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.type_scan("]Q1https://qr.vipps.no");
        let scans = t.scans();
        assert_eq!(scans[0].text, "https://qr.vipps.no");
        assert_eq!(scans[0].symbology.as_deref(), Some("]Q1"));

        // On the Norwegian layout `]` is AltGr+9.
        let mut t = Typist::new(KeyboardLayout::No);
        t.keys(&[(ALTGR, 0x26), (SHIFT, 0x08), (0, 0x27)]); // "]E0"
        t.keys(&[(0, 0x1E), (0, 0x1F)]);
        t.key(0, KEY_ENTER);
        assert_eq!(
            t.scans(),
            vec![Scan {
                text: "12".into(),
                symbology: Some("]E0".into())
            }]
        );
    }

    /// Reports that hold keys down: each press types once, whatever else the report says.
    #[test]
    fn a_held_key_types_once_and_a_released_key_types_again_and_rollover_changes_nothing() {
        let a = 0x04;
        let held_and_released = vec![
            [0, 0, a, 0, 0, 0, 0, 0],
            [0, 0, a, 0, 0, 0, 0, 0],    // still held
            [0, 0, a, 0x05, 0, 0, 0, 0], // b added while a held
            [0, 0, 0x05, 0, 0, 0, 0, 0], // a released
            [0, 0, 0x05, a, 0, 0, 0, 0], // a pressed again
        ];
        let rollover = vec![
            [0, 0, a, 0, 0, 0, 0, 0],
            [0, 0, 1, 1, 1, 1, 1, 1],
            [0, 0, a, 0, 0, 0, 0, 0], // still held, types nothing
        ];
        for (reports, typed) in [(held_and_released, "aba"), (rollover, "a")] {
            let mut t = Typist::new(KeyboardLayout::Us);
            for r in reports {
                t.report(r);
            }
            t.report([0; 8]);
            t.key(0, KEY_ENTER);
            assert_eq!(t.scans(), vec![text(typed)]);
        }
    }

    #[test]
    fn partial_scan_is_dropped_after_the_timeout() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.keys(&us_keys("123"));
        assert!(t.decoder.in_scan());
        t.now += DEFAULT_INTER_REPORT_TIMEOUT + Duration::from_millis(1);
        t.type_scan("456");
        assert_eq!(t.scans(), vec![text("456")]);

        // Exactly the timeout is still in time.
        let mut t = Typist::new(KeyboardLayout::Us);
        t.keys(&us_keys("123"));
        t.now += DEFAULT_INTER_REPORT_TIMEOUT - Duration::from_millis(1);
        t.type_scan("4");
        assert_eq!(t.scans(), vec![text("1234")]);
    }

    #[test]
    fn expire_reports_a_dropped_partial() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.keys(&us_keys("12"));
        let later = t.now + Duration::from_millis(51);
        assert!(!t.decoder.expire(t.now));
        assert!(t.decoder.expire(later));
        assert!(!t.decoder.in_scan());
        assert!(!t.decoder.expire(later), "nothing left to drop");
    }

    #[test]
    fn garbage_is_reported_and_the_broken_scan_skipped() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.keys(&us_keys("12"));
        t.report([0, 0, 0x68, 0, 0, 0, 0, 0]); // F13: no character
        assert_eq!(
            t.last_outcome(),
            Some(&Err(DecodeError::UnknownKeycode {
                keycode: 0x68,
                modifiers: 0
            }))
        );
        t.type_scan("34"); // its Enter ends the broken scan without reporting a fragment
        t.type_scan("56");
        assert_eq!(t.scans(), vec![text("56")]);
    }

    #[test]
    fn a_bad_report_before_a_scan_skips_that_burst_but_not_the_next_scan() {
        let mut t = Typist::new(KeyboardLayout::Us);
        // A short report may have carried the first key of a scan: what follows at once is
        // not reported without it.
        let _ = t.decoder.feed(&[0, 0, 0x24], t.now);
        t.type_scan("038010009457");
        assert!(t.scans().is_empty());
        // A scan after a pause decodes.
        let _ = t.decoder.feed(&[0, 0, 0x24], t.now);
        t.now += DEFAULT_INTER_REPORT_TIMEOUT * 2;
        t.type_scan("7038010009457");
        assert_eq!(t.scans(), vec![text("7038010009457")]);
    }

    #[test]
    fn every_kind_of_garbage_is_a_typed_error() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (vec![], "wrong_length"),
            (vec![0; 7], "wrong_length"),
            (vec![0; 9], "wrong_length"),
            (vec![0, 0, 0xE0, 0, 0, 0, 0, 0], "unknown_keycode"),
            (vec![LEFT_GUI, 0, 0x04, 0, 0, 0, 0, 0], "modifiers"),
            (vec![LEFT_CTRL, 0, 0x04, 0, 0, 0, 0, 0], "modifiers"),
            (vec![LEFT_ALT, 0, 0x04, 0, 0, 0, 0, 0], "modifiers"),
            (vec![RIGHT_ALT, 0, 0x04, 0, 0, 0, 0, 0], "unknown_keycode"),
        ];
        for (bad, kind) in cases {
            let mut t = Typist::new(KeyboardLayout::Us);
            t.keys(&us_keys("9"));
            let err = t.decoder.feed(&bad, t.now).unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
            t.report([0; 8]);
            t.key(0, KEY_ENTER);
            t.type_scan("12345670");
            assert_eq!(t.scans().last(), Some(&text("12345670")), "{kind}");
        }
    }

    #[test]
    fn a_terminator_without_text_is_an_empty_scan() {
        let mut t = Typist::new(KeyboardLayout::Us);
        t.key(0, KEY_ENTER);
        assert_eq!(t.errors(), vec!["empty_scan"]);

        // An AIM id alone leaves no text either.
        let mut t = Typist::new(KeyboardLayout::Us);
        t.type_scan("]Q1");
        assert_eq!(t.errors(), vec!["empty_scan"]);
    }

    #[test]
    fn overlong_scan_is_refused() {
        let mut t = Typist::new(KeyboardLayout::Us);
        for _ in 0..=MAX_SCAN_BYTES {
            t.key(0, 0x1E);
        }
        t.key(0, KEY_ENTER);
        assert_eq!(t.errors(), vec!["too_long"]);
        assert!(t.scans().is_empty());
        t.type_scan("1");
        assert_eq!(t.scans(), vec![text("1")]);
    }
}
