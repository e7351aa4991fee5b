//! `lanehub bench --lanes N --duration S [--rate R]`: N lanes run complete checkouts against the
//! simulator (no added latency) for S seconds, then the same Vipps calls are made for S seconds
//! by a plain client loop with the same concurrency: the floor that lanehub's overhead is
//! measured against. Without `--rate` every lane checks out back to back (closed loop); with it
//! checkouts arrive at R per second on idle lanes, the same arrivals on both sides (open loop,
//! see [`super::arrivals`]).
//!
//! - lanehub: the real `Application` (Vipps actor, one actor per lane, journal, terminal API,
//!   webhook receiver) in remote mode against a simulator served here. One virtual terminal per
//!   lane scans the customer's QR and sends the payment command over its lane WebSocket (or over
//!   HTTP with `--commands http`), and follows the lane's event stream (what the terminal
//!   WebSocket forwards) until the session ends. Customers are club members who approve at once; webhooks are delivered at once.
//! - floor: per lane, `VippsClient` calls in the order lanehub makes them (token once, QR
//!   exchange, check-in, create, the same number of status reads as lanehub made per checkout,
//!   capture) on a second merchant (so no webhooks are sent for it). Instead of a webhook it is
//!   woken by the simulator's next tick, which is when the customer approves.
//! - Steps are timed where they meet the simulator (see `super::sim`): scan → check-in request,
//!   pay command → payment request, capture answer → terminal event (floor: → answer parsed).
//!   The figure "added" is lanehub's percentile minus the floor's.
//!
//! Both sides run their clients on the same separate multi-threaded runtime; the simulator ticks
//! every [`SIM_TICK`] (100 ms in `lanehub run`) so that "approve at once" is not a 100 ms wait.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use clap::Args;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;

use super::arrivals::{Offered, Schedule, Work, pace, parse_rate};
pub use super::report::*;
use super::sim::{EmbeddedSim, LaneProbe, StepTimes, lane_phone};
use super::vipps::Percentiles;
use crate::config::{
    LaneSettings, LoginBehaviour, PaymentBehaviour, Settings, SimMerchant, VippsMode, VippsSettings,
};
use crate::domain::{Amount, IdempotencyKey, InvalidValue, LaneId, PaymentReference};
use crate::lane::LaneHandle;
use crate::lane::view::{LaneEvent, LaneEventKind};
use crate::procfs::ProcessStats;
use crate::sim::SimState;
use crate::sim::customers::{Behaviour, Customer};
use crate::store::{Member, StoreError};
use crate::vipps::models::{AccessToken, CreatePaymentRequest, PaymentState};
use crate::vipps::{Operation, VippsClient, VippsError};

/// Most lanes a run may open.
pub const MAX_LANES: u32 = 20_000;
/// How often the simulator applies what is due (customers approving) during the benchmark.
pub const SIM_TICK: Duration = Duration::from_millis(5);
/// The global ceiling set on lanehub's Vipps actor, so that its limiter paces nothing.
pub const BENCH_CEILING: u32 = 1_000_000;
/// Each checkout's amount in øre (far from the test amounts that fail on purpose).
const AMOUNT: u64 = 4_990;
/// Longest a checkout may take before it counts as failed (a journal on a slow disk queues).
const FLOW_LIMIT: Duration = Duration::from_secs(120);
/// How long checkouts in flight at the end of a side's window may take to finish; those still
/// running then are counted as unfinished and the lane is cancelled.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// What `Terminal::until` says when the deadline passed.
const NO_EVENT: &str = "no terminal event in time";
/// Longest wait for lanehub's lanes to come up and its webhook to be registered.
const START_LIMIT: Duration = Duration::from_secs(120);
/// Pause before idle memory is read, so start-up work has settled.
const SETTLE: Duration = Duration::from_millis(500);
/// The floor's merchant (no webhook is registered for it).
const FLOOR_CLIENT_ID: &str = "bench-floor-client";
const FLOOR_MSN: &str = "654321";
/// Failure messages kept for the report.
const MAX_FAILURES_KEPT: usize = 5;

/// `lanehub bench --lanes N --duration SECONDS [--rate PER_SECOND [--seed N]] [--json]`.
#[derive(Debug, Args)]
pub struct LanesBenchArgs {
    /// Lanes (and the floor's concurrency): all busy back to back, or those the arrivals find
    /// idle with `--rate`.
    #[arg(long, default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_LANES)))]
    pub lanes: u32,
    /// Seconds each side (lanehub, then the floor) runs checkouts.
    #[arg(long, value_name = "SECONDS", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub duration: u64,
    /// Open loop: checkouts arriving per second in total (Poisson), each on an idle lane chosen
    /// at random; an arrival that finds none waits for the next idle lane.
    #[arg(long, value_name = "PER_SECOND", value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Seed of the open loop's arrivals (default: a random one, printed in the report).
    #[arg(long, requires = "rate")]
    pub seed: Option<u64>,
    /// How the virtual terminals send their commands: over the lane WebSocket they hold for
    /// the lane's events, or as HTTP requests to the terminal API.
    #[arg(long, value_enum, default_value_t = CommandLink::Socket)]
    pub commands: CommandLink,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Directory of lanehub's journal (default: a new directory under the system's temporary
    /// directory, removed afterwards). The journal is written durably, so its disk matters.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// How a virtual terminal sends its commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum CommandLink {
    /// JSON messages on the lane WebSocket, answered on it.
    Socket,
    /// `POST /api/v1/lanes/{lane}/scans` and `…/payment`.
    Http,
}

/// Why the benchmark could not run (a missed target is a result, not an error).
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum LanesBenchError {
    #[error("cannot listen on loopback: {0}")]
    Listen(#[source] std::io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("lanehub did not start: {0}")]
    Start(String),
    #[error("{step} failed: {source}")]
    Vipps {
        step: &'static str,
        #[source]
        source: VippsError,
    },
    #[error("the store refused the benchmark's members: {0}")]
    Store(#[from] StoreError),
    #[error("a built-in value is invalid: {0}")]
    Value(#[from] InvalidValue),
    #[error("cannot start the clients' runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("a driver task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

// ---------------------------------------------------------------------------------------------
// Process figures

/// User plus system CPU seconds of this process so far (Linux; 0 elsewhere).
fn cpu_seconds() -> f64 {
    ProcessStats::cpu_and_memory().cpu_seconds.unwrap_or(0.0)
}

/// Resident memory of this process in KiB (Linux; 0 elsewhere).
fn rss_kib() -> u64 {
    ProcessStats::cpu_and_memory()
        .resident_bytes
        .map_or(0, |b| b / 1024)
}

// ---------------------------------------------------------------------------------------------
// One lane's loop, either side

/// A checkout that ended paid.
#[derive(Debug, Clone, Copy)]
struct Done {
    ended: Instant,
    /// From the arrival to the end: the wait for an idle lane (open loop), then the scan (floor:
    /// the QR exchange) to the end.
    checkout: Duration,
    /// From the arrival to the scan: zero back to back, the wait for a lane in the open loop
    /// (and the client threads' delay in starting it).
    lane_wait: Duration,
    /// Per step of [`STEPS`]; `None` when the simulator did not see the step.
    steps: Option<[Duration; 3]>,
}

/// What one lane's loop saw.
#[derive(Debug, Default)]
struct LaneResult {
    done: Vec<Done>,
    failed: u64,
    unfinished: u64,
    failures: Vec<String>,
    reads: u64,
}

impl LaneResult {
    fn done(&mut self, arrived: Instant, [started, paid, ended]: [Instant; 3], seen: StepTimes) {
        self.done.push(Done {
            ended,
            checkout: ended.saturating_duration_since(arrived),
            lane_wait: started.saturating_duration_since(arrived),
            steps: steps(started, paid, ended, seen),
        });
    }

    fn fail(&mut self, what: String) {
        self.failed += 1;
        if self.failures.len() < MAX_FAILURES_KEPT {
            self.failures.push(what);
        }
    }
}

/// Step durations from the driver's own times and what the simulator saw; `None` if a step was
/// not seen (the checkout then counts, its times do not).
fn steps(
    started: Instant,
    paid: Instant,
    ended: Instant,
    seen: StepTimes,
) -> Option<[Duration; 3]> {
    Some([
        seen.check_in_arrived?.saturating_duration_since(started),
        seen.create_arrived?.saturating_duration_since(paid),
        ended.saturating_duration_since(seen.capture_answered?),
    ])
}

fn summarise(
    results: Vec<LaneResult>,
    start: Instant,
    window: Duration,
    offered: Option<Offered>,
) -> SideReport {
    let end = start + window;
    let mut report = SideReport {
        window,
        offered,
        unfinished: offered.map_or(0, |o| o.abandoned),
        ..SideReport::default()
    };
    let mut samples: [Vec<Duration>; 3] = Default::default();
    let mut checkouts = Vec::new();
    let mut waits = Vec::new();
    let mut reads = 0u64;
    for r in results {
        report.completed += r.done.len() as u64;
        reads += r.reads;
        report.failed += r.failed;
        report.unfinished += r.unfinished;
        for f in r.failures {
            if report.failures.len() < MAX_FAILURES_KEPT {
                report.failures.push(f);
            }
        }
        for done in r.done.into_iter().filter(|d| d.ended <= end) {
            report.flows += 1;
            checkouts.push(done.checkout);
            waits.push(done.lane_wait);
            for (i, d) in done.steps.into_iter().flatten().enumerate() {
                samples[i].push(d);
            }
        }
    }
    report.reads_per_flow = reads as f64 / report.completed.max(1) as f64;
    report.steps = std::array::from_fn(|i| Percentiles::of(&samples[i]));
    report.checkout = Percentiles::of(&checkouts);
    report.lane_wait = Percentiles::of(&waits);
    report
}

/// A lane driven the way a terminal drives it.
struct Terminal {
    index: usize,
    lane: LaneHandle,
    link: Link,
    qr: String,
    probe: Arc<LaneProbe>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// An open lane WebSocket: commands go into `sink`; a reader task reads every frame (as a
/// terminal does, so pings are answered) and passes on the answers: (status, text).
struct OpenSocket {
    sink: futures_util::stream::SplitSink<Socket, tokio_tungstenite::tungstenite::Message>,
    answers: tokio::sync::mpsc::UnboundedReceiver<(u16, String)>,
}

/// Where a terminal's commands go. Its events are read from the lane's broadcast in both cases:
/// a real terminal parses them on its own device, so that work is not lanehub's.
enum Link {
    Http {
        http: reqwest::Client,
        /// `…/api/v1/lanes/{lane}/`
        base: String,
        bearer: String,
    },
    Socket {
        url: String,
        bearer: String,
        /// `None` after a failure: opened again for the next command.
        socket: Option<OpenSocket>,
        sent: u64,
    },
}

impl Link {
    /// The lane's WebSocket, opened with the admin token.
    async fn socket(url: String, bearer: String) -> Result<Link, String> {
        let socket = Some(open_socket(&url, &bearer).await?);
        Ok(Link::Socket {
            url,
            bearer,
            socket,
            sent: 0,
        })
    }

    /// Sends `command` and waits for its answer; anything but 200 is an error.
    async fn send(&mut self, command: &'static str, body: Value) -> Result<(), String> {
        match self {
            Link::Http { http, base, bearer } => {
                let path = if command == "pay" { "payment" } else { "scans" };
                let answer = http
                    .post(format!("{base}{path}"))
                    .header("authorization", bearer.as_str())
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| format!("terminal API: {e}"))?;
                let status = answer.status();
                // The body (the lane's snapshot) is read so the connection can be reused.
                let text = answer
                    .bytes()
                    .await
                    .map_err(|e| format!("terminal API: {e}"))?;
                if status.is_success() {
                    return Ok(());
                }
                Err(format!(
                    "terminal API answered {status}: {}",
                    String::from_utf8_lossy(&text)
                ))
            }
            Link::Socket {
                url,
                bearer,
                socket: slot,
                sent,
            } => {
                let socket = match slot {
                    Some(socket) => socket,
                    None => slot.insert(open_socket(url, bearer).await?),
                };
                // A refusal keeps the socket; a broken one is opened again for the next command.
                ask(socket, command, body, sent)
                    .await
                    .unwrap_or_else(|broken| {
                        *slot = None;
                        Err(broken)
                    })
            }
        }
    }
}

/// Opens the lane's WebSocket with `bearer` and starts reading it.
async fn open_socket(url: &str, bearer: &str) -> Result<OpenSocket, String> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url
        .into_client_request()
        .map_err(|e| format!("lane WebSocket: {e}"))?;
    let auth = bearer.parse().map_err(|e| format!("lane WebSocket: {e}"))?;
    request.headers_mut().insert("authorization", auth);
    // Small messages both ways: Nagle's algorithm would hold each back for an ACK.
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, None, true)
        .await
        .map_err(|e| format!("lane WebSocket: {e}"))?;
    let (sink, mut stream) = socket.split();
    let (tx, answers) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        #[derive(serde::Deserialize)]
        struct Answer {
            status: u16,
        }
        // Events are read from the lane's broadcast; only answers are parsed here.
        while let Some(Ok(frame)) = stream.next().await {
            let Message::Text(text) = frame else { continue };
            if !text.starts_with(r#"{"kind":"answer""#) {
                continue;
            }
            let status = serde_json::from_str::<Answer>(&text).map_or(0, |a| a.status);
            if tx.send((status, text.to_string())).is_err() {
                break;
            }
        }
    });
    Ok(OpenSocket { sink, answers })
}

/// Sends `command` on `socket` and waits for its answer: `Ok(Err(_))` for an answer other than
/// 200, `Err(_)` when the socket broke.
async fn ask(
    socket: &mut OpenSocket,
    command: &'static str,
    body: Value,
    sent: &mut u64,
) -> Result<Result<(), String>, String> {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    *sent += 1;
    let message = json!({"id": sent.to_string(), "command": command, "body": body});
    socket
        .sink
        .send(Message::text(message.to_string()))
        .await
        .map_err(|e| format!("lane WebSocket: {e}"))?;
    // Answers come in order, one per command.
    match socket.answers.recv().await {
        Some((200, _)) => Ok(Ok(())),
        Some((_, text)) => Ok(Err(format!("lane WebSocket answered {text}"))),
        None => Err("the lane WebSocket closed".into()),
    }
}

/// Why a lanehub checkout did not end paid.
fn ended_code(e: &LaneEvent) -> Option<&str> {
    (e.snapshot.state == "idle")
        .then(|| e.snapshot.message.as_ref().map_or("", |m| m.code.as_str()))
}

impl Terminal {
    /// Waits for events until `done` says the checkout reached what it waits for; an ended
    /// session that `done` did not accept is an error.
    async fn until(
        &self,
        rx: &mut broadcast::Receiver<Arc<LaneEvent>>,
        deadline: Instant,
        mut done: impl FnMut(&LaneEvent) -> bool,
    ) -> Result<Instant, String> {
        loop {
            let event = match tokio::time::timeout_at(deadline, rx.recv()).await {
                Err(_) => return Err(NO_EVENT.into()),
                Ok(Ok(event)) => event,
                Ok(Err(RecvError::Lagged(n))) => return Err(format!("missed {n} lane events")),
                Ok(Err(RecvError::Closed)) => return Err("the lane's events closed".into()),
            };
            let at = Instant::now();
            if done(&event) {
                return Ok(at);
            }
            if let Some(code) = ended_code(&event) {
                return Err(format!("the checkout ended with `{code}`"));
            }
        }
    }

    async fn checkout(
        &mut self,
        rx: &mut broadcast::Receiver<Arc<LaneEvent>>,
        stop: Instant,
    ) -> Result<[Instant; 3], String> {
        let deadline = (Instant::now() + FLOW_LIMIT).min(stop + DRAIN_LIMIT);
        let scanned = Instant::now();
        let scan = json!({"text": self.qr});
        self.link.send("scan", scan).await?;
        let (mut ready, mut checked_in) = (false, false);
        self.until(rx, deadline, |e| {
            checked_in |= e.kind == LaneEventKind::CheckIn;
            ready |= e.snapshot.state == "ready_for_payment";
            ready && checked_in
        })
        .await?;
        let paid = Instant::now();
        let pay = json!({
            "amount": {"value": AMOUNT, "currency": "NOK"},
            "description": "lanehub bench",
        });
        self.link.send("pay", pay).await?;
        let ended = self
            .until(rx, deadline, |e| ended_code(e) == Some("payment_approved"))
            .await?;
        Ok([scanned, paid, ended])
    }

    async fn run(mut self, mut work: Work) -> LaneResult {
        let mut result = LaneResult::default();
        let stop = work.stop();
        let (_, _, mut rx) = self.lane.subscribe();
        while let Some(arrived) = work.next().await {
            // What is left of the previous checkout (late webhooks) does not answer this one.
            while let Ok(_) | Err(TryRecvError::Lagged(_)) = rx.try_recv() {}
            self.probe.take(self.index);
            match self.checkout(&mut rx, stop).await {
                Ok(times) => {
                    let seen = self.probe.take(self.index);
                    result.done(arrived, times, seen);
                }
                Err(e) if e == NO_EVENT && Instant::now() >= stop + DRAIN_LIMIT => {
                    result.unfinished += 1;
                    self.settle(&mut rx).await;
                }
                Err(e) => {
                    result.fail(format!("lane {}: {e}", self.lane.id()));
                    self.settle(&mut rx).await;
                }
            }
            work.done();
        }
        result
    }

    /// After a failed checkout: cancel or close, and wait for the lane to be idle again.
    async fn settle(&self, rx: &mut broadcast::Receiver<Arc<LaneEvent>>) {
        for command in [
            crate::lane::LaneCommand::Cancel,
            crate::lane::LaneCommand::Reset,
        ] {
            let _ = self.lane.command(command).await;
        }
        let deadline = Instant::now() + DRAIN_LIMIT;
        while self.lane.snapshot().state != "idle" && Instant::now() < deadline {
            let _ = tokio::time::timeout_at(deadline, rx.recv()).await;
        }
    }
}

/// One lane's share of the floor: the same Vipps calls, straight from a plain client.
struct FloorLane {
    index: usize,
    client: VippsClient,
    token: Arc<AccessToken>,
    probe: Arc<LaneProbe>,
    sim: Arc<SimState>,
    ticks: watch::Receiver<Instant>,
    /// Status reads per checkout, as lanehub made them.
    reads: u64,
}

impl FloorLane {
    async fn checkout(&mut self, n: u64) -> Result<([Instant; 3], u64), String> {
        let phone = lane_phone(self.index);
        let qr = clear_text_qr(self.index);
        let token = &*self.token;
        let started = Instant::now();
        let fail = |step: &'static str| move |e: VippsError| format!("{step}: {e}");
        self.client
            .exchange_qr(token, &qr)
            .await
            .map_err(fail("QR exchange"))?;
        // lanehub's check-in, like the floor's, completes before the cashier pays.
        self.client
            .check_in(token, &phone, true)
            .await
            .map_err(fail("check-in"))?;
        let paid = Instant::now();
        let reference: PaymentReference = format!("floor-{}-{n}", self.index)
            .parse()
            .map_err(|e: InvalidValue| e.to_string())?;
        let key = |op: &str| -> Result<IdempotencyKey, String> {
            format!("floor-{}-{n}-{op}", self.index)
                .parse()
                .map_err(|e: InvalidValue| e.to_string())
        };
        let request = CreatePaymentRequest::in_store(
            reference.clone(),
            Amount::nok(AMOUNT),
            phone,
            "lanehub bench",
        );
        self.client
            .create_payment(token, &key("create")?, &request)
            .await
            .map_err(fail("create"))?;
        let created = self.sim.clock.now();
        let mut reads = 0u64;
        // lanehub reads once per webhook: all but the last while the customer has not acted yet.
        while reads + 1 < self.reads {
            self.client
                .get_payment(token, &reference)
                .await
                .map_err(fail("status read"))?;
            reads += 1;
        }
        // The customer approves on the simulator's first tick after the creation; the floor is
        // woken then, as lanehub is by the webhook.
        let mut after = created;
        loop {
            let seen = *self
                .ticks
                .wait_for(|t| *t >= after)
                .await
                .map_err(|_| "the simulator stopped ticking".to_owned())?;
            let p = self
                .client
                .get_payment(token, &reference)
                .await
                .map_err(fail("status read"))?;
            reads += 1;
            if p.state == PaymentState::Authorized {
                break;
            }
            if reads > 100 {
                return Err(format!("payment still {:?} after {reads} reads", p.state));
            }
            after = seen + Duration::from_nanos(1);
        }
        self.client
            .capture_payment(token, &reference, &key("capture")?, Amount::nok(AMOUNT))
            .await
            .map_err(fail("capture"))?;
        Ok(([started, paid, Instant::now()], reads))
    }

    async fn run(mut self, mut work: Work) -> LaneResult {
        let mut result = LaneResult::default();
        let mut n = 0u64;
        while let Some(arrived) = work.next().await {
            n += 1;
            self.probe.take(self.index);
            match self.checkout(n).await {
                Ok((times, reads)) => {
                    let seen = self.probe.take(self.index);
                    result.done(arrived, times, seen);
                    result.reads += reads;
                }
                Err(e) => result.fail(format!("floor lane {}: {e}", self.index)),
            }
            work.done();
        }
        result
    }
}

// ---------------------------------------------------------------------------------------------
// The run

fn during(step: &'static str) -> impl FnOnce(VippsError) -> LanesBenchError {
    move |source| LanesBenchError::Vipps { step, source }
}

/// A free loopback port for lanehub's API, known before it starts so the webhook URL can name it.
fn free_loopback_addr() -> Result<std::net::SocketAddr, LanesBenchError> {
    let probe = TcpListener::bind("127.0.0.1:0").map_err(LanesBenchError::Listen)?;
    probe.local_addr().map_err(LanesBenchError::Listen)
}

/// Runs the benchmark. Must run inside an actix system.
pub async fn run(
    settings: Settings,
    args: &LanesBenchArgs,
) -> Result<LanesReport, LanesBenchError> {
    crate::install_crypto_provider();
    let (data_dir, temporary) = match &args.data_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("lanehub-bench-{}", uuid::Uuid::new_v4().simple())),
            true,
        ),
    };
    std::fs::create_dir_all(&data_dir).map_err(|source| LanesBenchError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let result = run_in(settings, args, data_dir.clone()).await;
    if temporary {
        // Best effort: a leftover directory in the temporary directory harms nothing.
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

async fn run_in(
    mut settings: Settings,
    args: &LanesBenchArgs,
    data_dir: PathBuf,
) -> Result<LanesReport, LanesBenchError> {
    let lanes = usize::try_from(args.lanes).unwrap_or(usize::MAX);
    let window = Duration::from_secs(args.duration);
    let schedule = args.rate.map(|rate| Schedule {
        rate,
        seed: args.seed.unwrap_or_else(rand::random),
    });
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    // The simulator, with a second merchant for the floor and one customer per lane.
    let mut sim_settings = settings.sim.clone();
    sim_settings.rate_limits = true;
    sim_settings.merchants.push(SimMerchant {
        name: "Bench floor".into(),
        client_id: FLOOR_CLIENT_ID.into(),
        client_secret: SecretString::from(format!("floor-secret-{run_id}")),
        subscription_key: SecretString::from(format!("floor-key-{run_id}")),
        merchant_serial_number: FLOOR_MSN.into(),
    });
    let floor_merchant = sim_settings.merchants.last().cloned();
    let probe = Arc::new(LaneProbe::new(lanes));
    let sim = EmbeddedSim::start(sim_settings, SIM_TICK, Some(probe.clone()))
        .map_err(LanesBenchError::Listen)?;
    {
        let mut customers = sim
            .state
            .customers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for i in 0..lanes {
            customers.insert(Customer {
                phone_number: lane_phone(i),
                name: format!("Bench Customer {i}"),
                email: format!("bench.{i}@example.com"),
                member: true,
                behaviour: Behaviour {
                    payment: PaymentBehaviour::Approve,
                    payment_delay: Duration::ZERO,
                    login: LoginBehaviour::Consent,
                    login_delay: Duration::ZERO,
                },
                qr_token_url: String::new(),
                qr_clear_text_url: None,
                qr_future_url: String::new(),
            });
        }
    }

    // lanehub, in remote mode against that simulator.
    let api = free_loopback_addr()?;
    let admin = format!("bench-admin-{run_id}");
    settings.vipps.mode = VippsMode::Remote;
    settings.vipps.base_url = sim.base_url.clone();
    settings.vipps.webhook_public_url = format!("http://{api}/vipps/webhooks");
    settings.vipps.max_requests_per_second = BENCH_CEILING;
    settings.vipps.max_waiters = settings.vipps.max_waiters.max(lanes * 8);
    settings.api.listen = api;
    settings.api.admin_token = SecretString::from(admin.clone());
    // Every terminal holds its lane's WebSocket open; HTTP requests and webhooks need room too.
    settings.api.max_connections = settings.api.max_connections.max(2 * lanes + 512);
    settings.store.data_dir = data_dir.clone();
    settings.lanes = (1..=lanes)
        .map(|i| {
            Ok(LaneSettings {
                id: i.to_string().parse::<LaneId>()?,
                token: SecretString::from(format!("bench-lane-{i}-{run_id}")),
                scanners: vec![],
            })
        })
        .collect::<Result<_, InvalidValue>>()?;
    let lane_threads = match settings.supervisor.lane_threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let client_threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let floor_vipps = floor_settings(&settings.vipps, floor_merchant.as_ref());

    let rss_before_kib = rss_kib();
    let app = crate::startup::Application::build(settings)
        .map_err(|e| LanesBenchError::Start(format!("{e:#}")))?;
    let (handles, store) = (app.lanes().all(), app.store().clone());
    actix_web::rt::spawn(app.run_until_stopped());
    let deadline = Instant::now() + START_LIMIT;
    while !(handles.iter().all(LaneHandle::is_up)
        && probe.webhook_registered.load(Ordering::SeqCst))
    {
        if Instant::now() > deadline {
            return Err(LanesBenchError::Start(
                "lanes or the webhook registration not ready within 120 s".into(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let rss_idle_kib = rss_kib();

    // Every customer is in the club, in one transaction.
    let members: Vec<Member> = (0..lanes)
        .map(|i| {
            let (name, email) = (
                format!("Bench Customer {i}"),
                format!("bench.{i}@example.com"),
            );
            Member::imported(lane_phone(i), name, email, None)
        })
        .collect();
    store.import_members(members).await?;

    let clients = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .thread_name("bench-client")
        .enable_all()
        .build()
        .map_err(LanesBenchError::Runtime)?;

    // lanehub's side.
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(usize::MAX)
        .build()
        .map_err(|e| LanesBenchError::Start(format!("HTTP client: {e}")))?;
    // The terminals' links are opened before the clock starts, on the clients' runtime.
    let bearer = format!("Bearer {admin}");
    let mut links = Vec::with_capacity(lanes);
    for lane in &handles {
        let base = format!("http://{api}/api/v1/lanes/{}/", lane.id());
        links.push(match args.commands {
            CommandLink::Http => clients.spawn(std::future::ready(Ok(Link::Http {
                http: http.clone(),
                base,
                bearer: bearer.clone(),
            }))),
            CommandLink::Socket => clients.spawn(Link::socket(
                format!("ws://{api}/api/v1/lanes/{}/events", lane.id()),
                bearer.clone(),
            )),
        });
    }
    let mut opened = Vec::with_capacity(lanes);
    for link in links {
        let link = link
            .await
            .map_err(|e| LanesBenchError::Start(format!("terminal link: {e}")))?
            .map_err(LanesBenchError::Start)?;
        opened.push(link);
    }
    let before = (
        sim.counter.snapshot(),
        probe.calls(Operation::PaymentGet),
        cpu_seconds(),
        probe.all_calls(),
    );
    let start = Instant::now();
    let (works, dispatch) = pace(schedule, lanes, start, window, DRAIN_LIMIT);
    let mut tasks = Vec::with_capacity(lanes);
    for (((index, lane), work), link) in handles.iter().enumerate().zip(works).zip(opened) {
        let index = lane_index(lane.id().as_str()).unwrap_or(index);
        let terminal = Terminal {
            index,
            lane: lane.clone(),
            link,
            qr: clear_text_qr(index),
            probe: probe.clone(),
        };
        tasks.push(clients.spawn(terminal.run(work)));
    }
    let (results, offered) = finish(&clients, tasks, dispatch).await?;
    let counts = sim.counter.snapshot().since(before.0);
    let reads = probe.calls(Operation::PaymentGet) - before.1;
    let cpu = cpu_seconds() - before.2;
    let mut lanehub = summarise(results, start, window, offered);
    lanehub.cpu_seconds = cpu;
    lanehub.http_responses = counts.responses;
    lanehub.http_429 = counts.too_many_requests;
    lanehub.reads_per_flow = reads as f64 / lanehub.completed.max(1) as f64;
    lanehub.requests = probe.calls_since(&before.3);

    // The floor: the same calls, the same concurrency, no lanehub in between.
    let floor_client =
        VippsClient::new(&floor_vipps).map_err(during("building the floor's client"))?;
    let token = Arc::new(
        floor_client
            .fetch_token()
            .await
            .map_err(during("the floor's token"))?,
    );
    let reads_per_flow = lanehub.reads_per_flow.round().max(1.0) as u64;
    let before = (sim.counter.snapshot(), cpu_seconds(), probe.all_calls());
    let start = Instant::now();
    let (works, dispatch) = pace(schedule, lanes, start, window, DRAIN_LIMIT);
    let mut tasks = Vec::with_capacity(lanes);
    for ((index, lane), work) in handles.iter().enumerate().zip(works) {
        let floor = FloorLane {
            index: lane_index(lane.id().as_str()).unwrap_or(index),
            client: floor_client.clone(),
            token: token.clone(),
            probe: probe.clone(),
            sim: sim.state.clone(),
            ticks: sim.ticks.clone(),
            reads: reads_per_flow,
        };
        tasks.push(clients.spawn(floor.run(work)));
    }
    let (results, offered) = finish(&clients, tasks, dispatch).await?;
    let counts = sim.counter.snapshot().since(before.0);
    let cpu = cpu_seconds() - before.1;
    let mut floor = summarise(results, start, window, offered);
    floor.cpu_seconds = cpu;
    floor.http_responses = counts.responses;
    floor.http_429 = counts.too_many_requests;
    floor.requests = probe.calls_since(&before.2);
    let rss_after_kib = rss_kib();

    clients.shutdown_background();
    sim.stop().await;
    Ok(LanesReport {
        lanes: args.lanes,
        duration: window,
        schedule,
        lanehub,
        floor,
        rss_before_kib,
        rss_idle_kib,
        rss_after_kib,
        client_threads,
        lane_threads,
        commands: args.commands,
        data_dir,
    })
}

/// Runs the open loop's dispatcher (if any) beside the lanes' tasks and collects what they saw.
async fn finish(
    clients: &tokio::runtime::Runtime,
    tasks: Vec<tokio::task::JoinHandle<LaneResult>>,
    dispatch: Option<impl Future<Output = Offered> + Send + 'static>,
) -> Result<(Vec<LaneResult>, Option<Offered>), LanesBenchError> {
    let dispatch = dispatch.map(|d| clients.spawn(d));
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await?);
    }
    let offered = match dispatch {
        Some(d) => Some(d.await?),
        None => None,
    };
    Ok((results, offered))
}

/// The clear-text Vipps QR of lane `index`'s customer (lanehub still exchanges it).
fn clear_text_qr(index: usize) -> String {
    format!(
        "https://qr.vipps.no/28/2/01/031/{}?v=1",
        lane_phone(index).as_str()
    )
}

/// Lane `"7"` is index 6: its customer is `lane_phone(6)`.
fn lane_index(id: &str) -> Option<usize> {
    id.parse::<usize>().ok()?.checked_sub(1)
}

/// The floor's client settings: lanehub's, with the floor merchant's credentials.
fn floor_settings(vipps: &VippsSettings, merchant: Option<&SimMerchant>) -> VippsSettings {
    let mut floor = vipps.clone();
    if let Some(m) = merchant {
        floor.client_id = m.client_id.clone();
        floor.client_secret = m.client_secret.clone();
        floor.subscription_key = m.subscription_key.clone();
        floor.merchant_serial_number = m.merchant_serial_number.clone();
    }
    floor
}
