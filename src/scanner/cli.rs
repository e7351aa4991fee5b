//! `lanehub scanner list` and `lanehub scanner decode`: find a scanner's identifiers, and decode
//! recorded HID reports without a device.
//!
//! `decode` reads one report per line as hex bytes (`02 0d 5d 45 30 ...`); blank lines and lines
//! starting with `#` are skipped. Each scan is printed as one JSON object per line; every bad
//! line is named on stderr and the exit code is 1 if there was any.

use std::io::{self, BufRead, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use tokio::time::Instant;

use crate::config::{HidProtocol, KeyboardLayout};
use crate::scanner::classify::{ScanKind, classify};
use crate::scanner::decode::{ReportDecoder, Scan};
use crate::scanner::hid::{DeviceError, HidDeviceSummary, list_devices};
use crate::scanner::keyboard::DEFAULT_INTER_REPORT_TIMEOUT;

/// Recorded reports carry no time; `decode` takes them as arriving this far apart, well inside
/// the inter-report timeout.
const DECODE_REPORT_INTERVAL: Duration = Duration::from_millis(1);

#[derive(Debug, Subcommand)]
pub enum ScannerCommand {
    /// List HID devices with the VID, PID, serial and path a lane's scanner configuration uses.
    List {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Decode HID reports (hex bytes, one report per line on stdin) into JSON lines.
    Decode {
        #[arg(long, value_enum)]
        protocol: ProtocolArg,
        /// Keyboard layout the scanner types with (keyboard protocol only).
        #[arg(long, value_enum, default_value = "us")]
        layout: LayoutArg,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProtocolArg {
    HidPos,
    Keyboard,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LayoutArg {
    Us,
    No,
}

impl From<ProtocolArg> for HidProtocol {
    fn from(p: ProtocolArg) -> Self {
        match p {
            ProtocolArg::HidPos => HidProtocol::HidPos,
            ProtocolArg::Keyboard => HidProtocol::Keyboard,
        }
    }
}

impl From<LayoutArg> for KeyboardLayout {
    fn from(l: LayoutArg) -> Self {
        match l {
            LayoutArg::Us => KeyboardLayout::Us,
            LayoutArg::No => KeyboardLayout::No,
        }
    }
}

/// Runs a `scanner` subcommand and returns the process exit code.
pub fn run(command: ScannerCommand) -> ExitCode {
    match command {
        ScannerCommand::List { json } => list(json),
        ScannerCommand::Decode { protocol, layout } => {
            let decoder =
                ReportDecoder::new(protocol.into(), layout.into(), DEFAULT_INTER_REPORT_TIMEOUT);
            let stdin = io::stdin().lock();
            let stdout = io::stdout().lock();
            let stderr = io::stderr().lock();
            match decode_stream(stdin, stdout, stderr, decoder) {
                Ok(DecodeSummary { errors: 0, .. }) => ExitCode::SUCCESS,
                Ok(_) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn list(json: bool) -> ExitCode {
    let devices = match list_devices() {
        Ok(d) => d,
        Err(e @ DeviceError::Init(_)) => {
            eprintln!("error: {e} (on Linux, hidapi needs /sys and udev to enumerate devices)");
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let printed = if json {
        if devices.is_empty() {
            eprintln!("no HID devices found");
        }
        serde_json::to_string_pretty(&devices)
            .map_err(io::Error::other)
            .and_then(|s| writeln!(io::stdout(), "{s}"))
    } else if devices.is_empty() {
        writeln!(
            io::stdout(),
            "no HID devices found (on Linux, check that /dev/hidraw* is readable by this user)"
        )
    } else {
        print_table(&mut io::stdout().lock(), &devices)
    };
    match printed {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: cannot write the list: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_table(out: &mut impl Write, devices: &[HidDeviceSummary]) -> io::Result<()> {
    let header = [
        "VID",
        "PID",
        "SERIAL",
        "USAGE_PAGE",
        "USAGE",
        "PROTOCOL",
        "PATH",
        "PORT",
        "MANUFACTURER",
        "PRODUCT",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 10]> = devices
        .iter()
        .map(|d| {
            let or_dash = |s: &Option<String>| s.clone().unwrap_or_else(|| "-".into());
            [
                format!("{:04x}", d.vid),
                format!("{:04x}", d.pid),
                or_dash(&d.serial),
                format!("0x{:02x}", d.usage_page),
                format!("0x{:02x}", d.usage),
                match d.likely_protocol() {
                    Some(HidProtocol::HidPos) => "hid-pos".into(),
                    Some(HidProtocol::Keyboard) => "keyboard".into(),
                    None => "-".into(),
                },
                d.path.clone(),
                or_dash(&d.port),
                or_dash(&d.manufacturer),
                or_dash(&d.product),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// What `decode_stream` saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeSummary {
    pub scans: usize,
    pub errors: usize,
}

/// Decodes hex reports from `input`, one per line: JSON lines to `out`, one message per bad
/// line to `err`.
pub fn decode_stream(
    input: impl BufRead,
    mut out: impl Write,
    mut err: impl Write,
    mut decoder: ReportDecoder,
) -> io::Result<DecodeSummary> {
    let mut summary = DecodeSummary {
        scans: 0,
        errors: 0,
    };
    let start = Instant::now();
    let mut at = start;
    for (index, line) in input.split(b'\n').enumerate() {
        let line = line?;
        let number = index + 1;
        let Ok(text) = std::str::from_utf8(&line) else {
            writeln!(err, "line {number}: not UTF-8 text")?;
            summary.errors += 1;
            continue;
        };
        let text = text.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let report = match parse_hex(text) {
            Ok(r) => r,
            Err(e) => {
                writeln!(err, "line {number}: {e}")?;
                summary.errors += 1;
                continue;
            }
        };
        at += DECODE_REPORT_INTERVAL;
        match decoder.feed(&report, at) {
            Ok(Some(scan)) => {
                writeln!(out, "{}", scan_json(&scan))?;
                summary.scans += 1;
            }
            Ok(None) => {}
            Err(e) => {
                writeln!(err, "line {number}: {e}")?;
                summary.errors += 1;
            }
        }
    }
    if decoder.in_scan() {
        writeln!(
            err,
            "end of input inside a scan: its last report or terminator is missing"
        )?;
        summary.errors += 1;
    }
    out.flush()?;
    Ok(summary)
}

/// One scan as `decode` prints it.
pub fn scan_json(scan: &Scan) -> serde_json::Value {
    let kind = classify(&scan.text);
    let mut value = json!({
        "text": scan.text,
        "symbology": scan.symbology,
        "kind": kind.kind_label(),
    });
    match &kind {
        ScanKind::VippsQr(qr) => {
            value["qr_form"] = json!(qr.form.as_str());
            if let Some(msisdn) = &qr.clear_text_msisdn {
                value["msisdn_masked"] = json!(msisdn.masked());
            }
        }
        ScanKind::Product(barcode) => {
            value["barcode_format"] = json!(barcode.format().as_str());
        }
        ScanKind::Unknown => {}
    }
    value
}

/// Why a line is not a report.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    #[error("`{token}` is not hex bytes (expected pairs of hex digits such as `02 0d 5d`)")]
    NotHex { token: String },
}

impl HexError {
    pub fn kind(&self) -> &'static str {
        "not_hex"
    }
}

/// Parses whitespace-separated hex: each token is one or more bytes (`02`, `020d`, `0x02`).
pub fn parse_hex(line: &str) -> Result<Vec<u8>, HexError> {
    let mut bytes = Vec::new();
    for token in line.split_whitespace() {
        let digits = token
            .strip_prefix("0x")
            .or_else(|| token.strip_prefix("0X"))
            .unwrap_or(token);
        let bad = || HexError::NotHex {
            // Bounded so a huge garbage line does not flood the terminal.
            token: token.chars().take(40).collect(),
        };
        if digits.is_empty() || digits.len() % 2 != 0 {
            return Err(bad());
        }
        // Digit by digit: `u8::from_str_radix` alone would also take a sign such as `+1`.
        let digit = |b: u8| char::from(b).to_digit(16);
        for pair in digits.as_bytes().chunks(2) {
            let (Some(high), Some(low)) = (digit(pair[0]), digit(pair[1])) else {
                return Err(bad());
            };
            bytes.push(u8::try_from(high * 16 + low).map_err(|_| bad())?);
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("02 0d 5D"), Ok(vec![0x02, 0x0d, 0x5d]));
        assert_eq!(parse_hex("020d5d"), Ok(vec![0x02, 0x0d, 0x5d]));
        assert_eq!(parse_hex("0x02\t0XfF"), Ok(vec![0x02, 0xff]));
        for bad in ["zz", "0", "02 0", "0x", "+1", "éé", "02 -1"] {
            assert!(parse_hex(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_hex("02 zz").unwrap_err().to_string(),
            "`zz` is not hex bytes (expected pairs of hex digits such as `02 0d 5d`)"
        );
    }

    fn decode(protocol: HidProtocol, input: &[u8]) -> (String, String, DecodeSummary) {
        let decoder =
            ReportDecoder::new(protocol, KeyboardLayout::Us, DEFAULT_INTER_REPORT_TIMEOUT);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let summary = decode_stream(input, &mut out, &mut err, decoder).unwrap();
        (
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
            summary,
        )
    }

    #[test]
    fn keyboard_lines_with_errors_named_by_line() {
        let input = b"# comment\n\n00 00 1e 00 00 00 00 00\nzz\n00 00 00 00 00 00 00 00\n\xff\n00 00 28 00 00 00 00 00\n";
        let (out, err, summary) = decode(HidProtocol::Keyboard, input);
        let line: serde_json::Value = serde_json::from_str(out.trim_end()).unwrap();
        assert_eq!(
            line,
            json!({"text": "1", "symbology": null, "kind": "unknown"})
        );
        assert_eq!(out.lines().count(), 1);
        assert_eq!(
            err,
            "line 4: `zz` is not hex bytes (expected pairs of hex digits such as `02 0d 5d`)\n\
             line 6: not UTF-8 text\n"
        );
        assert_eq!(
            summary,
            DecodeSummary {
                scans: 1,
                errors: 2
            }
        );
    }

    #[test]
    fn input_ending_inside_a_scan_is_an_error() {
        let (out, err, summary) = decode(HidProtocol::Keyboard, b"00 00 1e 00 00 00 00 00\n");
        assert_eq!(out, "");
        assert!(err.contains("end of input inside a scan"), "{err}");
        assert_eq!(summary.errors, 1);
    }

    #[test]
    fn decode_errors_are_reported_with_their_line() {
        let (_, err, summary) = decode(HidProtocol::HidPos, b"02 01 00\n");
        assert_eq!(err, "line 1: report has 3 bytes, expected 64\n");
        assert_eq!(summary.errors, 1);
    }

    #[test]
    fn json_has_kind_specific_fields() {
        let qr = scan_json(&Scan {
            text: "https://qr.vipps.no/28/2/01/031/4791234567?v=1".into(),
            symbology: Some("]Q1".into()),
        });
        assert_eq!(qr["kind"], "vipps_qr");
        assert_eq!(qr["qr_form"], "clear_text");
        assert_eq!(qr["msisdn_masked"], "47******67");
        assert_eq!(qr["symbology"], "]Q1");
        let product = scan_json(&Scan::from_text("7038010009457"));
        assert_eq!(product["kind"], "product");
        assert_eq!(product["barcode_format"], "ean13");
        assert_eq!(product["symbology"], serde_json::Value::Null);
    }

    #[test]
    fn table_lists_every_device() {
        let devices = [HidDeviceSummary {
            vid: 0x0c2e,
            pid: 0x0b61,
            serial: None,
            usage_page: 0x8c,
            usage: 0x02,
            path: "/dev/hidraw2".into(),
            port: Some("1-2".into()),
            manufacturer: Some("Honeywell".into()),
            product: Some("Xenon".into()),
            interface: 0,
        }];
        let mut out = Vec::new();
        print_table(&mut out, &devices).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("VID   PID   SERIAL"), "{out}");
        for field in [
            "0c2e",
            "0b61",
            "0x8c",
            "hid-pos",
            "/dev/hidraw2",
            "1-2",
            "Honeywell",
            "Xenon",
        ] {
            assert!(lines[1].contains(field), "{field} missing in {out}");
        }
    }
}
