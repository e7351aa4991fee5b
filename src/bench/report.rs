//! The figures of `lanehub bench --lanes`: per side (lanehub, the plain-client floor) and
//! together, as text and as JSON, for either loop (`mode`: `closed`, or `open` with `--rate`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

use super::arrivals::{Offered, Schedule};
use super::lanes::*;
use super::vipps::Percentiles;
use crate::vipps::Operation;

/// The steps timed, in checkout order.
pub const STEPS: [&str; 3] = [
    "scan_to_check_in_request",
    "pay_command_to_payment_request",
    "vipps_answer_to_terminal_event",
];

/// What one side (lanehub or the floor) did within its window.
#[derive(Debug, Clone, Default)]
pub struct SideReport {
    /// Checkouts completed within the window.
    pub flows: u64,
    /// Checkouts that did not end paid (within the window or after).
    pub failed: u64,
    /// Checkouts still running `DRAIN_LIMIT` after the window closed.
    pub unfinished: u64,
    /// How long a checkout took, from its arrival (the scan, back to back) to the end.
    pub checkout: Percentiles,
    /// From the arrival to the scan: the wait for an idle lane (open loop), with the delay of
    /// the benchmark's own dispatcher and client threads in waking the lane.
    pub lane_wait: Percentiles,
    /// What the open loop's arrivals offered; `None` back to back.
    pub offered: Option<Offered>,
    pub failures: Vec<String>,
    pub window: Duration,
    pub steps: [Percentiles; 3],
    pub cpu_seconds: f64,
    /// Checkouts that ended paid, inside the window or after it (the drain).
    pub completed: u64,
    /// Status reads per checkout that ended paid (all of the run, drain included).
    pub reads_per_flow: f64,
    /// Requests the simulator answered during the side's run, and how many were 429.
    pub http_responses: u64,
    pub http_429: u64,
    /// Requests per Vipps operation the simulator saw during the side's run.
    pub requests: Vec<(Operation, u64)>,
}

impl SideReport {
    pub fn flows_per_second(&self) -> f64 {
        self.flows as f64 / self.window.as_secs_f64().max(f64::EPSILON)
    }

    pub fn cpu_seconds_per_flow(&self) -> f64 {
        self.cpu_seconds / (self.flows.max(1) as f64)
    }

    fn to_json(&self) -> Value {
        let steps: serde_json::Map<String, Value> = STEPS
            .iter()
            .zip(self.steps.iter())
            .map(|(name, p)| ((*name).to_owned(), percentiles_ms(p)))
            .collect();
        json!({
            "flows": self.flows,
            "completed": self.completed,
            "failed": self.failed,
            "unfinished": self.unfinished,
            "failures": self.failures,
            "arrivals": self.offered.map(|o| o.arrivals),
            "arrivals_queued": self.offered.map(|o| o.queued),
            "lane_wait": percentiles_ms(&self.lane_wait),
            "checkout": percentiles_ms(&self.checkout),
            "window_s": round3(self.window.as_secs_f64()),
            "flows_per_second": round3(self.flows_per_second()),
            "cpu_seconds": round3(self.cpu_seconds),
            "cpu_seconds_per_flow": round6(self.cpu_seconds_per_flow()),
            "status_reads_per_flow": round3(self.reads_per_flow),
            "http_responses": self.http_responses,
            "http_429": self.http_429,
            "requests_per_flow": self.requests_per_flow(),
            "steps": steps,
        })
    }

    fn requests_per_flow(&self) -> Value {
        let flows = self.completed.max(1) as f64;
        self.requests
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(op, n)| (op.as_str().to_owned(), json!(round3(*n as f64 / flows))))
            .collect::<serde_json::Map<_, _>>()
            .into()
    }
}

/// Everything a run measured.
#[derive(Debug, Clone)]
pub struct LanesReport {
    pub lanes: u32,
    pub duration: Duration,
    /// The open loop's arrivals; `None` back to back.
    pub schedule: Option<Schedule>,
    pub lanehub: SideReport,
    pub floor: SideReport,
    pub rss_before_kib: u64,
    pub rss_idle_kib: u64,
    pub rss_after_kib: u64,
    pub client_threads: usize,
    pub lane_threads: usize,
    pub commands: super::lanes::CommandLink,
    pub data_dir: PathBuf,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn ms_diff(a: Duration, b: Duration) -> f64 {
    ((a.as_secs_f64() - b.as_secs_f64()) * 1e6).round() / 1e3
}

fn round3(x: f64) -> f64 {
    (x * 1e3).round() / 1e3
}

fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn percentiles_ms(p: &Percentiles) -> Value {
    json!({"count": p.count, "p50_ms": ms(p.p50), "p99_ms": ms(p.p99), "max_ms": ms(p.max)})
}

impl LanesReport {
    pub fn ratio_to_floor(&self) -> f64 {
        self.lanehub.flows_per_second() / self.floor.flows_per_second().max(f64::EPSILON)
    }

    /// Lanehub's p50 and p99 minus the floor's, per step, in milliseconds; NaN (JSON null) when
    /// a side completed no checkout within its window.
    pub fn added_ms(&self) -> [(f64, f64); 3] {
        std::array::from_fn(|i| {
            let (l, f) = (&self.lanehub.steps[i], &self.floor.steps[i]);
            if l.count == 0 || f.count == 0 {
                return (f64::NAN, f64::NAN);
            }
            (ms_diff(l.p50, f.p50), ms_diff(l.p99, f.p99))
        })
    }

    /// The worst step's added p99; NaN (JSON null) when nothing could be compared.
    pub fn added_latency_p99_ms(&self) -> f64 {
        self.added_ms()
            .iter()
            .map(|(_, p99)| *p99)
            .filter(|p99| !p99.is_nan())
            .reduce(f64::max)
            .unwrap_or(f64::NAN)
    }

    /// Arrivals per second the open loop offered (the same on both sides); `None` back to back.
    pub fn offered_per_second(&self) -> Option<f64> {
        let offered = self.lanehub.offered?;
        Some(offered.arrivals as f64 / self.duration.as_secs_f64().max(f64::EPSILON))
    }

    fn mode(&self) -> &'static str {
        if self.schedule.is_some() {
            "open"
        } else {
            "closed"
        }
    }

    /// The targets for this mode.
    fn targets(&self) -> Value {
        match self.schedule {
            Some(_) => json!({
                "added_latency_p99_ms_max": 10.0,
                "failed_or_unfinished": 0,
                "at_lanes": 5000,
                "at_rate_per_second": 100,
            }),
            None => json!({
                "ratio_to_floor_min": 0.4,
                "own_cpu_seconds_per_flow_max": 0.0006,
                "rss_per_idle_lane_kib_max": 64.0,
                "at_lanes": 1000,
            }),
        }
    }

    pub fn rss_per_idle_lane_kib(&self) -> f64 {
        self.rss_idle_kib.saturating_sub(self.rss_before_kib) as f64 / f64::from(self.lanes)
    }

    pub fn to_json(&self) -> Value {
        let added: serde_json::Map<String, Value> = STEPS
            .iter()
            .zip(self.added_ms())
            .map(|(name, (p50, p99))| ((*name).to_owned(), json!({"p50_ms": p50, "p99_ms": p99})))
            .collect();
        json!({
            "benchmark": "lanes",
            "mode": self.mode(),
            "lanes": self.lanes,
            "duration_s": self.duration.as_secs(),
            "rate_per_second": self.schedule.map(|s| s.rate),
            "seed": self.schedule.map(|s| s.seed),
            "offered_per_second": self.offered_per_second().map(round3),
            "flows_per_second": round3(self.lanehub.flows_per_second()),
            "floor_flows_per_second": round3(self.floor.flows_per_second()),
            "ratio_to_floor": round3(self.ratio_to_floor()),
            "added_latency_p99_ms": self.added_latency_p99_ms(),
            "added_latency_ms": added,
            "rss_per_idle_lane_kib": round3(self.rss_per_idle_lane_kib()),
            "cpu_seconds_per_flow": round6(self.lanehub.cpu_seconds_per_flow()),
            "floor_cpu_seconds_per_flow": round6(self.floor.cpu_seconds_per_flow()),
            "own_cpu_seconds_per_flow": round6(
                self.lanehub.cpu_seconds_per_flow() - self.floor.cpu_seconds_per_flow()
            ),
            "memory_kib": {
                "before_lanes": self.rss_before_kib,
                "lanes_idle": self.rss_idle_kib,
                "after_run": self.rss_after_kib,
            },
            "lanehub": self.lanehub.to_json(),
            "floor": self.floor.to_json(),
            "settings": {
                "simulator_tick_ms": SIM_TICK.as_millis() as u64,
                "customer": "club member, approves at once (payment_delay 0)",
                "simulator_rate_limits": true,
                "vipps_max_requests_per_second": BENCH_CEILING,
                "client_threads": self.client_threads,
                "lane_threads": self.lane_threads,
                "terminal_commands": <&str>::from(self.commands),
                "journal": self.data_dir.display().to_string(),
            },
            "targets": self.targets(),
        })
    }

    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let (l, f) = (&self.lanehub, &self.floor);
        let pace = match self.schedule {
            Some(s) => format!(
                "open loop: {} checkouts/s arriving (seed {}), {:.2}/s offered",
                s.rate,
                s.seed,
                self.offered_per_second().unwrap_or(0.0)
            ),
            None => "closed loop: every lane back to back".to_owned(),
        };
        let _ = writeln!(
            out,
            "lanehub bench: {} lanes, {} s per side, {pace}, simulator on 127.0.0.1 ticking every {} ms\n",
            self.lanes,
            self.duration.as_secs(),
            SIM_TICK.as_millis()
        );
        let _ = writeln!(out, "  {:<34} {:>12} {:>12}", "", "lanehub", "floor");
        let _ = writeln!(
            out,
            "  {:<34} {:>12.1} {:>12.1}",
            "checkouts per second",
            l.flows_per_second(),
            f.flows_per_second()
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>12} {:>12}",
            "checkouts (failed, unfinished)",
            format!("{} ({}, {})", l.flows, l.failed, l.unfinished),
            format!("{} ({}, {})", f.flows, f.failed, f.unfinished)
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>12} {:>12}",
            "checkout p50/p99 ms",
            format!("{:.1}/{:.1}", ms(l.checkout.p50), ms(l.checkout.p99)),
            format!("{:.1}/{:.1}", ms(f.checkout.p50), ms(f.checkout.p99)),
        );
        if let (Some(lo), Some(fo)) = (l.offered, f.offered) {
            let _ = writeln!(
                out,
                "  {:<34} {:>12} {:>12}",
                "arrivals (waited for a lane)",
                format!("{} ({})", lo.arrivals, lo.queued),
                format!("{} ({})", fo.arrivals, fo.queued)
            );
        }
        let _ = writeln!(
            out,
            "  {:<34} {:>12.6} {:>12.6}",
            "CPU seconds per checkout",
            l.cpu_seconds_per_flow(),
            f.cpu_seconds_per_flow()
        );
        let _ = writeln!(
            out,
            "  {:<34} {:>12.2} {:>12.2}",
            "status reads per checkout", l.reads_per_flow, f.reads_per_flow
        );
        for (i, name) in STEPS.iter().enumerate() {
            let _ = writeln!(
                out,
                "  {:<34} {:>12} {:>12}",
                format!("{name} p50/p99 ms"),
                format!("{:.2}/{:.2}", ms(l.steps[i].p50), ms(l.steps[i].p99)),
                format!("{:.2}/{:.2}", ms(f.steps[i].p50), ms(f.steps[i].p99)),
            );
        }
        let _ = writeln!(
            out,
            "\n  ratio to floor:           {:.3} (target ≥ 0.4 at 1,000 lanes, closed loop)",
            self.ratio_to_floor()
        );
        let _ = writeln!(
            out,
            "  added latency, worst p99: {:.2} ms (target ≤ 10 ms at 5,000 lanes, 100/s open loop)",
            self.added_latency_p99_ms()
        );
        let _ = writeln!(
            out,
            "  memory per idle lane:     {:.1} KiB (target ≤ 64)",
            self.rss_per_idle_lane_kib()
        );
        out
    }
}
