//! Barcode and QR scanners: pure report decoders, scan classification, and the device reader.
//!
//! A lane owns one or more scanners. Each `hid` scanner gets one OS thread that reads reports
//! with a timeout, decodes them (`HidPosDecoder` or `KeyboardDecoder`), classifies the text
//! (`classify`) and forwards a `ScanReceived` with `try_send` on a bounded channel; it never
//! blocks the tokio runtime or an actor. `terminal` scanners spawn nothing and `simulated` ones
//! are fed through `ScannerHandle::push`.
//!
//! What must stay true: decoders and the classifier are pure (time is passed in), never panic on
//! any input, and recover for the next scan after garbage. Scan text may hold a phone number, so
//! `Scan` and `PersonalQr` never print it in `Debug` and the reader never logs it.

pub mod classify;
pub mod cli;
pub mod decode;
pub mod hid;
pub mod hidpos;
pub mod keyboard;
pub mod lifecycle;
pub mod reader;

pub use classify::{
    Barcode, BarcodeError, BarcodeFormat, PersonalQr, PersonalQrForm, QR_HOSTS, ScanKind, classify,
};
pub use decode::{DecodeError, MAX_SCAN_BYTES, ReportDecoder, Scan};
pub use hid::DeviceError;
pub use hidpos::HidPosDecoder;
pub use keyboard::{DEFAULT_INTER_REPORT_TIMEOUT, KeyboardDecoder};
pub use lifecycle::{ReopenBackoff, ScannerState};
pub use reader::{
    HidPort, HidSource, PushError, ReaderConfig, SCAN_CHANNEL_CAPACITY, ScanReceived,
    ScannerHandle, ScannerStats, SpawnError,
};
