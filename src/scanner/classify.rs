//! What a scan is: a Vipps or MobilePay personal QR, a product barcode, or unknown.
//!
//! Personal QR codes come in two documented forms today: the Vipps clear-text URL
//! `https://qr.vipps.no/28/2/01/031/<msisdn>?v=1` and the tokenised
//! `https://qr.vipps.no/p/<token>` that MobilePay uses (and Vipps will). Vipps says the content
//! may change at any time, so any https URL on a Vipps or MobilePay QR host ([`QR_HOSTS`]) is a
//! personal QR candidate, whatever its path: the complete text goes to the QR exchange API, which
//! alone decides whether it is a personal QR. The number in a clear-text URL is only a fallback.
//! Product barcodes are EAN-13, EAN-8 and UPC-A with a valid check digit.
//!
//! What must stay true: `classify` is pure, total and never panics; input longer than
//! `MAX_SCAN_BYTES` is unknown.

use std::fmt;
use std::str::FromStr;

use crate::domain::Msisdn;
use crate::scanner::decode::MAX_SCAN_BYTES;

/// Hosts whose https URLs are sent to the QR exchange: Vipps' (MobilePay's personal codes use it
/// too) and MobilePay's own QR hosts.
pub const QR_HOSTS: [&str; 3] = ["qr.vipps.no", "qr.mobilepay.dk", "qr.mobilepay.fi"];
const SCHEME: &str = "https://";
/// Longer QR texts than this are not personal QR codes (documented ones are under 60 characters).
const MAX_QR_LEN: usize = 1024;

/// What a scan was, for the lane to act on.
#[derive(Debug, Clone, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum ScanKind {
    VippsQr(PersonalQr),
    Product(Barcode),
    Unknown,
}

impl ScanKind {
    /// Every `kind_label`.
    pub const LABELS: [&'static str; 3] = ["vipps_qr", "product", "unknown"];

    /// The metric label: `vipps_qr`, `product` or `unknown`.
    pub fn kind_label(&self) -> &'static str {
        self.into()
    }
}

/// Which personal QR form was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PersonalQrForm {
    /// `https://qr.vipps.no/28/2/01/031/<msisdn>?v=1`: today's Vipps code.
    ClearText,
    /// `https://qr.vipps.no/p/<token>`: MobilePay's code, and Vipps' in the future.
    Token,
    /// Another URL on a QR host: a shape lanehub does not know; the QR exchange decides.
    Other,
}

impl PersonalQrForm {
    /// `clear_text`, `token` or `other`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A scanned personal QR code.
#[derive(Clone, PartialEq, Eq)]
pub struct PersonalQr {
    /// The complete scanned text (surrounding whitespace removed): send it whole to the QR
    /// exchange API.
    pub raw: String,
    pub form: PersonalQrForm,
    /// The number in a clear-text code, when it is a valid MSISDN; a fallback for when the QR
    /// exchange is unavailable.
    pub clear_text_msisdn: Option<Msisdn>,
}

// `raw` may hold the phone number in clear: Debug shows its length and the masked number.
impl fmt::Debug for PersonalQr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PersonalQr")
            .field("raw", &format_args!("<{} bytes>", self.raw.len()))
            .field("form", &self.form)
            .field("clear_text_msisdn", &self.clear_text_msisdn)
            .finish()
    }
}

/// Classifies a scan's text; surrounding ASCII whitespace (a scanner's suffix) is ignored.
pub fn classify(text: &str) -> ScanKind {
    if text.len() > MAX_SCAN_BYTES {
        return ScanKind::Unknown;
    }
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    if let Some(qr) = personal_qr(text) {
        return ScanKind::VippsQr(qr);
    }
    match text.parse::<Barcode>() {
        Ok(barcode) => ScanKind::Product(barcode),
        Err(_) => ScanKind::Unknown,
    }
}

fn personal_qr(text: &str) -> Option<PersonalQr> {
    if text.len() > MAX_QR_LEN || !text.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    // Scheme and host are case-insensitive (QR generators often upper-case them); the path is not.
    let head = text.get(..SCHEME.len())?;
    if !head.eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let (host, rest) = text[SCHEME.len()..].split_once('/')?;
    if !QR_HOSTS.iter().any(|h| host.eq_ignore_ascii_case(h)) {
        return None;
    }
    let path = rest.split(['?', '#']).next().unwrap_or_default();
    if rest.is_empty() {
        // The bare host carries nothing to exchange.
        return None;
    }
    let (form, clear_text_msisdn) = match form_of(path) {
        Some((form, msisdn)) => (form, msisdn),
        None => (PersonalQrForm::Other, None),
    };
    Some(PersonalQr {
        raw: text.to_owned(),
        form,
        clear_text_msisdn,
    })
}

/// The known form of a QR URL's path, with the clear-text number when it parses.
fn form_of(path: &str) -> Option<(PersonalQrForm, Option<Msisdn>)> {
    if let Some(token) = path.strip_prefix("p/") {
        let valid = !token.is_empty()
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
        return valid.then_some((PersonalQrForm::Token, None));
    }
    let segments: Vec<&str> = path.split('/').collect();
    let [a, b, c, d, number] = segments.as_slice() else {
        return None;
    };
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if number.is_empty() || ![a, b, c, d].into_iter().all(|s| numeric(s)) {
        return None;
    }
    // An unparsable number is still a personal QR: the QR exchange decides.
    Some((PersonalQrForm::ClearText, number.parse().ok()))
}

/// The product barcode symbologies lanehub accepts; `as_str` is the name in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum BarcodeFormat {
    Ean13,
    Ean8,
    UpcA,
}

impl BarcodeFormat {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A product barcode whose check digit is valid: EAN-13, EAN-8 or UPC-A.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Barcode {
    format: BarcodeFormat,
    digits: String,
}

impl Barcode {
    pub fn format(&self) -> BarcodeFormat {
        self.format
    }

    /// The digits, check digit included.
    pub fn as_str(&self) -> &str {
        &self.digits
    }

    /// The 13-digit GTIN form (UPC-A and EAN-8 left-padded with zeros), for catalogue lookups.
    pub fn gtin13(&self) -> String {
        format!("{:0>13}", self.digits)
    }
}

/// Why a text is not a product barcode; `kind()` is the variant's name in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum BarcodeError {
    #[error("a barcode has only digits")]
    NotDigits,
    #[error("a barcode has 8 (EAN-8), 12 (UPC-A) or 13 (EAN-13) digits, not {len}")]
    WrongLength { len: usize },
    #[error("check digit is {found}, expected {expected}")]
    CheckDigit { expected: u8, found: u8 },
}

impl FromStr for Barcode {
    type Err = BarcodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BarcodeError::NotDigits);
        }
        let format = match s.len() {
            8 => BarcodeFormat::Ean8,
            12 => BarcodeFormat::UpcA,
            13 => BarcodeFormat::Ean13,
            len => return Err(BarcodeError::WrongLength { len }),
        };
        let digits: Vec<u8> = s.bytes().map(|b| b - b'0').collect();
        let (body, check) = digits.split_at(digits.len() - 1);
        let expected = gtin_check_digit(body);
        if check[0] != expected {
            return Err(BarcodeError::CheckDigit {
                expected,
                found: check[0],
            });
        }
        Ok(Self {
            format,
            digits: s.to_owned(),
        })
    }
}

impl fmt::Display for Barcode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits)
    }
}

/// The GS1 check digit: weights 3 and 1 alternate from the digit next to the check digit.
fn gtin_check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| u32::from(d) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    // `sum % 10` is below 10, so the result fits a u8.
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn qr(text: &str) -> PersonalQr {
        match classify(text) {
            ScanKind::VippsQr(q) => q,
            other => panic!("{text} classified as {}", other.kind_label()),
        }
    }

    #[test]
    fn check_digits() {
        for (valid, format) in [
            ("7038010009457", BarcodeFormat::Ean13),
            ("4006381333931", BarcodeFormat::Ean13),
            ("96385074", BarcodeFormat::Ean8),
            ("73513537", BarcodeFormat::Ean8),
            ("036000291452", BarcodeFormat::UpcA),
            ("012345678905", BarcodeFormat::UpcA),
        ] {
            let b: Barcode = valid.parse().unwrap_or_else(|e| panic!("{valid}: {e}"));
            assert_eq!(b.format(), format);
            assert_eq!(b.as_str(), valid);
        }
        for (invalid, err) in [
            (
                "7038010009458",
                BarcodeError::CheckDigit {
                    expected: 7,
                    found: 8,
                },
            ),
            (
                "96385075",
                BarcodeError::CheckDigit {
                    expected: 4,
                    found: 5,
                },
            ),
            (
                "036000291453",
                BarcodeError::CheckDigit {
                    expected: 2,
                    found: 3,
                },
            ),
            ("1234567", BarcodeError::WrongLength { len: 7 }),
            ("12345678901234", BarcodeError::WrongLength { len: 14 }),
            ("70380100094a7", BarcodeError::NotDigits),
            ("", BarcodeError::NotDigits),
            ("٣٤٥٦٧٨٩٠", BarcodeError::NotDigits),
        ] {
            assert_eq!(invalid.parse::<Barcode>(), Err(err), "{invalid}");
        }
    }

    #[test]
    fn gtin13_pads() {
        let upc: Barcode = "036000291452".parse().unwrap();
        assert_eq!(upc.gtin13(), "0036000291452");
        let ean8: Barcode = "96385074".parse().unwrap();
        assert_eq!(ean8.gtin13(), "0000096385074");
    }

    #[test]
    fn products_and_unknowns() {
        assert_eq!(classify("7038010009457").kind_label(), "product");
        assert_eq!(classify(" 7038010009457\r\n").kind_label(), "product");
        assert_eq!(classify("7038010009458").kind_label(), "unknown");
        assert_eq!(classify("hello").kind_label(), "unknown");
        assert_eq!(classify("").kind_label(), "unknown");
    }

    #[test]
    fn clear_text_vipps_qr_with_a_valid_number() {
        let q = qr("https://qr.vipps.no/28/2/01/031/4791234567?v=1");
        assert_eq!(q.form, PersonalQrForm::ClearText);
        assert_eq!(q.raw, "https://qr.vipps.no/28/2/01/031/4791234567?v=1");
        assert_eq!(
            q.clear_text_msisdn.as_ref().map(Msisdn::as_str),
            Some("4791234567")
        );
        // Scheme and host in capitals, extra query parameters, a suffix from the scanner.
        let q = qr("HTTPS://QR.VIPPS.NO/28/2/01/031/4791234567?v=1&ref=X\r\n");
        assert_eq!(
            q.raw,
            "HTTPS://QR.VIPPS.NO/28/2/01/031/4791234567?v=1&ref=X"
        );
        assert!(q.clear_text_msisdn.is_some());
    }

    #[test]
    fn personal_qrs_without_a_number_go_to_the_exchange_whole() {
        use PersonalQrForm::{ClearText, Other, Token};
        for (form, text) in [
            // Today's Vipps code with an invalid number keeps its raw text.
            (ClearText, "https://qr.vipps.no/28/2/01/031/47912?v=1"),
            (ClearText, "https://qr.vipps.no/28/2/01/031/47912345ab?v=1"),
            (
                ClearText,
                "https://qr.vipps.no/28/2/01/031/4791234567890123?v=1",
            ),
            // Tokenised, for Vipps and MobilePay.
            (Token, "https://qr.vipps.no/p/qwjhewqhueheuqwhuqwhe"),
            (Token, "https://qr.vipps.no/p/AbC-12_x.y~z"),
            // New shapes on a QR host.
            (Other, "https://qr.vipps.no/c/9f8e7d6c5b4a?v=3"),
            (Other, "https://qr.vipps.no/p/"),
            (Other, "https://qr.vipps.no/p/abc/def"),
            (Other, "https://qr.vipps.no/P/abc"),
            (Other, "https://qr.vipps.no/r/abcdef"),
            (Other, "https://qr.vipps.no/28/2/01/4791234567?v=1"),
            (Other, "https://qr.vipps.no/28/x/01/031/4791234567?v=1"),
            (Other, "https://qr.vipps.no/28/2/01/031/?v=1"),
            (Other, "https://qr.vipps.no/?id=abc"),
            (Other, "https://QR.MOBILEPAY.DK/u/AbC123"),
            (Other, "https://qr.mobilepay.fi/x"),
        ] {
            let q = qr(text);
            assert_eq!(q.form, form, "{text}");
            assert_eq!(q.clear_text_msisdn, None, "{text}");
            assert_eq!(q.raw, text);
        }
    }

    #[test]
    fn other_urls_are_unknown() {
        for text in [
            "https://example.com/28/2/01/031/4791234567?v=1",
            "http://qr.vipps.no/28/2/01/031/4791234567?v=1",
            "https://qr.vipps.no.evil.example/p/abc",
            "https://evil.example/qr.vipps.no/p/abc",
            "https://qr.vipps.no:8443/p/abc",
            "https://qr.vipps.no/p/abc def",
            "https://qr.vipps.no/",
            "https://qr.vipps.no",
            "https://qr.vipps.n",
            "https://www.vipps.no/",
            "https://mobilepay.dk/",
        ] {
            assert_eq!(classify(text), ScanKind::Unknown, "{text}");
        }
    }

    #[test]
    fn overlong_input_is_unknown() {
        let long = format!("https://qr.vipps.no/p/{}", "a".repeat(MAX_SCAN_BYTES));
        assert_eq!(classify(&long), ScanKind::Unknown);
        let long_token = format!("https://qr.vipps.no/p/{}", "a".repeat(MAX_QR_LEN));
        assert_eq!(classify(&long_token), ScanKind::Unknown);
    }

    #[test]
    fn debug_masks_the_number() {
        let q = qr("https://qr.vipps.no/28/2/01/031/4791234567?v=1");
        let shown = format!("{:?}", ScanKind::VippsQr(q));
        assert!(!shown.contains("4791234567"), "{shown}");
        assert!(shown.contains("47******67"), "{shown}");
    }

    proptest! {
        #[test]
        fn classify_never_panics(text in any::<String>()) {
            let kind = classify(&text);
            prop_assert!(["vipps_qr", "product", "unknown"].contains(&kind.kind_label()));
        }

        #[test]
        fn classify_never_panics_on_qr_like_text(
            tail in "[a-zA-Z0-9/?&=.#~_%-]{0,80}",
            upper in any::<bool>(),
        ) {
            let prefix = if upper { "HTTPS://QR.VIPPS.NO/" } else { "https://qr.vipps.no/" };
            let text = format!("{prefix}{tail}");
            if let ScanKind::VippsQr(q) = classify(&text) {
                prop_assert_eq!(q.raw, text);
            }
        }

        #[test]
        fn every_valid_ean13_is_a_product(body in proptest::collection::vec(0u8..10, 12)) {
            let check = gtin_check_digit(&body);
            let text: String = body.iter().chain([&check]).map(|d| char::from(b'0' + d)).collect();
            prop_assert_eq!(classify(&text).kind_label(), "product");
            // Any other check digit is refused.
            let wrong = (check + 1) % 10;
            let bad: String = body.iter().chain([&wrong]).map(|d| char::from(b'0' + d)).collect();
            prop_assert_eq!(classify(&bad).kind_label(), "unknown");
        }
    }
}
