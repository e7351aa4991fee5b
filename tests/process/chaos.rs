//! Chaos: checkouts on six lanes while Vipps misbehaves in every way the simulator can and lanes
//! panic every few seconds.
//!
//! lanehub runs in-process with its embedded simulator (`Application::build`, free ports, a private
//! data dir, webhooks registered). Once the webhook is registered the simulator answers 20% of
//! Vipps requests with a 5xx, holds 10% without an answer (longer than lanehub's request timeout,
//! which is made short), answers bursts of 429 every two seconds, and sends webhook deliveries
//! twice, out of order, and beside forged ones. A lane panics (test hook) every 1.5 to 2.5 seconds,
//! round robin. The rolls come from a printed seed
//! (`LANEHUB_CHAOS_SEED=<n>` repeats the customers, cancels and panic schedule).
//!
//! Each lane's terminal keeps its WebSocket open and records every event. Cashiers scan, pay, and
//! sometimes cancel; a session that ends without a payment (identification failed, a panic
//! interrupted it, Vipps unavailable) is followed by a new scan. Then:
//! - every session ended within its deadline, and every lane is up and idle (none stuck);
//! - what each terminal was last told about each session is the truth at Vipps:
//!   `payment_approved` exactly when the payment was captured in full, and a payment never
//!   captured is final (aborted, expired, terminated or cancelled) rather than left authorised,
//!   unless the cashier was told to cancel it in the back office;
//! - a session with no payment outcome has no payment at Vipps;
//! - every forged webhook was refused.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lanehub::config::{LaneSettings, Settings};
use lanehub::vipps::ratelimit::QUOTA_WINDOW;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::common::app::{Api, start};
use crate::common::sim::SimControl;
use crate::common::snapshot::{PAYING, amount, is_final, state};
use crate::common::{ADMIN, POLL, ms};

const LANES: u32 = 6;
const CHECKOUTS_PER_LANE: usize = 8;
/// From a scan to the session's end, whatever happens on the way. The payment expiry (8 s) plus
/// its margin (2 s) is lanehub's own safety net; this leaves room for a final read-back.
const SESSION_DEADLINE: Duration = Duration::from_secs(25);
/// The whole run, so a wedged run fails instead of hanging CI.
const RUN_LIMIT: Duration = Duration::from_secs(120);
/// The cashier messages that end a checkout with a payment outcome; any other end of a session
/// (interrupted by a panic, Vipps unavailable, not identified) makes the cashier scan again.
const PAYMENT_OUTCOMES: [&str; 5] = [
    "payment_approved",
    "payment_declined",
    "payment_expired",
    "payment_cancelled",
    "payment_failed",
];

fn settings() -> Settings {
    let mut s = Settings::load(None, Vec::new()).expect("built-in defaults load");
    s.api.listen = "127.0.0.1:0".parse().expect("an address");
    s.api.test_hooks = true;
    s.sim.listen = "127.0.0.1:0".parse().expect("an address");
    s.sim.login_interval = ms(200);
    s.sim.payment_expiry = ms(8_000);
    // A failed delivery is retried soon, so webhooks still help under 5xx from the receiver.
    s.sim.webhook_retry_initial = ms(200);
    s.sim.webhook_retry_max = ms(1_000);
    s.sim.webhook_retry_for = Duration::from_secs(5);
    s.session.payment_first_poll = ms(200);
    s.session.payment_poll_interval = ms(300);
    s.session.payment_expiry = ms(8_000);
    s.session.payment_margin = ms(2_000);
    s.vipps.request_timeout = ms(500);
    s.vipps.connect_timeout = ms(500);
    s.vipps.retry_deadline = ms(2_000);
    s.vipps.retry_initial_backoff = ms(20);
    s.vipps.retry_max_backoff = ms(200);
    s.vipps.max_rate_limit_wait = ms(2_000);
    s.vipps.circuit_cool_down = ms(500);
    // The panics below are the test's, not a broken lane's: room for all of them.
    s.supervisor.max_restarts = 50;
    // A create processed after its session gave up is looked for, and cancelled, quickly. The
    // window leaves room for a hung create (1.5 s) on a loaded CI machine: a create that lands
    // after it is, by design, no longer looked for.
    s.supervisor.unconfirmed_payment_interval = ms(200);
    s.supervisor.unconfirmed_payment_window = Duration::from_secs(15);
    s.lanes = (1..=LANES)
        .map(|lane| LaneSettings {
            id: lane.to_string().parse().expect("a lane id"),
            token: format!("chaos-lane-{lane}-token-0123456789").into(),
            scanners: vec![],
        })
        .collect();
    s
}

/// A lane's customers: a quick approver, a decliner, and a slow approver (whom the cashier
/// sometimes cancels).
fn customers(lane: u32) -> [(String, Value); 3] {
    let b = |payment: &str, delay: u64| json!({"payment": payment, "paymentDelay": delay, "login": "consent", "loginDelay": 100});
    [
        (format!("4798{lane:02}0001"), b("approve", 100)),
        (format!("4798{lane:02}0002"), b("decline", 100)),
        (format!("4798{lane:02}0003"), b("approve", 700)),
    ]
}

/// The lanehub under test: its terminal API and its simulator.
#[derive(Clone)]
struct Hub {
    api: Api,
    sim: SimControl,
}

impl Hub {
    /// A lane command; a 503 (the lane is restarting after a panic) is tried again.
    async fn command(&self, lane: &str, cmd: &str, body: Value) -> (u16, Value) {
        let deadline = Instant::now() + SESSION_DEADLINE;
        loop {
            let (status, body) = self.api.command(lane, cmd, body.clone()).await;
            if status != 503 {
                return (status, body);
            }
            assert!(
                Instant::now() < deadline,
                "lane {lane} stayed unavailable: {body}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The cashier message (code and text) a terminal showed when session `id` ended: the message of
/// the first event after the last one that still showed the session.
fn told_end<'a>(events: &'a [Value], id: &str) -> Option<(&'a str, &'a str)> {
    let last = events
        .iter()
        .rposition(|e| e["snapshot"]["session"]["id"] == id)?;
    let message = &events[last + 1..]
        .iter()
        .find(|e| e["snapshot"]["up"] == true)?["snapshot"]["message"];
    Some((message["code"].as_str()?, message["text"].as_str()?))
}

/// Everything a lane's terminal read from its WebSocket, in order.
type Told = Arc<Mutex<Vec<Value>>>;

/// Opens the lane's WebSocket and records every event until the test ends.
async fn terminal(hub: &Hub, lane: u32) -> Told {
    let url = format!(
        "{}/api/v1/lanes/{lane}/events?access_token={ADMIN}",
        hub.api.address.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket opens");
    let told: Told = Arc::default();
    let log = told.clone();
    tokio::spawn(async move {
        // Pings are answered by the client library while reading.
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(text) = message {
                let event: Value = serde_json::from_str(&text).expect("events are JSON");
                log.lock().expect("the log lock").push(event);
            }
        }
    });
    told
}

/// Drives the lane's checkouts; returns the sessions it opened with their amounts.
async fn cashier(hub: Hub, lane: u32, seed: u64) -> Vec<(String, u64)> {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(lane) << 32));
    let mut qrs = Vec::new();
    for (phone, _) in customers(lane) {
        let c = hub
            .sim
            .call(reqwest::Method::GET, &format!("/customers/{phone}"), None)
            .await;
        qrs.push(c["qrClearTextUrl"].as_str().expect("a QR").to_owned());
    }
    let lane = lane.to_string();
    let mut sessions = Vec::new();
    for _ in 0..CHECKOUTS_PER_LANE {
        let who = rng.random_range(0..qrs.len());
        let cancel = who == 2 && rng.random_bool(0.5);
        let value = rng.random_range(1000..90_000);
        // Until a session reaches a payment outcome: a scan that does not lead to a payment (a
        // panic, Vipps unavailable) is followed by another, as a cashier would.
        loop {
            let (status, body) = hub
                .command(&lane, "scans", json!({ "text": qrs[who] }))
                .await;
            assert_eq!(status, 200, "scan on lane {lane}: {body}");
            let id = body["session"]["id"]
                .as_str()
                .expect("a scan opens a session")
                .to_owned();
            sessions.push((id.clone(), value));
            let deadline = Instant::now() + SESSION_DEADLINE;
            // A lane restarting after a panic still shows its session; wait until it is up.
            let ours = |s: &Value| s["session"]["id"] == id.as_str();
            let ready = hub
                .api
                .wait_lane_until(&lane, "identified the customer", deadline, |s| {
                    s["up"] == true
                        && (!ours(s)
                            || !matches!(state(s), "awaiting_qr_exchange" | "awaiting_membership"))
                })
                .await;
            if !ours(&ready) || state(&ready) != "ready_for_payment" {
                reset(&hub, &lane, deadline).await;
                continue;
            }
            let pay = json!({"amount": {"value": value, "currency": "NOK"}});
            let (status, body) = hub.command(&lane, "payment", pay).await;
            if status == 409 {
                // The session ended before pay (a panic interrupted it): start again.
                reset(&hub, &lane, deadline).await;
                continue;
            }
            assert_eq!(status, 200, "pay on lane {lane}: {body}");
            if cancel {
                let (status, body) = hub.command(&lane, "cancel", json!({})).await;
                // Refused only once the capture started or the session ended.
                assert!(matches!(status, 200 | 409), "cancel on lane {lane}: {body}");
            }
            let done = hub
                .api
                .wait_lane_until(&lane, "ended the payment", deadline, |s| {
                    s["up"] == true && (!ours(s) || !PAYING.contains(&state(s)))
                })
                .await;
            let code = done["message"]["code"].as_str().unwrap_or_default();
            if !ours(&done) && PAYMENT_OUTCOMES.contains(&code) {
                break;
            }
            reset(&hub, &lane, deadline).await;
        }
        let idle = Instant::now() + SESSION_DEADLINE;
        hub.api
            .wait_lane_until(&lane, "came back to idle", idle, |s| state(s) == "idle")
            .await;
    }
    sessions
}

/// Brings the lane back to idle after a session that ended without a payment outcome.
async fn reset(hub: &Hub, lane: &str, deadline: Instant) {
    let snapshot = hub
        .api
        .wait_lane_until(lane, "let go of the session", deadline, |s| {
            s["up"] == true && !PAYING.contains(&state(s))
        })
        .await;
    if state(&snapshot) != "idle" {
        let (status, body) = hub.command(lane, "reset", json!({})).await;
        assert_eq!(status, 200, "reset lane {lane}: {body}");
    }
}

/// The global faults; `burst` adds a burst of 429s to the next requests.
fn faults(seed: Option<u64>, burst: u32) -> Value {
    let mut f = json!({
        "serverErrorRate": 0.2,
        "hangRate": 0.1,
        "hangMs": 1500,
        "tooManyRequestsNext": burst,
        "retryAfterSecs": 1,
        "webhookDuplicateRate": 0.3,
        "webhookOutOfOrderRate": 0.3,
        "webhookForgedRate": 0.3,
    });
    if let Some(seed) = seed {
        f["seed"] = json!(seed);
    }
    f
}

#[actix_web::test]
async fn checkouts_end_truthfully_under_vipps_faults_and_lane_panics() {
    let _slot = crate::common::load_test_slot().await;
    let seed = crate::common::seed("LANEHUB_CHAOS_SEED", "chaos");
    let began = Instant::now();
    let app = start(settings()).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        // Idle connections are dropped well before the servers' keep-alive (5 s) ends them,
        // so a request never goes out on a connection being closed.
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .expect("a client");
    let hub = Hub {
        api: Api {
            http: http.clone(),
            ..app.api.clone()
        },
        sim: SimControl::with_client(app.sim.url.clone(), http),
    };
    let store = app.store.clone();

    for lane in 1..=LANES {
        hub.api
            .wait_lane_until(
                &lane.to_string(),
                "came up",
                Instant::now() + SESSION_DEADLINE,
                |s| s["up"] == true,
            )
            .await;
        for (phone, behaviour) in customers(lane) {
            let body = json!({"phoneNumber": phone, "name": format!("Customer {phone}"),
                              "email": format!("c{phone}@example.com"), "behaviour": behaviour});
            hub.sim
                .call(reqwest::Method::POST, "/customers", Some(body))
                .await;
        }
    }
    // The webhook registration at start must not meet the faults.
    hub.sim.wait_webhook_registered().await;
    let mut told = BTreeMap::new();
    for lane in 1..=LANES {
        told.insert(lane.to_string(), terminal(&hub, lane).await);
    }
    hub.sim
        .call(reqwest::Method::PUT, "/faults", Some(faults(Some(seed), 0)))
        .await;

    let cashiers: Vec<_> = (1..=LANES)
        .map(|lane| {
            let hub = hub.clone();
            (lane, actix_web::rt::spawn(cashier(hub, lane, seed)))
        })
        .collect();

    // Chaos beside the cashiers: a lane panic every 1.5-2.5 s (round robin), a 429 burst every other.
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut panics, mut bursts) = (0u32, 0u32);
    while !cashiers.iter().all(|(_, c)| c.is_finished()) {
        assert!(
            began.elapsed() < RUN_LIMIT,
            "the run took over {RUN_LIMIT:?}"
        );
        tokio::time::sleep(ms(rng.random_range(1500..2500))).await;
        let lane = panics % LANES + 1;
        let (status, body) = hub
            .api
            .call(
                reqwest::Method::POST,
                &format!("/api/v1/lanes/{lane}/test/panic"),
                None,
            )
            .await;
        assert!(
            matches!(status, 202 | 503),
            "panic lane {lane}: {status} {body}"
        );
        panics += 1;
        if panics % 2 == 0 {
            hub.sim.faults("", faults(None, 5)).await;
            bursts += 1;
        }
    }
    let mut sessions = Vec::new();
    for (lane, c) in cashiers {
        for (id, value) in c.await.expect("a cashier finished without panicking") {
            sessions.push((lane.to_string(), id, value));
        }
    }
    let injected = hub.sim.call(reqwest::Method::GET, "/faults", None).await["injected"].clone();
    hub.sim.clear_faults("").await;
    println!(
        "{} sessions, {panics} panics, {bursts} 429 bursts in {:?}; injected {injected}",
        sessions.len(),
        began.elapsed()
    );

    // No lane is stuck: all up and idle, every session closed in the journal.
    let deadline = Instant::now() + SESSION_DEADLINE;
    for lane in 1..=LANES {
        hub.api
            .wait_lane_until(&lane.to_string(), "settled", deadline, |s| {
                s["up"] == true && state(s) == "idle"
            })
            .await;
    }
    loop {
        let open = store.all_open_sessions().await.expect("the journal reads");
        if open.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "sessions left open: {open:?}");
        tokio::time::sleep(POLL).await;
    }

    let payments: HashMap<String, Value> = hub
        .sim
        .call(reqwest::Method::GET, "/payments", None)
        .await
        .as_array()
        .expect("a list of payments")
        .iter()
        .map(|p| {
            (
                p["reference"].as_str().unwrap_or_default().to_owned(),
                p.clone(),
            )
        })
        .collect();
    let (mut paid, mut open_after_not_created) = (0, Vec::new());
    for (lane, id, value) in &sessions {
        let events = told[lane].lock().expect("the log lock").clone();
        let (code, text) = told_end(&events, id).unwrap_or_else(|| {
            let tail: Vec<&Value> = events
                .iter()
                .skip_while(|e| e["snapshot"]["session"]["id"] != id.as_str())
                .collect();
            panic!("lane {lane}'s terminal was never told how {id} ended: {tail:?}")
        });
        let reference = format!("lh-{lane}-{id}");
        let Some(p) = payments.get(&reference) else {
            assert_ne!(
                code, "payment_approved",
                "lane {lane} told paid for {reference}, which Vipps never saw"
            );
            continue;
        };
        let captured = amount(p, "capturedAmount");
        assert_eq!(
            code == "payment_approved",
            captured == *value,
            "lane {lane} told {code} for {reference}; Vipps: {p}"
        );
        assert!(captured == 0 || captured == *value, "{p}");
        paid += usize::from(captured > 0);
        if is_final(p) {
            continue;
        }
        // An authorisation left open is the truth only when the cashier was sent to the back
        // office with it (the capture or the cancel ran out of attempts).
        if text.contains("back office") {
            continue;
        }
        // A create that reached Vipps after the lane's last read-back answered 404: the cashier
        // took another payment method, so lanehub's watch of unconfirmed payments cancels it.
        if text.contains("did not reach Vipps") {
            open_after_not_created.push(reference);
            continue;
        }
        panic!("lane {lane} told {code} ({text}) for {reference}, left open at Vipps: {p}");
    }
    // A create retried under the faults may have spent the reference's five mutations a minute
    // at Vipps: the watch's cancel then waits for the quota window, as lanehub must.
    let deadline = Instant::now() + QUOTA_WINDOW + SESSION_DEADLINE;
    for reference in &open_after_not_created {
        loop {
            let p = hub
                .sim
                .call(
                    reqwest::Method::GET,
                    &format!("/payments/{reference}"),
                    None,
                )
                .await;
            if is_final(&p) {
                assert_eq!(amount(&p, "capturedAmount"), 0, "{p}");
                break;
            }
            if Instant::now() >= deadline {
                let index = store.payments().await.expect("the payments index reads");
                let ours = index.iter().find(|r| r.reference.as_str() == reference);
                panic!(
                    "told \"did not reach Vipps\", yet left open at Vipps: {p}; index: {ours:?}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
    println!(
        "{} late payments cancelled by the unconfirmed-payment watch",
        open_after_not_created.len()
    );
    assert!(paid > 0, "some checkouts were paid");

    let deliveries = hub
        .sim
        .call(reqwest::Method::GET, "/webhooks/deliveries", None)
        .await;
    let forged: Vec<&Value> = deliveries
        .as_array()
        .expect("a list of deliveries")
        .iter()
        .filter(|d| d["forged"] == true)
        .collect();
    assert!(
        forged.iter().all(|d| d["status"] == 401),
        "forged webhooks must be refused: {forged:?}"
    );
    println!("chaos test done in {:?}", began.elapsed());
}
