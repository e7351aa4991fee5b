//! The simulator as the benchmarks serve it: its routes on a free loopback port behind a probe
//! middleware, with a ticker of the benchmark's choosing.
//!
//! The probe counts every answer's status (so a 429 a client retried away is still counted),
//! keeps arrival times, counts requests per Vipps operation, and for the lane benchmark records
//! per lane when the check-in and the payment request arrived and when the capture was answered.
//! A lane is known by its customer's phone number (`4794` and six digits: the lane's index), read
//! from the check-in and create bodies; a capture is matched by the reference its create named.
//!
//! What must stay true: the probe never changes a request or an answer, and it costs the floor
//! and lanehub alike, since both talk to the same simulator.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpServer};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::SimSettings;
use crate::domain::Msisdn;
use crate::sim::{SimState, Simulator};
use crate::vipps::Operation;

/// Arrival times kept at most; later arrivals are counted but not timed.
const MAX_ARRIVALS: usize = 200_000;
/// The phone-number prefix of the lane benchmark's customers; six digits of lane index follow.
const LANE_PHONE_PREFIX: &str = "4794";
/// Lanes the phone-number scheme can tell apart.
pub const MAX_PROBED_LANES: usize = 1_000_000;

/// Answers the simulator sent, how many of them were 429, and when requests arrived.
#[derive(Debug, Default)]
pub struct StatusCounter {
    responses: AtomicU64,
    too_many_requests: AtomicU64,
    arrivals: Mutex<Vec<Instant>>,
}

/// A snapshot of a [`StatusCounter`].
#[derive(Debug, Clone, Copy)]
pub struct Counts {
    pub responses: u64,
    pub too_many_requests: u64,
}

impl StatusCounter {
    fn arrived(&self, at: Instant) {
        // A poisoned lock only means another worker panicked; the times are still usable.
        let mut arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        if arrivals.len() < MAX_ARRIVALS {
            arrivals.push(at);
        }
    }

    /// Arrival times at or after `since`, in order.
    pub fn arrivals_since(&self, since: Instant) -> Vec<Instant> {
        let arrivals = self.arrivals.lock().unwrap_or_else(PoisonError::into_inner);
        let mut times: Vec<Instant> = arrivals.iter().copied().filter(|&t| t >= since).collect();
        times.sort_unstable();
        times
    }

    fn record(&self, status: u16) {
        self.responses.fetch_add(1, Ordering::Relaxed);
        if status == 429 {
            self.too_many_requests.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self) -> Counts {
        Counts {
            responses: self.responses.load(Ordering::Relaxed),
            too_many_requests: self.too_many_requests.load(Ordering::Relaxed),
        }
    }
}

impl Counts {
    pub fn since(self, earlier: Counts) -> Counts {
        Counts {
            responses: self.responses - earlier.responses,
            too_many_requests: self.too_many_requests - earlier.too_many_requests,
        }
    }
}

/// The phone number of the lane benchmark's customer at lane index `index`.
pub fn lane_phone(index: usize) -> Msisdn {
    format!("{LANE_PHONE_PREFIX}{:06}", index % MAX_PROBED_LANES)
        .parse()
        .expect("4794 and six digits make a valid Norwegian msisdn")
}

/// The lane index a benchmark customer's phone number carries.
fn lane_of_phone(phone: &str) -> Option<usize> {
    phone.strip_prefix(LANE_PHONE_PREFIX)?.parse().ok()
}

/// When the simulator saw one lane's steps (the latest of each).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepTimes {
    pub check_in_arrived: Option<Instant>,
    pub create_arrived: Option<Instant>,
    pub capture_answered: Option<Instant>,
}

/// Per-lane step times and per-operation request counts.
#[derive(Debug)]
pub struct LaneProbe {
    lanes: Vec<Mutex<StepTimes>>,
    /// Reference → lane index, from the create body; removed at the capture.
    references: Mutex<HashMap<String, usize>>,
    calls: Vec<AtomicU64>,
    /// A webhook registration was answered 2xx.
    pub webhook_registered: AtomicBool,
}

impl LaneProbe {
    pub fn new(lanes: usize) -> Self {
        LaneProbe {
            lanes: (0..lanes).map(|_| Mutex::default()).collect(),
            references: Mutex::default(),
            calls: Operation::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            webhook_registered: AtomicBool::new(false),
        }
    }

    /// Takes (and clears) what was seen of lane `index`'s steps.
    pub fn take(&self, index: usize) -> StepTimes {
        self.lanes.get(index).map_or_else(StepTimes::default, |l| {
            std::mem::take(&mut *l.lock().unwrap_or_else(PoisonError::into_inner))
        })
    }

    /// Requests of `op` seen so far.
    pub fn calls(&self, op: Operation) -> u64 {
        Operation::ALL
            .iter()
            .position(|&o| o == op)
            .map_or(0, |i| self.calls[i].load(Ordering::Relaxed))
    }

    /// Requests of every operation seen so far, in `Operation::ALL` order.
    pub fn all_calls(&self) -> Vec<u64> {
        self.calls
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// Requests per operation since `before` (from `all_calls`).
    pub fn calls_since(&self, before: &[u64]) -> Vec<(Operation, u64)> {
        Operation::ALL
            .iter()
            .zip(self.all_calls().iter().zip(before))
            .map(|(&op, (now, then))| (op, now - then))
            .collect()
    }

    fn count(&self, op: Operation) {
        if let Some(i) = Operation::ALL.iter().position(|&o| o == op) {
            self.calls[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    fn with_lane(&self, index: usize, f: impl FnOnce(&mut StepTimes)) {
        if let Some(l) = self.lanes.get(index) {
            f(&mut l.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// A check-in or create arrived with `body`.
    fn arrived(&self, op: Operation, body: &[u8], at: Instant) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
            return;
        };
        let phone = match op {
            Operation::CheckIn => v.get("phoneNumber"),
            _ => v.pointer("/customer/phoneNumber"),
        };
        let Some(index) = phone.and_then(|p| p.as_str()).and_then(lane_of_phone) else {
            return;
        };
        if op == Operation::CheckIn {
            self.with_lane(index, |t| t.check_in_arrived = Some(at));
            return;
        }
        self.with_lane(index, |t| t.create_arrived = Some(at));
        if let Some(reference) = v.get("reference").and_then(|r| r.as_str()) {
            self.references
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(reference.to_owned(), index);
        }
    }

    fn capture_answered(&self, path: &str, at: Instant) {
        let Some(reference) = path
            .strip_suffix("/capture")
            .and_then(|p| p.rsplit('/').next())
        else {
            return;
        };
        let lane = self
            .references
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(reference);
        if let Some(index) = lane {
            self.with_lane(index, |t| t.capture_answered = Some(at));
        }
    }
}

/// What the probe middleware shares.
#[derive(Debug)]
struct Probe {
    counter: Arc<StatusCounter>,
    lanes: Option<Arc<LaneProbe>>,
}

async fn probe(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(probe) = req.app_data::<web::Data<Probe>>().cloned() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let arrived = Instant::now();
    probe.counter.arrived(arrived);
    let op = Operation::from_request(req.method().as_str(), req.path());
    if let (Some(lanes), Some(op)) = (&probe.lanes, op) {
        lanes.count(op);
        if matches!(op, Operation::CheckIn | Operation::PaymentCreate) {
            let body = req.extract::<Bytes>().await?;
            lanes.arrived(op, &body, arrived);
            req.set_payload(Payload::from(body));
        }
    }
    let path = (op == Some(Operation::PaymentCapture)).then(|| req.path().to_owned());
    let answer = next.call(req).await;
    let answered = Instant::now();
    let status = match &answer {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    probe.counter.record(status);
    if let Some(lanes) = &probe.lanes {
        let ok = (200..300).contains(&status);
        match (op, path) {
            (Some(Operation::PaymentCapture), Some(path)) if ok => {
                lanes.capture_answered(&path, answered)
            }
            (Some(Operation::WebhookRegister), _) if ok => {
                lanes.webhook_registered.store(true, Ordering::SeqCst)
            }
            _ => {}
        }
    }
    Ok(answer?.map_into_boxed_body())
}

/// The simulator served for a benchmark.
pub struct EmbeddedSim {
    pub base_url: String,
    pub counter: Arc<StatusCounter>,
    pub state: Arc<SimState>,
    /// The simulator-clock instant of the latest tick, published when that tick is done.
    pub ticks: watch::Receiver<Instant>,
    server: actix_web::dev::ServerHandle,
    ticker: tokio::task::JoinHandle<()>,
}

impl EmbeddedSim {
    /// Serves the simulator's routes on a free loopback port, as `Simulator::serve` does but
    /// ticking every `tick`, with every answer counted and, with `lanes`, lane steps recorded.
    pub fn start(
        settings: SimSettings,
        tick: Duration,
        lanes: Option<Arc<LaneProbe>>,
    ) -> std::io::Result<EmbeddedSim> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let sim = Simulator::new(settings);
        let counter = Arc::new(StatusCounter::default());
        let probe_data = web::Data::new(Probe {
            counter: counter.clone(),
            lanes,
        });
        let s = sim.clone();
        let server = HttpServer::new(move || {
            let s = s.clone();
            App::new()
                .app_data(probe_data.clone())
                .wrap(from_fn(probe))
                .configure(move |cfg| s.configure(cfg))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        let handle = crate::sim::spawn_server(server);
        let state = sim.state().clone();
        let (tick_tx, ticks) = watch::channel(state.clock.now());
        let ticker = crate::sim::spawn_ticker(state.clone(), tick, move |now| {
            tick_tx.send_replace(now);
        });
        Ok(EmbeddedSim {
            base_url: format!("http://{addr}"),
            counter,
            state,
            ticks,
            server: handle,
            ticker,
        })
    }

    pub async fn stop(self) {
        self.ticker.abort();
        self.server.stop(true).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lane_phones_carry_their_index() {
        let phone = lane_phone(4_321);
        assert_eq!(phone.as_str(), "4794004321");
        assert_eq!(lane_of_phone(phone.as_str()), Some(4_321));
        assert_eq!(lane_of_phone("4791234567"), None);
    }

    #[test]
    fn captures_are_matched_to_the_lane_that_created_them() {
        let probe = LaneProbe::new(3);
        let t0 = Instant::now();
        let body = br#"{"reference":"ref-0001","customer":{"phoneNumber":"4794000002"}}"#;
        probe.arrived(Operation::PaymentCreate, body, t0);
        probe.arrived(
            Operation::CheckIn,
            br#"{"phoneNumber":"4794000002","isMember":true}"#,
            t0,
        );
        probe.capture_answered("/epayment/v1/payments/ref-0001/capture", t0);
        let seen = probe.take(2);
        assert_eq!(
            (
                seen.check_in_arrived,
                seen.create_arrived,
                seen.capture_answered
            ),
            (Some(t0), Some(t0), Some(t0))
        );
        assert!(probe.take(2).capture_answered.is_none(), "taking clears");
        assert!(probe.take(0).create_arrived.is_none());
    }
}
