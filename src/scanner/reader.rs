//! `ScannerHandle`: one running scanner of a lane, and the reader thread behind a `hid` one.
//!
//! A `hid` scanner gets one OS thread that reads with a timeout, decodes, classifies and forwards
//! each scan as a `ScanReceived` with `try_send` on the lane's bounded channel: it never blocks
//! the runtime or an actor, and a full channel drops the scan and counts it. The thread follows
//! `lifecycle::Lifecycle` (Closed, Claimed, Enabled, Offline, with a capped backoff between
//! reopen attempts) and publishes the state on a `watch` channel. The device sits behind the
//! `HidSource` and `HidPort` traits so tests drive the thread with a fake device.
//!
//! What must stay true: the thread ends soon after `stop()` (within one read timeout or pause
//! slice), or when the lane's receiver is gone; it never logs scan text.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::ErrorKind;
use crate::config::{ScannerRole, ScannerSettings, ScannerSource};
use crate::scanner::classify::{ScanKind, classify};
use crate::scanner::decode::{DecodeError, MAX_SCAN_BYTES, ReportDecoder, Scan};
use crate::scanner::hid::{DeviceError, HidApiSource};
use crate::scanner::lifecycle::{Lifecycle, ReaderEvent, ReaderStep, ReopenBackoff, ScannerState};

/// Capacity of a lane's scan channel (`mpsc::channel(SCAN_CHANNEL_CAPACITY)`); a customer
/// cannot scan faster than a lane drains a handful of messages.
pub const SCAN_CHANNEL_CAPACITY: usize = 32;
/// How long one read waits for a report before the thread checks its stop flag.
pub const READ_TIMEOUT: Duration = Duration::from_millis(100);
/// Larger than any report the decoders accept, so an oversized report is seen as one.
const REPORT_BUFFER_BYTES: usize = 256;

/// A scan from one of the lane's scanners, classified: the message the lane consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReceived {
    pub role: ScannerRole,
    pub source: ScannerSource,
    pub scan: Scan,
    pub kind: ScanKind,
    pub at: Instant,
}

impl ScanReceived {
    /// Classifies `scan`, which arrived at `at` from a scanner with `role` and `source`.
    pub fn new(role: ScannerRole, source: ScannerSource, scan: Scan, at: Instant) -> Self {
        let kind = classify(&scan.text);
        Self {
            role,
            source,
            scan,
            kind,
            at,
        }
    }
}

/// An open device the reader thread reads reports from.
pub trait HidPort {
    /// Reads one input report into `buf`, waiting at most `timeout`; `Ok(0)` when none came.
    /// An error means the device is gone.
    fn read(&mut self, buf: &mut [u8], timeout: Duration) -> Result<usize, DeviceError>;
}

/// Opens the configured device; the seam between the reader thread and hidapi.
pub trait HidSource: Send + 'static {
    fn open(&mut self) -> Result<Box<dyn HidPort>, DeviceError>;
    /// Waits `delay` before the next attempt to open, returning early once `stop` is set.
    fn pause(&mut self, delay: Duration, stop: &AtomicBool);
    /// The device for logs and the thread name, such as `0c2e:0b61`.
    fn describe(&self) -> String;
}

/// How the reader thread reads and backs off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReaderConfig {
    pub read_timeout: Duration,
    pub backoff: ReopenBackoff,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            read_timeout: READ_TIMEOUT,
            backoff: ReopenBackoff::default(),
        }
    }
}

/// Counters of one scanner since it was spawned.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScannerStats {
    /// Scans handed to the lane's channel.
    pub forwarded: u64,
    /// Scans lost because the lane's channel was full.
    pub dropped: u64,
    /// Reports that did not decode.
    pub decode_errors: u64,
    /// Partial scans dropped after the inter-report timeout.
    pub partials_expired: u64,
    /// Times the device was opened (the first open included).
    pub opens: u64,
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    forwarded: AtomicU64,
    dropped: AtomicU64,
    decode_errors: AtomicU64,
    partials_expired: AtomicU64,
    opens: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Why a scanner could not be started; `kind()` is the variant's name in snake_case.
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum SpawnError {
    #[error("a hid scanner needs `protocol` (\"hid-pos\" or \"keyboard\")")]
    MissingProtocol,
    #[error("a hid scanner needs `vid` and `pid`")]
    MissingDevice,
    #[error("cannot start the scanner thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// Why `ScannerHandle::push` refused a text; `kind()` is the variant's name in snake_case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum PushError {
    #[error("a hid scanner reads its device; text cannot be pushed to it")]
    NotPushable,
    #[error("the scanner is stopped")]
    Stopped,
    #[error("scan is longer than {max} bytes")]
    TooLong { max: usize },
    #[error("the lane's scan queue is full; scan dropped")]
    Full,
    #[error("the lane no longer receives scans")]
    Closed,
}

/// One running scanner: its state, its counters, and for simulated and terminal scanners a way
/// to push text. Dropping the handle stops a reader thread.
#[derive(Debug)]
pub struct ScannerHandle {
    role: ScannerRole,
    source: ScannerSource,
    state: watch::Receiver<ScannerState>,
    shared: Arc<Shared>,
    /// For scanners without a thread: where `push` sends, and who publishes `Closed` on stop.
    pushable: Option<(mpsc::Sender<ScanReceived>, watch::Sender<ScannerState>)>,
    thread: Option<JoinHandle<()>>,
}

impl ScannerHandle {
    /// Starts the scanner `settings` describe, forwarding its scans to `tx`: a reader thread for
    /// `hid`, nothing for `terminal` and `simulated` (they take text through `push`).
    pub fn spawn(
        settings: &ScannerSettings,
        tx: mpsc::Sender<ScanReceived>,
    ) -> Result<Self, SpawnError> {
        match settings.source {
            ScannerSource::Hid => {
                let decoder =
                    ReportDecoder::for_settings(settings).ok_or(SpawnError::MissingProtocol)?;
                let source = HidApiSource::from_settings(settings)?;
                Self::spawn_reader(settings.role, source, decoder, tx, ReaderConfig::default())
            }
            ScannerSource::Terminal | ScannerSource::Simulated => {
                Ok(Self::without_thread(settings.role, settings.source, tx))
            }
        }
    }

    /// Starts a reader thread on any `HidSource` (hidapi, or a fake in tests).
    pub fn spawn_reader<S: HidSource>(
        role: ScannerRole,
        source: S,
        decoder: ReportDecoder,
        tx: mpsc::Sender<ScanReceived>,
        config: ReaderConfig,
    ) -> Result<Self, SpawnError> {
        let (state_tx, state) = watch::channel(ScannerState::Closed);
        let shared = Arc::new(Shared::default());
        let reader = Reader {
            role,
            device: source.describe(),
            tx,
            state_tx,
            shared: Arc::clone(&shared),
            config,
        };
        let thread = std::thread::Builder::new()
            // Linux keeps 15 bytes of a thread name: `scan-0c2e:0b61` fits.
            .name(format!("scan-{}", reader.device))
            .spawn(move || reader.run(source, decoder))
            .map_err(SpawnError::Thread)?;
        Ok(Self {
            role,
            source: ScannerSource::Hid,
            state,
            shared,
            pushable: None,
            thread: Some(thread),
        })
    }

    fn without_thread(
        role: ScannerRole,
        source: ScannerSource,
        tx: mpsc::Sender<ScanReceived>,
    ) -> Self {
        let (state_tx, state) = watch::channel(ScannerState::Enabled);
        Self {
            role,
            source,
            state,
            shared: Arc::new(Shared::default()),
            pushable: Some((tx, state_tx)),
            thread: None,
        }
    }

    pub fn role(&self) -> ScannerRole {
        self.role
    }

    pub fn source(&self) -> ScannerSource {
        self.source
    }

    /// The scanner's current state.
    pub fn state(&self) -> ScannerState {
        *self.state.borrow()
    }

    /// A receiver that sees every later state change (`changed().await`, `wait_for`).
    pub fn subscribe(&self) -> watch::Receiver<ScannerState> {
        self.state.clone()
    }

    /// A snapshot of the scanner's counters.
    pub fn stats(&self) -> ScannerStats {
        let s = &self.shared;
        ScannerStats {
            forwarded: s.forwarded.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            decode_errors: s.decode_errors.load(Ordering::Relaxed),
            partials_expired: s.partials_expired.load(Ordering::Relaxed),
            opens: s.opens.load(Ordering::Relaxed),
        }
    }

    /// Hands `text` to the lane as a scan of this simulated or terminal scanner, without waiting.
    pub fn push(&self, text: &str) -> Result<(), PushError> {
        let Some((tx, _)) = &self.pushable else {
            return Err(PushError::NotPushable);
        };
        if self.shared.stop.load(Ordering::Acquire) {
            return Err(PushError::Stopped);
        }
        if text.len() > MAX_SCAN_BYTES {
            return Err(PushError::TooLong {
                max: MAX_SCAN_BYTES,
            });
        }
        let message = ScanReceived::new(
            self.role,
            self.source,
            Scan::from_text(text),
            Instant::now(),
        );
        match tx.try_send(message) {
            Ok(()) => {
                bump(&self.shared.forwarded);
                Ok(())
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.shared.dropped);
                Err(PushError::Full)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(PushError::Closed),
        }
    }

    /// Asks the scanner to stop without waiting; a reader thread ends within one read timeout
    /// and publishes `Closed`.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some((_, state_tx)) = &self.pushable {
            state_tx.send_replace(ScannerState::Closed);
        }
    }

    /// True once the reader thread has ended (always true for scanners without one).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for ScannerHandle {
    fn drop(&mut self) {
        // Not joined: dropping must not block an actor for up to one read timeout.
        self.stop();
    }
}

/// The reader thread's side of a `hid` scanner.
struct Reader {
    role: ScannerRole,
    device: String,
    tx: mpsc::Sender<ScanReceived>,
    state_tx: watch::Sender<ScannerState>,
    shared: Arc<Shared>,
    config: ReaderConfig,
}

impl Reader {
    fn run<S: HidSource>(self, mut source: S, mut decoder: ReportDecoder) {
        let mut lifecycle = Lifecycle::new(self.config.backoff);
        let mut port: Option<Box<dyn HidPort>> = None;
        let mut buf = vec![0u8; REPORT_BUFFER_BYTES];
        let mut failures_in_a_row = 0u32;
        let mut event = ReaderEvent::Started;
        loop {
            if self.shared.stop.load(Ordering::Acquire) || self.tx.is_closed() {
                event = ReaderEvent::StopRequested;
            }
            let step = match lifecycle.step(event) {
                Ok(step) => step,
                Err(e) => {
                    tracing::error!(device = %self.device, error = %e, kind = e.kind(), "scanner reader stops");
                    break;
                }
            };
            self.publish(lifecycle.state());
            event = match step {
                ReaderStep::Open => match source.open() {
                    Ok(opened) => {
                        port = Some(opened);
                        decoder.reset();
                        bump(&self.shared.opens);
                        failures_in_a_row = 0;
                        ReaderEvent::Opened
                    }
                    Err(e) => {
                        failures_in_a_row += 1;
                        // The first failure of a streak is news; the retries that follow are not.
                        if failures_in_a_row == 1 {
                            tracing::warn!(device = %self.device, error = %e, kind = e.kind(), "scanner cannot be opened; retrying");
                        } else {
                            tracing::debug!(device = %self.device, error = %e, attempt = failures_in_a_row, "scanner still cannot be opened");
                        }
                        ReaderEvent::OpenFailed
                    }
                },
                ReaderStep::Read => self.read(&mut port, &mut decoder, &mut buf),
                ReaderStep::Pause(delay) => {
                    source.pause(delay, &self.shared.stop);
                    ReaderEvent::PauseOver
                }
                ReaderStep::Exit => break,
            };
        }
        self.publish(ScannerState::Closed);
    }

    fn read(
        &self,
        port: &mut Option<Box<dyn HidPort>>,
        decoder: &mut ReportDecoder,
        buf: &mut [u8],
    ) -> ReaderEvent {
        let Some(device) = port.as_mut() else {
            return ReaderEvent::ReadFailed;
        };
        match device.read(buf, self.config.read_timeout) {
            Ok(n) => {
                let now = Instant::now();
                if decoder.expire(now) {
                    bump(&self.shared.partials_expired);
                    tracing::debug!(device = %self.device, "partial scan dropped after the inter-report timeout");
                }
                if n > 0 {
                    self.decoded(decoder.feed(&buf[..n.min(buf.len())], now), now);
                }
                ReaderEvent::ReadSucceeded
            }
            Err(e) => {
                *port = None;
                decoder.reset();
                tracing::warn!(device = %self.device, error = %e, kind = e.kind(), "scanner read failed");
                ReaderEvent::ReadFailed
            }
        }
    }

    fn decoded(&self, result: Result<Option<Scan>, DecodeError>, now: Instant) {
        let scan = match result {
            Ok(Some(scan)) => scan,
            Ok(None) => return,
            Err(e) => {
                bump(&self.shared.decode_errors);
                tracing::warn!(device = %self.device, error = %e, kind = e.kind(), "scanner report not decoded");
                return;
            }
        };
        let message = ScanReceived::new(self.role, ScannerSource::Hid, scan, now);
        let kind = message.kind.kind_label();
        match self.tx.try_send(message) {
            Ok(()) => {
                bump(&self.shared.forwarded);
                tracing::debug!(device = %self.device, kind, "scan forwarded");
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                bump(&self.shared.dropped);
                tracing::warn!(device = %self.device, kind, capacity = self.tx.max_capacity(), "lane scan queue full; scan dropped");
            }
            // The lane is gone; the loop sees the closed channel and stops.
            Err(mpsc::error::TrySendError::Closed(_)) => {}
        }
    }

    fn publish(&self, state: ScannerState) {
        let changed = self.state_tx.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        if changed {
            match state {
                ScannerState::Offline => {
                    tracing::warn!(device = %self.device, role = ?self.role, "scanner offline")
                }
                ScannerState::Enabled => {
                    tracing::info!(device = %self.device, role = ?self.role, "scanner online")
                }
                ScannerState::Closed | ScannerState::Claimed => {
                    tracing::debug!(device = %self.device, state = state.as_str(), "scanner state")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::mpsc as std_mpsc;

    use super::*;
    use crate::config::{HidProtocol, KeyboardLayout};
    use crate::scanner::keyboard::DEFAULT_INTER_REPORT_TIMEOUT;

    /// What the fake device's next read returns.
    enum Read {
        Report(Vec<u8>),
        Unplug,
    }

    /// A fake device: reads come from a channel the test feeds; with nothing queued a read
    /// times out quietly (after a short real wait, standing in for the device's blocking read).
    struct FakePort(std_mpsc::Receiver<Read>);

    impl HidPort for FakePort {
        fn read(&mut self, buf: &mut [u8], _timeout: Duration) -> Result<usize, DeviceError> {
            match self.0.recv_timeout(Duration::from_millis(2)) {
                Ok(Read::Report(r)) => {
                    buf[..r.len()].copy_from_slice(&r);
                    Ok(r.len())
                }
                Ok(Read::Unplug) | Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                    Err(DeviceError::Read("device disconnected".into()))
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => Ok(0),
            }
        }
    }

    /// A fake USB port: each open waits for the test to say whether a device is plugged in
    /// (`Some(reports)`) or not (`None`), so every state the test waits for is stable. Pauses
    /// are recorded instead of slept.
    struct FakeSource {
        plug: std_mpsc::Receiver<Option<std_mpsc::Receiver<Read>>>,
        pauses: Arc<Mutex<Vec<Duration>>>,
    }

    impl HidSource for FakeSource {
        fn open(&mut self) -> Result<Box<dyn HidPort>, DeviceError> {
            match self.plug.recv() {
                Ok(Some(reports)) => Ok(Box::new(FakePort(reports))),
                // Not plugged in, or the test is over.
                Ok(None) | Err(_) => Err(DeviceError::NotFound),
            }
        }

        fn pause(&mut self, delay: Duration, _stop: &AtomicBool) {
            self.pauses
                .lock()
                .expect("pause log lock is never poisoned in tests")
                .push(delay);
        }

        fn describe(&self) -> String {
            "fake".into()
        }
    }

    type Plug = std_mpsc::Sender<Option<std_mpsc::Receiver<Read>>>;

    fn fake_source() -> (FakeSource, Plug, Arc<Mutex<Vec<Duration>>>) {
        let (plug_tx, plug) = std_mpsc::channel();
        let pauses = Arc::new(Mutex::new(Vec::new()));
        let source = FakeSource {
            plug,
            pauses: Arc::clone(&pauses),
        };
        (source, plug_tx, pauses)
    }

    fn hidpos_report(data: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 64];
        r[0] = 0x02;
        r[1] = u8::try_from(data.len()).expect("test data fits one report");
        r[2..5].copy_from_slice(b"]E0");
        r[5..5 + data.len()].copy_from_slice(data);
        r
    }

    fn config() -> ReaderConfig {
        ReaderConfig {
            read_timeout: Duration::from_millis(2),
            backoff: ReopenBackoff::new(Duration::from_millis(10), Duration::from_millis(40)),
        }
    }

    async fn wait_for_state(rx: &mut watch::Receiver<ScannerState>, want: ScannerState) {
        tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|s| *s == want))
            .await
            .unwrap_or_else(|_| panic!("scanner never reached {want:?}"))
            .unwrap_or_else(|_| panic!("state channel closed before {want:?}"));
    }

    async fn next_scan(rx: &mut mpsc::Receiver<ScanReceived>) -> ScanReceived {
        tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("a scan within the time limit")
            .expect("scan channel open")
    }

    /// A reader of a HID POS scanner on `source`, with the test `config()`.
    fn spawn_hidpos_reader(
        role: ScannerRole,
        source: FakeSource,
        tx: mpsc::Sender<ScanReceived>,
    ) -> ScannerHandle {
        let decoder = ReportDecoder::new(
            HidProtocol::HidPos,
            KeyboardLayout::Us,
            DEFAULT_INTER_REPORT_TIMEOUT,
        );
        ScannerHandle::spawn_reader(role, source, decoder, tx, config()).unwrap()
    }

    #[tokio::test]
    async fn reader_forwards_scans_goes_offline_on_unplug_and_reopens_with_backoff() {
        let (source, plug, pauses) = fake_source();
        let (tx, mut rx) = mpsc::channel(SCAN_CHANNEL_CAPACITY);
        let handle = spawn_hidpos_reader(ScannerRole::Cashier, source, tx);
        let mut states = handle.subscribe();

        // Not plugged in at start: offline, retried.
        plug.send(None).unwrap();
        wait_for_state(&mut states, ScannerState::Offline).await;
        plug.send(None).unwrap();
        let (dev1, reports) = std_mpsc::channel();
        plug.send(Some(reports)).unwrap();
        dev1.send(Read::Report(hidpos_report(b"7038010009457")))
            .unwrap();
        let got = next_scan(&mut rx).await;
        assert_eq!(got.scan.text, "7038010009457");
        assert_eq!(got.scan.symbology.as_deref(), Some("]E0"));
        assert_eq!(got.kind.kind_label(), "product");
        assert_eq!(got.role, ScannerRole::Cashier);
        assert_eq!(got.source, ScannerSource::Hid);
        wait_for_state(&mut states, ScannerState::Enabled).await;

        // Unplugged: offline, three failed reopens, then back.
        dev1.send(Read::Unplug).unwrap();
        wait_for_state(&mut states, ScannerState::Offline).await;
        for _ in 0..3 {
            plug.send(None).unwrap();
        }
        let (dev2, reports) = std_mpsc::channel();
        plug.send(Some(reports)).unwrap();
        // Garbage on the new device is counted, and the next scan still arrives.
        dev2.send(Read::Report(vec![0x02, 0x01])).unwrap();
        dev2.send(Read::Report(hidpos_report(b"96385074"))).unwrap();
        assert_eq!(next_scan(&mut rx).await.scan.text, "96385074");
        wait_for_state(&mut states, ScannerState::Enabled).await;

        let ms = Duration::from_millis;
        assert_eq!(
            *pauses.lock().unwrap(),
            // Two failed opens; the unplug and three failed opens, the backoff restarted by
            // the good reads and capped at 40 ms.
            vec![ms(10), ms(20), ms(10), ms(20), ms(40), ms(40)]
        );

        handle.stop();
        wait_for_state(&mut states, ScannerState::Closed).await;
        assert_eq!(
            handle.stats(),
            ScannerStats {
                forwarded: 2,
                dropped: 0,
                decode_errors: 1,
                partials_expired: 0,
                opens: 2,
            }
        );
    }

    #[tokio::test]
    async fn a_full_lane_queue_drops_and_counts_scans() {
        let (source, plug, _pauses) = fake_source();
        let (dev, reports) = std_mpsc::channel();
        plug.send(Some(reports)).unwrap();
        let (tx, mut rx) = mpsc::channel(1);
        let handle = spawn_hidpos_reader(ScannerRole::Customer, source, tx);
        let mut states = handle.subscribe();
        for code in ["96385074", "73513537", "12345670"] {
            dev.send(Read::Report(hidpos_report(code.as_bytes())))
                .unwrap();
        }
        dev.send(Read::Unplug).unwrap();
        // The unplug is read after the three reports, and the reopen waits for `plug`.
        wait_for_state(&mut states, ScannerState::Offline).await;
        assert_eq!(handle.stats().forwarded, 1);
        assert_eq!(handle.stats().dropped, 2);
        assert_eq!(rx.recv().await.unwrap().scan.text, "96385074");
        drop(plug);
    }

    #[tokio::test]
    async fn dropping_the_receiver_ends_the_thread() {
        let (source, plug, _pauses) = fake_source();
        let (_dev, reports) = std_mpsc::channel::<Read>();
        plug.send(Some(reports)).unwrap();
        let (tx, rx) = mpsc::channel(1);
        let decoder = ReportDecoder::new(
            HidProtocol::Keyboard,
            KeyboardLayout::No,
            DEFAULT_INTER_REPORT_TIMEOUT,
        );
        let handle =
            ScannerHandle::spawn_reader(ScannerRole::Customer, source, decoder, tx, config())
                .unwrap();
        let mut states = handle.subscribe();
        wait_for_state(&mut states, ScannerState::Enabled).await;
        drop(rx);
        wait_for_state(&mut states, ScannerState::Closed).await;
    }

    fn settings(source: ScannerSource) -> ScannerSettings {
        ScannerSettings {
            role: ScannerRole::Customer,
            source,
            vid: None,
            pid: None,
            serial: None,
            path: None,
            protocol: None,
            layout: None,
            inter_report_timeout: None,
        }
    }

    #[tokio::test]
    async fn simulated_scanner_pushes_classified_scans() {
        let (tx, mut rx) = mpsc::channel(1);
        let handle = ScannerHandle::spawn(&settings(ScannerSource::Simulated), tx).unwrap();
        assert_eq!(handle.state(), ScannerState::Enabled);
        handle
            .push("https://qr.vipps.no/28/2/01/031/4791234567?v=1")
            .unwrap();
        assert_eq!(handle.push("7038010009457"), Err(PushError::Full));
        let got = rx.recv().await.unwrap();
        assert_eq!(got.kind.kind_label(), "vipps_qr");
        assert_eq!(got.source, ScannerSource::Simulated);
        assert_eq!(got.scan.symbology, None);
        assert_eq!(
            handle.push(&"1".repeat(MAX_SCAN_BYTES + 1)),
            Err(PushError::TooLong {
                max: MAX_SCAN_BYTES
            })
        );
        assert_eq!(
            handle.stats(),
            ScannerStats {
                forwarded: 1,
                dropped: 1,
                ..ScannerStats::default()
            }
        );
        handle.stop();
        assert_eq!(handle.state(), ScannerState::Closed);
        assert_eq!(handle.push("7038010009457"), Err(PushError::Stopped));
        drop(rx);
    }

    #[tokio::test]
    async fn terminal_scanner_spawns_nothing_and_reports_a_gone_lane() {
        let (tx, rx) = mpsc::channel(1);
        let handle = ScannerHandle::spawn(&settings(ScannerSource::Terminal), tx).unwrap();
        assert!(handle.is_finished());
        drop(rx);
        assert_eq!(handle.push("7038010009457"), Err(PushError::Closed));
    }

    #[test]
    fn a_hid_scanner_without_protocol_or_device_is_refused() {
        let (tx, _rx) = mpsc::channel(1);
        let mut s = settings(ScannerSource::Hid);
        let err = ScannerHandle::spawn(&s, tx.clone()).unwrap_err();
        assert_eq!(err.kind(), "missing_protocol");
        s.protocol = Some(HidProtocol::HidPos);
        let err = ScannerHandle::spawn(&s, tx).unwrap_err();
        assert_eq!(err.kind(), "missing_device");
    }
}
