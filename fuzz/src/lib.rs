//! The fuzz oracles: one function per fuzz target that feeds raw bytes to lanehub's untrusted-input
//! code and asserts what must hold for every input, not just the absence of a panic.
//!
//! The cargo-fuzz targets in `fuzz_targets/` are one-line wrappers around these functions, and
//! `tests/sim/fuzz_regressions.rs` includes this file with `#[path]` to replay the committed corpus
//! and every past crash in the normal `cargo test`. So this file may use only what the lanehub
//! package already depends on (lanehub itself, tokio, actix-web), and no fuzzing crate.
//!
//! What must stay true: each oracle is deterministic for its input and panics only when lanehub
//! broke one of the asserted properties.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::ResponseError;
use actix_web::http::StatusCode;
use tokio::time::Instant;

use lanehub::config::{ConfigError, KeyboardLayout, Settings};
use lanehub::http::api::{OrderLineBody, PaymentBody, RefundBody, ScanBody, amount};
use lanehub::http::extract::parse_json;
use lanehub::http::problem::ApiError;
use lanehub::lane::view::MoneyDto;
use lanehub::scanner::{
    BarcodeFormat, DEFAULT_INTER_REPORT_TIMEOUT, DecodeError, HidPosDecoder, KeyboardDecoder,
    MAX_SCAN_BYTES, PersonalQrForm, QR_HOSTS, Scan, ScanKind, classify,
};
use lanehub::session::PayRequest;
use lanehub::vipps::models::MAX_AMOUNT_MINOR_UNITS;
use lanehub::vipps::signature::{self, SignatureError};

/// Reads fuzz input front to back; past its end every read yields zeros or nothing, so any input
/// is a valid one.
struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        b
    }

    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.data.split_at(n.min(self.data.len()));
        self.data = rest;
        head
    }

    fn u64(&mut self) -> u64 {
        let mut raw = [0u8; 8];
        let got = self.bytes(8);
        raw[..got.len()].copy_from_slice(got);
        u64::from_le_bytes(raw)
    }

    /// A string of up to 255 bytes, its length first; invalid UTF-8 is replaced.
    fn string(&mut self) -> String {
        let len = usize::from(self.byte());
        String::from_utf8_lossy(self.bytes(len)).into_owned()
    }

    fn rest(&mut self) -> &'a [u8] {
        self.bytes(self.data.len())
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

// ---------------------------------------------------------------------------------------------
// classify_scan

/// `classify` on the input as text (invalid UTF-8 replaced, as a lossy reader would).
pub fn classify_scan(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let kind = classify(&text);
    assert!(
        ["vipps_qr", "product", "unknown"].contains(&kind.kind_label()),
        "unexpected label {}",
        kind.kind_label()
    );
    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
    match &kind {
        ScanKind::VippsQr(qr) => {
            assert_eq!(
                qr.raw, trimmed,
                "a personal QR keeps the trimmed scan whole"
            );
            assert!(text.len() <= MAX_SCAN_BYTES);
            let on_qr_host = QR_HOSTS.iter().any(|host| {
                let prefix = format!("https://{host}/");
                qr.raw
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(&prefix))
            });
            assert!(on_qr_host, "{}", qr.raw);
            match qr.form {
                PersonalQrForm::Token | PersonalQrForm::Other => {
                    assert!(qr.clear_text_msisdn.is_none())
                }
                PersonalQrForm::ClearText => {
                    if let Some(m) = &qr.clear_text_msisdn {
                        assert!(
                            qr.raw.contains(m.as_str()),
                            "the number comes from the code"
                        );
                    }
                }
            }
        }
        ScanKind::Product(barcode) => {
            let digits = barcode.as_str();
            assert_eq!(digits, trimmed, "a barcode is the trimmed scan");
            let expected_len = match barcode.format() {
                BarcodeFormat::Ean8 => 8,
                BarcodeFormat::UpcA => 12,
                BarcodeFormat::Ean13 => 13,
            };
            assert_eq!(digits.len(), expected_len, "{}", barcode.format().as_str());
            assert!(gs1_check_digit_holds(digits), "check digit of {digits}");
            assert_eq!(barcode.gtin13().len(), 13);
            assert!(barcode.gtin13().ends_with(digits));
        }
        ScanKind::Unknown => {}
    }
    // Surrounding ASCII whitespace (a scanner's suffix) never changes what a scan is.
    if text.len() <= MAX_SCAN_BYTES {
        assert_eq!(
            classify(trimmed),
            kind,
            "trimming changed the classification"
        );
    }
}

/// The GS1 rule, written independently of lanehub's: with weights 1, 3, 1, 3, … from the right
/// (the check digit weighs 1), the weighted digit sum is a multiple of ten.
fn gs1_check_digit_holds(digits: &str) -> bool {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .zip([1u32, 3].into_iter().cycle())
        .map(|(b, w)| u32::from(b - b'0') * w)
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------------
// hidpos_decoder

/// A well-formed one-report HID POS scan of `data` without an AIM id.
fn hidpos_report(data: &[u8]) -> Vec<u8> {
    let mut r = vec![0u8; 64];
    r[0] = 0x02;
    r[1] = u8::try_from(data.len()).expect("test scans fit one report");
    r[5..5 + data.len()].copy_from_slice(data);
    r
}

/// Splits the input into reports and feeds them to a `HidPosDecoder`: a selector byte below 0x80
/// starts a 64-byte report, any other one a report of `selector - 0x80` bytes (0 to 127).
pub fn hidpos_decoder(data: &[u8]) {
    let mut input = Reader::new(data);
    let mut decoder = HidPosDecoder::new();
    while !input.is_empty() {
        let selector = input.byte();
        let len = if selector < 0x80 {
            64
        } else {
            usize::from(selector - 0x80)
        };
        let report = input.bytes(len);
        let was_in_scan = decoder.in_scan();
        let result = decoder.feed(report);
        if let Ok(Some(scan)) = &result {
            check_scan(scan);
        }
        if let Some(&id) = report.first()
            && id != 0x02
        {
            // Another report of the device (status, say) leaves a scan in progress alone.
            assert!(matches!(
                result,
                Err(DecodeError::UnexpectedReportId { .. })
            ));
            assert_eq!(decoder.in_scan(), was_in_scan, "report id {id:#04x}");
        }
    }
    // Whatever came before, a decoder that is not inside a scan decodes the next one.
    if !decoder.in_scan() {
        let got = decoder.feed(&hidpos_report(b"12345670"));
        assert_eq!(got, Ok(Some(Scan::from_text("12345670"))), "no recovery");
    }
    decoder.reset();
    let got = decoder.feed(&hidpos_report(b"ok"));
    assert_eq!(
        got,
        Ok(Some(Scan::from_text("ok"))),
        "no recovery after reset"
    );
}

fn check_scan(scan: &Scan) {
    assert!(!scan.text.is_empty(), "an empty scan was reported");
    assert!(
        scan.text.len() <= MAX_SCAN_BYTES,
        "a scan of {} bytes",
        scan.text.len()
    );
    if let Some(aim) = &scan.symbology {
        assert!(aim.len() == 3 && aim.starts_with(']'), "symbology {aim:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// keyboard_decoder

/// Feeds boot keyboard reports to a `KeyboardDecoder`: the first byte picks the layout (bit 0:
/// Norwegian), then each 9-byte chunk is a gap in milliseconds before the report and the 8-byte
/// report; a short last chunk is a report of the wrong length.
pub fn keyboard_decoder(data: &[u8]) {
    let mut input = Reader::new(data);
    let layout = if input.byte() & 1 == 0 {
        KeyboardLayout::Us
    } else {
        KeyboardLayout::No
    };
    let mut decoder = KeyboardDecoder::new(layout, DEFAULT_INTER_REPORT_TIMEOUT);
    let mut at = Instant::now();
    while !input.is_empty() {
        at += Duration::from_millis(u64::from(input.byte()));
        let report = input.bytes(8);
        let result = decoder.feed(report, at);
        if let Ok(Some(scan)) = &result {
            check_scan(scan);
            assert!(
                !scan.text.contains(['\n', '\r', '\t']),
                "a terminator became text"
            );
        }
        if report.len() == 8 && report[2..].iter().any(|k| (0x01..=0x03).contains(k)) {
            // A roll-over report says nothing about the keys: it neither types nor fails.
            assert_eq!(result, Ok(None), "a roll-over report did something");
        }
    }
    // After a pause longer than the timeout and a report with every key up, a fresh scan
    // ("1", Enter) decodes whatever came before.
    at += DEFAULT_INTER_REPORT_TIMEOUT + Duration::from_millis(1);
    assert_eq!(
        decoder.feed(&[0; 8], at),
        Ok(None),
        "a release typed something"
    );
    let mut outcomes = Vec::new();
    for report in [
        [0, 0, 0x1E, 0, 0, 0, 0, 0],
        [0; 8],
        [0, 0, 0x28, 0, 0, 0, 0, 0],
        [0; 8],
    ] {
        at += Duration::from_millis(1);
        outcomes.push(decoder.feed(&report, at));
    }
    assert_eq!(
        outcomes,
        vec![Ok(None), Ok(None), Ok(Some(Scan::from_text("1"))), Ok(None)],
        "no recovery"
    );
}

// ---------------------------------------------------------------------------------------------
// terminal_api_bodies

/// The input as the JSON body of each terminal API call, then as the numbers of a payment built
/// field by field (so that valid payments are reached without valid JSON).
pub fn terminal_api_bodies(data: &[u8]) {
    match parse_json::<ScanBody>(data).and_then(ScanBody::validate) {
        Ok(text) => {
            assert!(!text.trim().is_empty());
            assert!(text.chars().count() <= lanehub::http::api::MAX_SCAN_CHARS);
            assert!(!text.chars().any(|c| c.is_control() && c != '\t'));
            // An accepted scan goes on to the classifier.
            classify(&text);
        }
        Err(e) => check_invalid_body(&e),
    }
    match parse_json::<PaymentBody>(data).and_then(PaymentBody::validate) {
        Ok(pay) => check_payment(&pay),
        Err(e) => check_invalid_body(&e),
    }
    match parse_json::<RefundBody>(data).and_then(|r| amount(r.amount, "amount")) {
        Ok(a) => assert!(["NOK", "DKK", "EUR"].contains(&a.currency.to_string().as_str())),
        Err(e) => check_invalid_body(&e),
    }
    match built_payment(&mut Reader::new(data)).validate() {
        Ok(pay) => check_payment(&pay),
        Err(e) => check_invalid_body(&e),
    }
}

/// Body errors are all 400 `invalid_body` with a message, and render without panicking.
fn check_invalid_body(e: &ApiError) {
    let ApiError::InvalidBody { field, detail } = e else {
        panic!("a body error that is not InvalidBody: {e:?}");
    };
    assert!(!detail.is_empty(), "an error without a message");
    if let Some(field) = field {
        assert!(!field.is_empty(), "an empty field name");
    }
    assert_eq!(e.kind(), "invalid_body");
    assert_eq!(e.error_response().status(), StatusCode::BAD_REQUEST);
}

fn check_payment(pay: &PayRequest) {
    assert!(pay.amount.value > 0, "a payment of zero was accepted");
    assert!(
        pay.amount.value <= MAX_AMOUNT_MINOR_UNITS,
        "over Vipps' limit"
    );
    // Vipps shows the description to the customer: 3 to 100 characters, no control characters.
    assert!(pay.description.trim().chars().count() >= 3);
    assert!(pay.description.chars().count() <= 100);
    assert!(!pay.description.chars().any(char::is_control));
    let lines = pay.order_lines.as_deref().unwrap_or_default();
    if let Some(r) = &pay.receipt_number {
        assert!((1..=30).contains(&r.len()));
        assert!(r.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert!(!lines.is_empty(), "a receipt number without order lines");
    }
    for line in lines {
        assert!(line.quantity >= 1);
        assert_eq!(
            u128::from(line.unit_price) * u128::from(line.quantity),
            u128::from(line.total),
            "a line total that is not unit price × quantity"
        );
        assert!(line.vat_amount <= line.total);
        assert!(line.vat_percent <= 100);
    }
    if !lines.is_empty() {
        let sum: u128 = lines.iter().map(|l| u128::from(l.total)).sum();
        assert_eq!(sum, u128::from(pay.amount.value), "order lines ≠ amount");
    }
}

/// A payment body built from bytes. Flags make line totals and the amount consistent on
/// request, so the fuzzer reaches the acceptance path as often as the refusals.
fn built_payment(input: &mut Reader<'_>) -> PaymentBody {
    let flags = input.byte();
    let currency = ["NOK", "DKK", "EUR", "nok", "", "SEK"][usize::from(input.byte() % 6)];
    let mut order_lines = Vec::new();
    for _ in 0..input.byte() % 4 {
        let quantity = u32::from(input.byte());
        let unit_price = if flags & 0x04 != 0 {
            input.u64()
        } else {
            u64::from(input.byte()) * 100
        };
        let total_amount = if flags & 0x01 != 0 {
            unit_price.wrapping_mul(u64::from(quantity))
        } else {
            input.u64()
        };
        order_lines.push(OrderLineBody {
            name: input.string(),
            id: input.string(),
            quantity,
            unit_price,
            total_amount,
            tax_amount: input.u64() % total_amount.saturating_add(2),
            tax_percentage: input.byte() % 110,
        });
    }
    let value = if flags & 0x02 != 0 {
        order_lines
            .iter()
            .fold(0u64, |acc, l| acc.wrapping_add(l.total_amount))
    } else {
        input.u64()
    };
    PaymentBody {
        amount: MoneyDto {
            value,
            currency: currency.to_owned(),
        },
        description: (flags & 0x08 != 0).then(|| input.string()),
        order_lines,
        receipt_number: (flags & 0x10 != 0).then(|| input.string()),
    }
}

// ---------------------------------------------------------------------------------------------
// webhook_verify

/// Fuzzed headers, body and secret through `verify`; then `sign` followed by `verify` with the
/// same values, which must succeed, and single-byte changes, which must fail.
pub fn webhook_verify(data: &[u8]) {
    let mut input = Reader::new(data);
    let present = input.byte();
    let secret = input.string();
    let path = input.string();
    let host = input.string();
    let date = input.string();
    let hash = input.string();
    let authorization = input.string();
    let at = u16::from_le_bytes([input.byte(), input.byte()]);
    let xor = input.byte().max(1);
    let body = input.rest();

    let got = signature::verify(
        &secret,
        &path,
        &host,
        (present & 1 != 0).then_some(date.as_str()),
        (present & 2 != 0).then_some(hash.as_str()),
        (present & 4 != 0).then_some(authorization.as_str()),
        body,
    );
    if got.is_ok() {
        // Accepting fuzzed headers is only right if they are exactly what signing produces: the
        // base64 decoding must not let two spellings of one signature through.
        let signed = signature::sign(&secret, &path, &host, &date, body);
        assert_eq!(authorization, signed.authorization, "a forged signature");
        assert_eq!(hash, signed.content_sha256, "a forged body hash");
    }

    let signed = signature::sign(&secret, &path, &host, &date, body);
    let verify = |date: &str, auth: &str, body: &[u8]| {
        signature::verify(
            &secret,
            &path,
            &host,
            Some(date),
            Some(&signed.content_sha256),
            Some(auth),
            body,
        )
    };
    assert_eq!(
        verify(&signed.date, &signed.authorization, body),
        Ok(()),
        "a signed delivery was refused"
    );

    let mut tampered = body.to_vec();
    match tampered.get_mut(usize::from(at) % body.len().max(1)) {
        Some(b) => *b ^= xor,
        None => tampered.push(xor),
    }
    assert_eq!(
        verify(&signed.date, &signed.authorization, &tampered),
        Err(SignatureError::ContentHashMismatch),
        "a changed body passed"
    );

    let mut auth = signed.authorization.clone().into_bytes();
    let i = usize::from(at) % auth.len();
    auth[i] ^= xor;
    let auth = String::from_utf8_lossy(&auth);
    assert!(
        verify(&signed.date, &auth, body).is_err(),
        "a changed signature passed"
    );

    if !signed.date.is_empty() {
        let mut changed = signed.date.clone().into_bytes();
        let i = usize::from(at) % changed.len();
        changed[i] ^= xor;
        // A changed byte inside a replacement character may come back as the same text.
        let changed = String::from_utf8_lossy(&changed);
        if changed != signed.date {
            assert_eq!(
                verify(&changed, &signed.authorization, body),
                Err(SignatureError::BadSignature),
                "a changed date passed"
            );
        }
    }

    // The freshness check takes any date text and any clock.
    let now = std::time::UNIX_EPOCH + Duration::from_secs(u64::from(present) << 28);
    let tolerance = Duration::from_secs(u64::from(at));
    if let Err(e) = signature::check_date(&date, now, tolerance) {
        assert_eq!(e, SignatureError::StaleDate);
    }
}

// ---------------------------------------------------------------------------------------------
// config_toml

static CONFIG_FILES: AtomicU64 = AtomicU64::new(0);

/// A fuzzed configuration file plus up to three `LANEHUB__…` variables through
/// `Settings::load`: it returns settings or a `ConfigError` that says where and what.
pub fn config_toml(data: &[u8]) {
    let mut input = Reader::new(data);
    let env: Vec<(String, String)> = (0..input.byte() % 4)
        .map(|_| (format!("LANEHUB__{}", input.string()), input.string()))
        .collect();
    let text = input.rest();

    let n = CONFIG_FILES.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "lanehub-fuzz-config-{}-{n}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).expect("the temp directory is writable");
    let result = Settings::load(Some(&path), env.clone());
    // Removal can only fail if something else removed the file: nothing to clean up then.
    let _ = std::fs::remove_file(&path);

    match result {
        Ok(settings) => {
            // Loaded settings are usable by what start-up builds from them.
            lanehub::http::extract::ApiTokens::from_settings(&settings);
        }
        Err(e) => check_config_error(&e),
    }
}

fn check_config_error(e: &ConfigError) {
    assert!(!e.origin.is_empty(), "an error without an origin: {e}");
    assert!(!e.message.is_empty(), "an error without a message: {e}");
    assert!(e.to_string().contains(&e.message));
}
