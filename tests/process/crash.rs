//! Crash resilience: 200 checkouts while lanehub is killed (SIGKILL) at random moments at least
//! 20 times and started again on the same data directory, against one `lanehub sim` process.
//!
//! Cashiers on eight lanes drive the checkouts through the terminal API (members who pay,
//! non-members who enroll and then pay, customers who decline). A request that fails because
//! lanehub is down makes the cashier look at the lane once it is back, as docs/terminal-api.md
//! says a terminal should: a recovered payment or enrollment is waited for; a checkout that was
//! interrupted before its payment was requested is driven again with the same receipt number.
//! The kill moments come from a seeded RNG; the seed is printed and `LANEHUB_CRASH_SEED=<n>`
//! repeats a run's kill schedule and customers.
//!
//! At the end, with everything settled and lanehub stopped:
//! - every payment the simulator holds is final (captured, cancelled, aborted, expired or
//!   terminated; never authorised and left);
//! - lanehub's payments index and journal agree with the simulator per reference;
//! - no checkout (receipt number) has two payments at the simulator;
//! - every Login the simulator saw consented to is a member in lanehub's store.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lanehub::domain::Msisdn;
use lanehub::store::{MembershipStore, Store};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::common::POLL;
use crate::common::process::{Process, RIG_ADMIN};
use crate::common::sim::SimControl;
use crate::common::snapshot::{PAYING, amount, is_final, state};

const LANES: u32 = 8;
const CHECKOUTS: usize = 200;
const MIN_KILLS: usize = 20;
/// How long lanehub runs between two kills, in milliseconds (uniformly at random).
const UPTIME_MS: std::ops::Range<u64> = 300..2200;
/// The longest a cashier waits for one step, downtime included, before the test fails.
const PATIENCE: Duration = Duration::from_secs(40);
/// The whole run, so a wedged run fails instead of hanging CI.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// States of an enrollment in progress: the cashier waits until the lane is ready for payment.
const ENROLLING: [&str; 3] = [
    "awaiting_login_start",
    "awaiting_consent",
    "awaiting_member_store",
];

/// The lanehub that runs now, or `None` while it is down.
type Current = watch::Receiver<Option<String>>;

/// A request failed because lanehub is down (or did not answer): look at the lane again.
#[derive(Debug)]
struct Down;

/// What the cashiers met after crashes, printed at the end so a run shows what it exercised.
#[derive(Default)]
struct Met {
    /// A payment in flight picked up again (after a crash or a surprise).
    payments_resumed: AtomicUsize,
    /// An enrollment in flight picked up again.
    enrollments_resumed: AtomicUsize,
    /// A checkout driven again from the scan (interrupted before its payment).
    redriven: AtomicUsize,
}

/// Talks to the simulator and to whichever lanehub runs now.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    sim: SimControl,
    current: Current,
    met: Arc<Met>,
}

impl Client {
    /// The URL of the running lanehub, waiting while it is down.
    async fn api(&self) -> String {
        let mut current = self.current.clone();
        let url = current
            .wait_for(Option::is_some)
            .await
            .expect("the killer keeps the watch open");
        url.clone().expect("waited for Some")
    }

    /// A terminal API call; `Err(Down)` when lanehub did not answer.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), Down> {
        let url = format!("{}/api/v1{path}", self.api().await);
        let mut req = self.http.request(method, &url).bearer_auth(RIG_ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.map_err(|_| Down)?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|_| Down)?;
        if status == 503 {
            // The lane is restarting or busy; to the cashier that is the same as lanehub down.
            tokio::time::sleep(POLL).await;
            return Err(Down);
        }
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    async fn lane(&self, lane: &str) -> Result<Value, Down> {
        let (status, body) = self
            .call(reqwest::Method::GET, &format!("/lanes/{lane}"), None)
            .await?;
        assert_eq!(status, 200, "GET lane {lane}: {body}");
        Ok(body)
    }

    async fn command(&self, lane: &str, cmd: &str, body: Value) -> Result<(u16, Value), Down> {
        self.call(
            reqwest::Method::POST,
            &format!("/lanes/{lane}/{cmd}"),
            Some(body),
        )
        .await
    }

    /// Polls the lane until `done` holds; `Err(Down)` if lanehub stops answering meanwhile.
    async fn wait_lane(
        &self,
        lane: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Result<Value, Down> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let snapshot = self.lane(lane).await?;
            if done(&snapshot) {
                return Ok(snapshot);
            }
            assert!(
                Instant::now() < deadline,
                "lane {lane} never {what} within {PATIENCE:?}: {snapshot}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

fn session_id(snapshot: &Value) -> Option<String> {
    snapshot["session"]["id"].as_str().map(str::to_owned)
}

fn receipt_number(payment: &Value) -> Option<&str> {
    payment["receipt"]["bottomLine"]["receiptNumber"].as_str()
}

/// A lane's virtual customers: `4797LL000c`. What each does is fixed per position.
fn customers(lane: u32) -> Vec<(String, Value)> {
    let behaviour = |payment: &str, login: &str| json!({"payment": payment, "paymentDelay": 150, "login": login, "loginDelay": 100});
    vec![
        (
            format!("4797{lane:02}0001"),
            behaviour("approve", "consent"),
        ),
        (
            format!("4797{lane:02}0002"),
            behaviour("approve", "consent"),
        ),
        (format!("4797{lane:02}0003"), behaviour("approve", "deny")),
        (
            format!("4797{lane:02}0004"),
            behaviour("decline", "consent"),
        ),
        (format!("4797{lane:02}0005"), behaviour("decline", "deny")),
    ]
}

/// One checkout as the cashier knows it.
struct Checkout {
    lane: String,
    receipt: String,
    qr: String,
    amount: u64,
    /// Offer enrollment when the customer turns out not to be a member.
    enroll: bool,
    /// Every session lanehub opened for this checkout (a re-drive opens another).
    sessions: HashSet<String>,
}

/// Where the cashier goes next.
enum Next {
    Start,
    AfterIdentification,
    Pay,
    AwaitOutcome,
    Done,
}

impl Checkout {
    fn pay_body(&self) -> Value {
        json!({
            "amount": {"value": self.amount, "currency": "NOK"},
            "description": "Groceries",
            "receiptNumber": self.receipt,
            "orderLines": [{"name": "Groceries", "id": "7038010000001", "quantity": 1,
                            "unitPrice": self.amount, "totalAmount": self.amount,
                            "taxAmount": 0, "taxPercentage": 0}],
        })
    }

    fn ours(&self, snapshot: &Value) -> bool {
        session_id(snapshot).is_some_and(|id| self.sessions.contains(&id))
    }

    /// Drives the checkout to an end, picking it up again after every crash.
    async fn run(mut self, client: &Client) {
        let mut next = Next::Start;
        let started = Instant::now();
        loop {
            assert!(
                started.elapsed() < RUN_LIMIT,
                "checkout {} never ended",
                self.receipt
            );
            next = match self.step(client, next).await {
                Ok(Next::Done) => return,
                Ok(next) => next,
                Err(Down) => loop {
                    match self.resume(client).await {
                        Ok(next) => break next,
                        Err(Down) => tokio::time::sleep(POLL).await,
                    }
                },
            };
        }
    }

    async fn step(&mut self, client: &Client, next: Next) -> Result<Next, Down> {
        let lane = self.lane.clone();
        match next {
            Next::Start => {
                let (status, body) = client
                    .command(&lane, "scans", json!({ "text": self.qr }))
                    .await?;
                assert_eq!(status, 200, "scan on lane {lane}: {body}");
                self.sessions
                    .insert(session_id(&body).expect("a scan opens a session"));
                Ok(Next::AfterIdentification)
            }
            Next::AfterIdentification => {
                let snapshot = client
                    .wait_lane(&lane, "identified the customer", |s| {
                        !matches!(state(s), "awaiting_qr_exchange" | "awaiting_membership")
                    })
                    .await?;
                if state(&snapshot) != "ready_for_payment" {
                    // Not identified (the session ended): scan again.
                    return Ok(Next::Start);
                }
                if self.enroll && snapshot["session"]["customer"]["member"] == false {
                    let (status, body) = client.command(&lane, "enroll", json!({})).await?;
                    if status == 409 {
                        // The session ended meanwhile: a restart between the look at the lane
                        // and the command closes a session with nothing in flight.
                        return self.resume(client).await;
                    }
                    assert_eq!(status, 200, "enroll on lane {lane}: {body}");
                    client
                        .wait_lane(&lane, "finished the enrollment", |s| {
                            !ENROLLING.contains(&state(s))
                        })
                        .await?;
                }
                Ok(Next::Pay)
            }
            Next::Pay => {
                let (status, body) = client.command(&lane, "payment", self.pay_body()).await?;
                if status == 409 {
                    // The session ended meanwhile (an enrollment that failed oddly, a timeout).
                    return self.resume(client).await;
                }
                assert_eq!(status, 200, "pay on lane {lane}: {body}");
                Ok(Next::AwaitOutcome)
            }
            Next::AwaitOutcome => {
                client
                    .wait_lane(&lane, "ended the checkout", |s| !PAYING.contains(&state(s)))
                    .await?;
                self.resume(client).await
            }
            Next::Done => Ok(Next::Done),
        }
    }

    /// Looks at the lane (after lanehub came back, or after a surprise) and decides what the
    /// cashier does next.
    async fn resume(&mut self, client: &Client) -> Result<Next, Down> {
        let snapshot = client.lane(&self.lane).await?;
        let ours = self.ours(&snapshot);
        let st = state(&snapshot);
        if ours && PAYING.contains(&st) {
            client.met.payments_resumed.fetch_add(1, Ordering::Relaxed);
            return Ok(Next::AwaitOutcome);
        }
        if ours && ENROLLING.contains(&st) {
            client
                .met
                .enrollments_resumed
                .fetch_add(1, Ordering::Relaxed);
            client
                .wait_lane(&self.lane, "finished the recovered enrollment", |s| {
                    !ENROLLING.contains(&state(s))
                })
                .await?;
            return Box::pin(self.resume(client)).await;
        }
        if ours && matches!(st, "awaiting_qr_exchange" | "awaiting_membership") {
            return Ok(Next::AfterIdentification);
        }
        if ours && st == "ready_for_payment" {
            return Ok(Next::Pay);
        }
        // The lane is idle (or shows a session we did not open: that cannot happen, one cashier
        // per lane). A payment with our receipt means the checkout has its outcome, told or not:
        // lanehub requested it and saw it through.
        let payments = client.sim.payments().await;
        if payments
            .iter()
            .any(|p| receipt_number(p) == Some(&self.receipt))
        {
            assert_eq!(
                st, "idle",
                "a finished checkout leaves the lane idle: {snapshot}"
            );
            return Ok(Next::Done);
        }
        if st != "idle" {
            let (status, body) = client.command(&self.lane, "reset", json!({})).await?;
            assert_eq!(status, 200, "reset lane {}: {body}", self.lane);
        }
        client.met.redriven.fetch_add(1, Ordering::Relaxed);
        Ok(Next::Start)
    }
}

/// Drives the checkouts of one lane, one after the other, until all are taken.
async fn cashier(client: Client, lane: u32, seed: u64, taken: Arc<AtomicUsize>) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(u64::from(lane)));
    let people = customers(lane);
    let mut qrs = Vec::new();
    for (phone, _) in &people {
        let c = client
            .sim
            .call(reqwest::Method::GET, &format!("/customers/{phone}"), None)
            .await;
        qrs.push(c["qrTokenUrl"].as_str().expect("a QR").to_owned());
    }
    loop {
        let n = taken.fetch_add(1, Ordering::SeqCst);
        if n >= CHECKOUTS {
            return;
        }
        let who = rng.random_range(0..qrs.len());
        let checkout = Checkout {
            lane: lane.to_string(),
            receipt: format!("C-{n:04}"),
            qr: qrs[who].clone(),
            amount: rng.random_range(1000..90_000),
            enroll: rng.random_bool(0.8),
            sessions: HashSet::new(),
        };
        checkout.run(&client).await;
    }
}

/// Starts `lanehub run` in remote mode against the simulator on `data`; returns when every lane
/// is up.
async fn start_lanehub(http: &reqwest::Client, config: &Path, data: &Path) -> (Process, String) {
    let config = config.to_str().expect("a UTF-8 path").to_owned();
    let log = data.join("lanehub.log");
    let (process, url) = tokio::task::spawn_blocking(move || {
        Process::start(&["run", "--config", &config], &[], &log)
    })
    .await
    .expect("the start task runs");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let up = async {
            let res = http
                .get(format!("{url}/api/v1/lanes"))
                .bearer_auth(RIG_ADMIN)
                .send()
                .await
                .ok()?;
            let lanes: Value = res.json().await.ok()?;
            let lanes = lanes.as_array()?;
            Some(lanes.len() == LANES as usize && lanes.iter().all(|l| l["up"] == true))
        };
        if up.await == Some(true) {
            return (process, url);
        }
        assert!(Instant::now() < deadline, "lanehub's lanes never came up");
        tokio::time::sleep(POLL).await;
    }
}

fn write_config(dir: &Path, sim: &str) -> PathBuf {
    let mut toml = format!(
        "[api]\nlisten = \"127.0.0.1:0\"\nadmin_token = \"{RIG_ADMIN}\"\n\n\
         [vipps]\nmode = \"remote\"\nbase_url = \"{sim}\"\nwebhook_public_url = \"\"\n\
         request_timeout = \"3s\"\nretry_deadline = \"5s\"\ncircuit_cool_down = \"1s\"\n\n\
         [session]\npayment_first_poll = \"100ms\"\npayment_poll_interval = \"200ms\"\n\n\
         [supervisor]\nlane_threads = 2\nunconfirmed_payment_interval = \"500ms\"\n\n\
         [store]\ndata_dir = \"{}\"\n",
        dir.display()
    );
    for lane in 1..=LANES {
        toml.push_str(&format!(
            "\n[[lanes]]\nid = \"{lane}\"\ntoken = \"crash-lane-{lane}-token-0123456789\"\n"
        ));
    }
    let path = dir.join("lanehub.toml");
    std::fs::write(&path, toml).expect("the config is written");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkouts_survive_random_sigkills() {
    let _slot = crate::common::load_test_slot().await;
    let seed = crate::common::seed("LANEHUB_CRASH_SEED", "crash");
    let began = Instant::now();
    lanehub::install_crypto_provider();
    let data = tempfile::tempdir().expect("a temp dir");
    let sim_env = [("LANEHUB__SIM__LOGIN_INTERVAL", "100ms".to_owned())];
    let sim_log = data.path().join("sim.log");
    let (_sim, sim_url) = Process::start(&["sim", "--listen", "127.0.0.1:0"], &sim_env, &sim_log);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        // Idle connections are dropped well before the servers' keep-alive (5 s) ends them,
        // so a request never goes out on a connection being closed.
        .pool_idle_timeout(Duration::from_secs(1))
        .build()
        .expect("a client");
    let config = write_config(data.path(), &sim_url);

    let (tx, rx) = watch::channel(None);
    let client = Client {
        http: http.clone(),
        sim: SimControl::with_client(sim_url.clone(), http.clone()),
        current: rx,
        met: Arc::default(),
    };
    for lane in 1..=LANES {
        for (phone, behaviour) in customers(lane) {
            let body = json!({"phoneNumber": phone, "name": format!("Customer {phone}"),
                              "email": format!("c{phone}@example.com"), "behaviour": behaviour});
            client
                .sim
                .call(reqwest::Method::POST, "/customers", Some(body))
                .await;
        }
    }

    let (mut lanehub, url) = start_lanehub(&http, &config, data.path()).await;
    tx.send_replace(Some(url));
    let taken = Arc::new(AtomicUsize::new(0));
    let cashiers: Vec<_> = (1..=LANES)
        .map(|lane| tokio::spawn(cashier(client.clone(), lane, seed, taken.clone())))
        .collect();
    let all_done = || cashiers.iter().all(|c| c.is_finished());

    // The killer: kill at a random moment, start again at once, until every checkout is done and
    // at least MIN_KILLS kills happened.
    let mut rng = StdRng::seed_from_u64(seed);
    let mut kills = 0;
    while kills < MIN_KILLS || !all_done() {
        assert!(
            began.elapsed() < RUN_LIMIT,
            "the run took over {RUN_LIMIT:?}: {kills} kills, {} checkouts started",
            taken.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(rng.random_range(UPTIME_MS))).await;
        tx.send_replace(None);
        lanehub.kill();
        kills += 1;
        let (process, url) = start_lanehub(&http, &config, data.path()).await;
        lanehub = process;
        tx.send_replace(Some(url));
    }
    for c in cashiers {
        c.await.expect("a cashier finished without panicking");
    }
    let met = &client.met;
    println!(
        "{CHECKOUTS} checkouts, {kills} kills in {:?}; picked up again: {} payments, {} \
         enrollments; driven again: {}",
        began.elapsed(),
        met.payments_resumed.load(Ordering::Relaxed),
        met.enrollments_resumed.load(Ordering::Relaxed),
        met.redriven.load(Ordering::Relaxed),
    );

    // Let whatever the last restart recovered finish: every lane idle, every session closed.
    let store = Store::open(data.path()).await.expect("the store opens");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open = store.all_open_sessions().await.expect("the journal reads");
        let mut busy = Vec::new();
        for lane in 1..=LANES {
            let s = client.lane(&lane.to_string()).await.expect("lanehub runs");
            if state(&s) != "idle" {
                busy.push(s);
            }
        }
        if open.is_empty() && busy.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never settled: open sessions {open:?}, busy lanes {busy:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    // A create that reached Vipps only after its checkout ended is lanehub's watch's to cancel
    // (every `unconfirmed_payment_interval`): wait for it before looking at Vipps.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open: Vec<Value> = client
            .sim
            .payments()
            .await
            .into_iter()
            .filter(|p| !is_final(p))
            .collect();
        if open.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "payments left unfinished at Vipps: {open:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    lanehub.kill();

    check_payments(&client, &store).await;
    check_members(&client, &store).await;
    println!("crash test done in {:?}", began.elapsed());
}

/// Every payment at Vipps is final, indexed with the same state and amounts, journalled as its
/// session's outcome, and the only one of its checkout.
async fn check_payments(client: &Client, store: &Store) {
    let payments = client.sim.payments().await;
    assert!(
        payments.len() >= CHECKOUTS,
        "every checkout ends with a payment at Vipps: {} payments",
        payments.len()
    );
    let mut by_receipt: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for p in &payments {
        let reference = p["reference"].as_str().expect("a reference");
        by_receipt
            .entry(receipt_number(p).expect("every payment carries its receipt"))
            .or_default()
            .push(reference);
    }
    let doubles: Vec<_> = by_receipt
        .iter()
        .filter(|(_, refs)| refs.len() > 1)
        .collect();
    assert!(
        doubles.is_empty(),
        "checkouts with two payments: {doubles:?}"
    );
    assert_eq!(by_receipt.len(), CHECKOUTS, "one payment per checkout");

    let index: BTreeMap<String, _> = store
        .payments()
        .await
        .expect("the payments index reads")
        .into_iter()
        .map(|p| (p.reference.to_string(), p))
        .collect();
    for p in &payments {
        let reference = p["reference"].as_str().expect("a reference");
        assert!(is_final(p), "payment left unfinished at Vipps: {p}");
        let record = index
            .get(reference)
            .unwrap_or_else(|| panic!("{reference} is at Vipps but not in lanehub's index"));
        let captured = amount(p, "capturedAmount");
        assert_eq!(
            (record.state.as_str(), record.captured),
            (p["state"].as_str().unwrap_or_default(), captured),
            "lanehub's index disagrees with Vipps on {reference}: {record:?} vs {p}"
        );
        let records = store
            .session_records(&record.lane, &record.session)
            .await
            .expect("the journal reads");
        let last = records.last().expect("the session is journalled");
        assert_eq!(last.kind, "closed", "{reference}: {records:?}");
        let outcome = last.payload["outcome"].as_str().unwrap_or_default();
        assert_eq!(
            outcome == "paid",
            captured > 0,
            "{reference}: journal says {outcome}, Vipps captured {captured}"
        );
    }
    assert!(
        index.len() >= payments.len(),
        "the index holds {} payments, Vipps {}",
        index.len(),
        payments.len()
    );
}

/// Every customer who consented to a Login is a member.
async fn check_members(client: &Client, store: &Store) {
    let logins = client.sim.call(reqwest::Method::GET, "/logins", None).await;
    let consented: HashSet<String> = logins
        .as_array()
        .expect("a list of logins")
        .iter()
        .filter(|l| matches!(l["state"].as_str(), Some("consented" | "completed")))
        .map(|l| {
            l["phoneNumber"]
                .as_str()
                .expect("a phone number")
                .to_owned()
        })
        .collect();
    assert!(!consented.is_empty(), "some customers enrolled");
    for phone in consented {
        let msisdn: Msisdn = phone.parse().expect("a phone number");
        let member = store.member(&msisdn).await.expect("the members read");
        assert!(member.is_some(), "{msisdn} consented but is not a member");
    }
}
