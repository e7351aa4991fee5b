//! `lanehub bench vipps`: the Vipps actor against the embedded simulator on loopback, with no
//! added latency, in one process.
//!
//! 1. Added latency: the same calls (`get_payment` on existing payments and a QR exchange,
//!    alternating) through the plain [`VippsClient`] with one token, and through
//!    [`VippsHandle`] (token cache, limiter, circuit, retries), the two paths alternating and
//!    their order swapped every other call so machine noise falls on both alike.
//! 2. Ceiling: the actor with `max_requests_per_second = C` and the configured `max_waiters` and
//!    `max_rate_limit_wait`, offered 3×C `get_payment`/s for S seconds (open loop) over many
//!    references, with the simulator's per-reference rate limits on.
//!
//! 429s are counted where they are sent: the simulator is served here behind a middleware that
//! counts every answer's status, so a 429 the actor retried away is still counted. What must stay
//! true: reads per reference stay under the simulator's 120 per minute in both parts, so any 429
//! is lanehub's doing, not the benchmark's.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use clap::Args;
use futures_util::future::join_all;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::sim::EmbeddedSim;
use crate::config::Settings;
use crate::domain::{Amount, IdempotencyKey, InvalidValue, Msisdn, PaymentReference};
use crate::sim::TICK;
use crate::vipps::models::{AccessToken, CreatePaymentRequest};
use crate::vipps::{VippsActorSettings, VippsClient, VippsError, VippsHandle};

/// A personal QR the simulator exchanges for a fixed phone number.
const QR_CODE: &str = "https://qr.vipps.no/28/2/01/031/4791234567?v=1";
/// A virtual customer of the default configuration; the payments are addressed to them.
const CUSTOMER: &str = "4791234567";
/// Latency part: `get_payment`s per reference and path. Both paths read the same references,
/// so the simulator sees at most twice this per reference, well under its 120 per minute.
const READS_PER_REFERENCE_PER_PATH: usize = 40;
/// Ceiling part: offered calls per reference (and so at most this many reads of it).
const OFFERED_PER_REFERENCE: usize = 3;
/// Ceiling part: references at least and at most.
const MIN_REFERENCES: usize = 50;
const MAX_REFERENCES: usize = 5_000;
/// Payments created at once while setting up.
const CREATE_CONCURRENCY: usize = 16;
/// Offered load as a multiple of the ceiling.
const OFFERED_FACTOR: u32 = 3;
/// The ceiling during the latency part: high enough that a sequential caller never waits for it,
/// so the part measures the limiter's bookkeeping, not its pacing.
const LATENCY_PART_CEILING: u32 = 1_000_000;
/// The target share of the ceiling reached under 3× load.
pub const TARGET_SHARE: f64 = 0.95;

/// Options of `lanehub bench vipps`.
#[derive(Debug, Args)]
pub struct VippsBenchArgs {
    /// Calls measured per path (plain client and actor) for the added latency, after a warm-up
    /// of a tenth as many (at least 20).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub requests: u64,
    /// The global ceiling in requests per second set on the actor for the ceiling part.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub ceiling: u32,
    /// How long, in seconds, 3× the ceiling is offered.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    pub seconds: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Why the benchmark could not run (a missed target is a result, not an error).
#[derive(Debug, thiserror::Error, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum BenchError {
    #[error("cannot serve the simulator on loopback: {0}")]
    Listen(#[source] std::io::Error),
    #[error("{step} failed: {source}")]
    Vipps {
        step: &'static str,
        #[source]
        source: VippsError,
    },
    #[error("a built-in value is invalid: {0}")]
    Value(#[from] InvalidValue),
    #[error("a load task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

fn during(step: &'static str) -> impl FnOnce(VippsError) -> BenchError {
    move |source| BenchError::Vipps { step, source }
}

// ---------------------------------------------------------------------------------------------
// Figures

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy, Default)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub max: Duration,
}

impl Percentiles {
    /// Nearest-rank percentiles; all zero for no samples.
    pub fn of(samples: &[Duration]) -> Percentiles {
        if samples.is_empty() {
            return Percentiles::default();
        }
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let rank = |q: f64| {
            let n = sorted.len();
            let r = (q * n as f64).ceil() as usize;
            sorted[r.clamp(1, n) - 1]
        };
        let total: Duration = sorted.iter().sum();
        Percentiles {
            count: sorted.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            mean: total / u32::try_from(sorted.len()).unwrap_or(u32::MAX),
            max: sorted[sorted.len() - 1],
        }
    }

    fn to_json(self) -> Value {
        json!({
            "count": self.count,
            "p50_us": micros(self.p50),
            "p99_us": micros(self.p99),
            "mean_us": micros(self.mean),
            "max_us": micros(self.max),
        })
    }
}

fn micros(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e7).round() / 10.0
}

/// `a − b` in microseconds, negative when `a` is faster.
fn micros_diff(a: Duration, b: Duration) -> f64 {
    ((a.as_secs_f64() - b.as_secs_f64()) * 1e7).round() / 10.0
}

/// Plain and actor latencies of one set of calls.
#[derive(Debug, Clone, Copy)]
pub struct PathPair {
    pub plain: Percentiles,
    pub actor: Percentiles,
}

impl PathPair {
    fn of(plain: &[Duration], actor: &[Duration]) -> PathPair {
        PathPair {
            plain: Percentiles::of(plain),
            actor: Percentiles::of(actor),
        }
    }

    fn to_json(self) -> Value {
        json!({
            "plain": self.plain.to_json(),
            "actor": self.actor.to_json(),
            "added_p50_us": micros_diff(self.actor.p50, self.plain.p50),
            "added_p99_us": micros_diff(self.actor.p99, self.plain.p99),
        })
    }
}

/// Part 1.
#[derive(Debug, Clone)]
pub struct LatencyReport {
    pub samples_per_path: usize,
    pub warmup_per_path: usize,
    pub references: usize,
    pub all: PathPair,
    pub payment_get: PathPair,
    pub qr_exchange: PathPair,
    pub http_responses: u64,
    pub http_429: u64,
}

/// Part 2.
#[derive(Debug, Clone)]
pub struct CeilingReport {
    pub ceiling_rps: u32,
    pub offered_rps: u32,
    pub seconds: u64,
    pub references: usize,
    pub max_waiters: usize,
    pub max_rate_limit_wait: Duration,
    pub offered: usize,
    /// How long offering took (it should be `seconds`; more means the machine fell behind).
    pub offer_elapsed: Duration,
    pub succeeded: usize,
    /// Successes completed within `seconds` of the first offer.
    pub succeeded_in_window: usize,
    /// Failed calls by `VippsError::kind()` (`overloaded`: refused by lanehub's own limiter).
    pub failed: BTreeMap<&'static str, usize>,
    pub http_responses: u64,
    pub http_429: u64,
    /// From the first offer to the last completion, draining waiters included.
    pub elapsed: Duration,
    /// Most successes completed within any one second.
    pub peak_per_second: usize,
    /// Most requests that reached the simulator within any one second (the wire's view).
    pub peak_arrivals_per_second: usize,
    pub success_latency: Percentiles,
}

impl CeilingReport {
    /// Successful calls per second within the offered window.
    pub fn achieved_rps(&self) -> f64 {
        self.succeeded_in_window as f64 / self.seconds as f64
    }

    /// `achieved_rps` as a share of the ceiling.
    pub fn share_of_ceiling(&self) -> f64 {
        self.achieved_rps() / f64::from(self.ceiling_rps)
    }

    /// Successful calls per second from the first offer to the last completion.
    pub fn achieved_rps_with_drain(&self) -> f64 {
        self.succeeded as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

/// Everything `bench vipps` measured.
#[derive(Debug, Clone)]
pub struct VippsBenchReport {
    pub latency: LatencyReport,
    pub ceiling: CeilingReport,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl VippsBenchReport {
    pub fn to_json(&self) -> Value {
        let l = &self.latency;
        let c = &self.ceiling;
        json!({
            "benchmark": "vipps",
            "simulator": {"address": "127.0.0.1", "added_latency_ms": 0, "rate_limits": true},
            "latency": {
                "samples_per_path": l.samples_per_path,
                "warmup_per_path": l.warmup_per_path,
                "references": l.references,
                "plain": l.all.plain.to_json(),
                "actor": l.all.actor.to_json(),
                "added_p50_us": micros_diff(l.all.actor.p50, l.all.plain.p50),
                "added_p99_us": micros_diff(l.all.actor.p99, l.all.plain.p99),
                "by_operation": {
                    "payment_get": l.payment_get.to_json(),
                    "qr_exchange": l.qr_exchange.to_json(),
                },
                "http_responses": l.http_responses,
                "http_429": l.http_429,
            },
            "ceiling": {
                "ceiling_rps": c.ceiling_rps,
                "offered_rps": c.offered_rps,
                "seconds": c.seconds,
                "references": c.references,
                "max_waiters": c.max_waiters,
                "max_rate_limit_wait_ms": c.max_rate_limit_wait.as_millis() as u64,
                "offered": c.offered,
                "offer_elapsed_s": round3(c.offer_elapsed.as_secs_f64()),
                "succeeded": c.succeeded,
                "succeeded_in_window": c.succeeded_in_window,
                "failed": c.failed,
                "http_responses": c.http_responses,
                "http_429": c.http_429,
                "achieved_rps": round3(c.achieved_rps()),
                "share_of_ceiling": round3(c.share_of_ceiling()),
                "elapsed_s": round3(c.elapsed.as_secs_f64()),
                "achieved_rps_with_drain": round3(c.achieved_rps_with_drain()),
                "peak_successes_per_second": c.peak_per_second,
                "peak_arrivals_per_second": c.peak_arrivals_per_second,
                "success_latency": c.success_latency.to_json(),
            },
            "targets": {
                "zero_429": l.http_429 == 0 && c.http_429 == 0,
                "share_of_ceiling_at_least": TARGET_SHARE,
                "share_met": c.share_of_ceiling() >= TARGET_SHARE,
            },
        })
    }

    pub fn to_table(&self) -> String {
        let l = &self.latency;
        let c = &self.ceiling;
        let mut out = String::new();
        let us = |d: Duration| format!("{:>9.1}", micros(d));
        let _ = writeln!(
            out,
            "lanehub bench vipps: embedded simulator on 127.0.0.1, no added latency, \
             simulator rate limits on\n"
        );
        let _ = writeln!(
            out,
            "Added latency: {} calls per path after {} warm-up (get_payment over {} references \
             and QR exchange, alternating; path order swapped every other call)",
            l.samples_per_path, l.warmup_per_path, l.references
        );
        let _ = writeln!(
            out,
            "  {:<36} {:>9} {:>9} {:>9} {:>9}",
            "", "p50 µs", "p99 µs", "mean µs", "max µs"
        );
        for (name, pair) in [
            ("all", l.all),
            ("get_payment", l.payment_get),
            ("qr_exchange", l.qr_exchange),
        ] {
            for (path, p) in [
                ("plain client", pair.plain),
                ("actor (VippsHandle)", pair.actor),
            ] {
                let label = format!("{name}: {path}");
                let _ = writeln!(
                    out,
                    "  {label:<36} {} {} {} {}",
                    us(p.p50),
                    us(p.p99),
                    us(p.mean),
                    us(p.max)
                );
            }
            let _ = writeln!(
                out,
                "  {:<36} {:>+9.1} {:>+9.1}",
                format!("{name}: added (actor − plain)"),
                micros_diff(pair.actor.p50, pair.plain.p50),
                micros_diff(pair.actor.p99, pair.plain.p99)
            );
        }
        let _ = writeln!(out, "  429s from the simulator: {}\n", l.http_429);
        let _ = writeln!(
            out,
            "Ceiling: {} req/s set, {} req/s offered for {} s ({} calls, offered in {:.2} s) over \
             {} references; max_waiters {}, max_rate_limit_wait {} ms",
            c.ceiling_rps,
            c.offered_rps,
            c.seconds,
            c.offered,
            c.offer_elapsed.as_secs_f64(),
            c.references,
            c.max_waiters,
            c.max_rate_limit_wait.as_millis()
        );
        let _ = writeln!(
            out,
            "  429s from the simulator:     {} (target 0)",
            c.http_429
        );
        let _ = writeln!(
            out,
            "  succeeded:                   {} ({} within the {} s window)",
            c.succeeded, c.succeeded_in_window, c.seconds
        );
        let failed = if c.failed.is_empty() {
            "none".to_owned()
        } else {
            c.failed
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(out, "  failed (by kind):            {failed}");
        let _ = writeln!(
            out,
            "  achieved:                    {:.1} req/s = {:.3} of the ceiling (target ≥ {TARGET_SHARE})",
            c.achieved_rps(),
            c.share_of_ceiling()
        );
        let _ = writeln!(
            out,
            "  with drain:                  {:.1} req/s over {:.2} s",
            c.achieved_rps_with_drain(),
            c.elapsed.as_secs_f64(),
        );
        let _ = writeln!(
            out,
            "  busiest second:              {} requests reached the simulator, {} successes completed",
            c.peak_arrivals_per_second, c.peak_per_second
        );
        let _ = writeln!(
            out,
            "  latency of successes:        p50 {:.1} ms, p99 {:.1} ms (queueing for a slot included)",
            c.success_latency.p50.as_secs_f64() * 1e3,
            c.success_latency.p99.as_secs_f64() * 1e3
        );
        out
    }
}

// ---------------------------------------------------------------------------------------------
// The run

/// Runs both parts. Must run inside an actix system.
pub async fn run(
    mut settings: Settings,
    args: &VippsBenchArgs,
) -> Result<VippsBenchReport, BenchError> {
    crate::install_crypto_provider();
    // The per-reference limits stay on: the figures are meant with Vipps' rules in force.
    settings.sim.rate_limits = true;
    let sim = EmbeddedSim::start(settings.sim.clone(), TICK, None).map_err(BenchError::Listen)?;
    let mut vipps = settings.vipps.clone();
    vipps.base_url = sim.base_url.clone();
    let result = run_parts(&sim, &vipps, args).await;
    sim.stop().await;
    result
}

async fn run_parts(
    sim: &EmbeddedSim,
    vipps: &crate::config::VippsSettings,
    args: &VippsBenchArgs,
) -> Result<VippsBenchReport, BenchError> {
    let client = VippsClient::new(vipps).map_err(during("building the client"))?;
    let token = client
        .fetch_token()
        .await
        .map_err(during("fetching a token"))?;
    let probe_timeout = vipps.connect_timeout + vipps.request_timeout;

    let samples = usize::try_from(args.requests).unwrap_or(usize::MAX);
    let warmup = (samples / 10).max(20);
    // `get_payment` is every other call.
    let reads_per_path = (samples + warmup).div_ceil(2);
    let latency_refs = reads_per_path.div_ceil(READS_PER_REFERENCE_PER_PATH);
    let offered =
        usize::try_from(u64::from(args.ceiling) * u64::from(OFFERED_FACTOR) * args.seconds)
            .unwrap_or(usize::MAX);
    let ceiling_refs = (offered / OFFERED_PER_REFERENCE).clamp(MIN_REFERENCES, MAX_REFERENCES);

    let customer: Msisdn = CUSTOMER.parse()?;
    let lat = create_payments(&client, &token, &customer, "lat", latency_refs).await?;
    let cap = create_payments(&client, &token, &customer, "cap", ceiling_refs).await?;

    let (handle, _) =
        ready_actor(client.clone(), vipps, LATENCY_PART_CEILING, probe_timeout).await?;
    let latency = latency_part(sim, &client, &token, &handle, &lat, warmup, samples).await?;

    let (handle, actor_settings) = ready_actor(client, vipps, args.ceiling, probe_timeout).await?;
    let ceiling = ceiling_part(sim, &handle, &cap, args, offered).await?;
    let mut ceiling = ceiling;
    ceiling.max_waiters = actor_settings.max_waiters;
    ceiling.max_rate_limit_wait = actor_settings.max_rate_limit_wait;
    Ok(VippsBenchReport { latency, ceiling })
}

/// The actor in front of `client` with the global ceiling `ceiling`, its own token already
/// fetched (not part of any call measured).
async fn ready_actor(
    client: VippsClient,
    vipps: &crate::config::VippsSettings,
    ceiling: u32,
    probe_timeout: Duration,
) -> Result<(VippsHandle, VippsActorSettings), BenchError> {
    let mut settings = vipps.actor_settings();
    settings.max_requests_per_second = ceiling;
    let handle = VippsHandle::with_client(client, settings, probe_timeout);
    handle
        .access_token()
        .await
        .map_err(during("the actor's token fetch"))?;
    Ok((handle, settings))
}

/// Creates `count` payments with distinct references (at most `CREATE_CONCURRENCY` at once).
async fn create_payments(
    client: &VippsClient,
    token: &AccessToken,
    customer: &Msisdn,
    prefix: &str,
    count: usize,
) -> Result<Vec<PaymentReference>, BenchError> {
    let mut references = Vec::with_capacity(count);
    for i in 0..count {
        references.push(format!("bench-{prefix}-{i:06}").parse::<PaymentReference>()?);
    }
    for chunk in references.chunks(CREATE_CONCURRENCY) {
        let mut calls = Vec::with_capacity(chunk.len());
        for reference in chunk {
            let key: IdempotencyKey = format!("create-{reference}").parse()?;
            let request = CreatePaymentRequest::in_store(
                reference.clone(),
                Amount::nok(100),
                customer.clone(),
                "lanehub benchmark",
            );
            calls.push(async move { client.create_payment(token, &key, &request).await });
        }
        for result in join_all(calls).await {
            result.map_err(during("creating the payments"))?;
        }
    }
    Ok(references)
}

/// One call of the latency part: which operation, on which reference.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    PaymentGet(usize),
    QrExchange,
}

/// The way a call of the latency part goes.
#[derive(Clone, Copy)]
enum Path<'a> {
    Plain(&'a VippsClient, &'a AccessToken),
    Actor(&'a VippsHandle),
}

/// How long `call` took on `path`; a failure ends the benchmark.
async fn timed_call(
    path: Path<'_>,
    references: &[PaymentReference],
    call: Call,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    let result = match (path, call) {
        (Path::Plain(c, t), Call::PaymentGet(i)) => {
            c.get_payment(t, &references[i]).await.map(drop)
        }
        (Path::Plain(c, t), Call::QrExchange) => c.exchange_qr(t, QR_CODE).await.map(drop),
        (Path::Actor(h), Call::PaymentGet(i)) => h.get_payment(&references[i]).await.map(drop),
        (Path::Actor(h), Call::QrExchange) => h.exchange_qr(QR_CODE).await.map(drop),
    };
    result.map_err(during(match path {
        Path::Plain(..) => "a plain client call",
        Path::Actor(_) => "an actor call",
    }))?;
    Ok(started.elapsed())
}

async fn latency_part(
    sim: &EmbeddedSim,
    client: &VippsClient,
    token: &AccessToken,
    handle: &VippsHandle,
    references: &[PaymentReference],
    warmup: usize,
    samples: usize,
) -> Result<LatencyReport, BenchError> {
    let before = sim.counter.snapshot();
    // Per path, per operation (0: get, 1: QR).
    let mut plain: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let mut actor: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
    let (via_plain, via_actor) = (Path::Plain(client, token), Path::Actor(handle));
    for k in 0..warmup + samples {
        let op = k % 2;
        let call = if op == 0 {
            Call::PaymentGet((k / 2) % references.len())
        } else {
            Call::QrExchange
        };
        // Swap which path goes first every other pair, so each operation sees both orders.
        let (p, a) = if (k / 2) % 2 == 0 {
            let p = timed_call(via_plain, references, call).await?;
            (p, timed_call(via_actor, references, call).await?)
        } else {
            let a = timed_call(via_actor, references, call).await?;
            (timed_call(via_plain, references, call).await?, a)
        };
        if k >= warmup {
            plain[op].push(p);
            actor[op].push(a);
        }
    }
    let counts = sim.counter.snapshot().since(before);
    let all_plain: Vec<Duration> = plain.concat();
    let all_actor: Vec<Duration> = actor.concat();
    Ok(LatencyReport {
        samples_per_path: samples,
        warmup_per_path: warmup,
        references: references.len(),
        all: PathPair::of(&all_plain, &all_actor),
        payment_get: PathPair::of(&plain[0], &actor[0]),
        qr_exchange: PathPair::of(&plain[1], &actor[1]),
        http_responses: counts.responses,
        http_429: counts.too_many_requests,
    })
}

/// How one offered call ended, and when.
struct Ended {
    kind: Option<&'static str>,
    offered_at: Instant,
    at: Instant,
}

async fn ceiling_part(
    sim: &EmbeddedSim,
    handle: &VippsHandle,
    references: &[PaymentReference],
    args: &VippsBenchArgs,
    offered: usize,
) -> Result<CeilingReport, BenchError> {
    let offered_rps = args.ceiling.saturating_mul(OFFERED_FACTOR);
    let before = sim.counter.snapshot();
    // Open loop: one call per period whatever the answers do; a late tick is caught up at once.
    let mut tick = tokio::time::interval(Duration::from_secs(1) / offered_rps);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(offered);
    for i in 0..offered {
        tick.tick().await;
        let handle = handle.clone();
        let reference = references[i % references.len()].clone();
        tasks.push(actix_web::rt::spawn(async move {
            let offered_at = Instant::now();
            let result = handle.get_payment(&reference).await;
            Ended {
                kind: result.err().map(|e| e.kind()),
                offered_at,
                at: Instant::now(),
            }
        }));
    }
    let offer_elapsed = start.elapsed();
    let mut ended = Vec::with_capacity(offered);
    for task in join_all(tasks).await {
        ended.push(task?);
    }
    let counts = sim.counter.snapshot().since(before);

    let window_end = start + Duration::from_secs(args.seconds);
    let mut failed: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut done: Vec<Instant> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    for e in &ended {
        match e.kind {
            None => {
                done.push(e.at);
                latencies.push(e.at - e.offered_at);
            }
            Some(kind) => *failed.entry(kind).or_default() += 1,
        }
    }
    done.sort_unstable();
    let last = ended.iter().map(|e| e.at).max().unwrap_or(start);
    Ok(CeilingReport {
        ceiling_rps: args.ceiling,
        offered_rps,
        seconds: args.seconds,
        references: references.len(),
        max_waiters: 0,
        max_rate_limit_wait: Duration::ZERO,
        offered,
        offer_elapsed,
        succeeded: done.len(),
        succeeded_in_window: done.iter().filter(|&&t| t <= window_end).count(),
        failed,
        http_responses: counts.responses,
        http_429: counts.too_many_requests,
        elapsed: last - start,
        peak_per_second: peak_within(&done, Duration::from_secs(1)),
        peak_arrivals_per_second: peak_within(
            &sim.counter.arrivals_since(start),
            Duration::from_secs(1),
        ),
        success_latency: Percentiles::of(&latencies),
    })
}

/// The most instants of `sorted` within any half-open span of length `span`.
fn peak_within(sorted: &[Instant], span: Duration) -> usize {
    let mut peak = 0;
    let mut first = 0;
    for (last, &t) in sorted.iter().enumerate() {
        while sorted[first] + span <= t {
            first += 1;
        }
        peak = peak.max(last - first + 1);
    }
    peak
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<Duration> = (1..=100).rev().map(ms).collect();
        let p = Percentiles::of(&samples);
        assert_eq!(
            (p.count, p.p50, p.p99, p.max),
            (100, ms(50), ms(99), ms(100))
        );
        assert_eq!(p.mean, Duration::from_micros(50_500));
        let one = Percentiles::of(&[ms(7)]);
        assert_eq!((one.p50, one.p99), (ms(7), ms(7)));
        assert_eq!(Percentiles::of(&[]).count, 0);
    }

    #[test]
    fn peak_counts_the_busiest_second() {
        let t0 = Instant::now();
        let at: Vec<Instant> = [0, 100, 900, 1000, 1050, 1099, 2500]
            .into_iter()
            .map(|v| t0 + ms(v))
            .collect();
        // 900..1899 holds 900, 1000, 1050, 1099; 100..1099 holds five.
        assert_eq!(peak_within(&at, Duration::from_secs(1)), 5);
        assert_eq!(peak_within(&[], Duration::from_secs(1)), 0);
    }

    #[test]
    fn differences_keep_their_sign() {
        assert_eq!(micros_diff(ms(1), ms(2)), -1000.0);
        assert_eq!(
            micros_diff(Duration::from_nanos(2_345), Duration::ZERO),
            2.3
        );
    }
}
