//! Stopping lanehub: SIGTERM drains the lanes (no new checkouts, payments in flight followed to a
//! final state within `supervisor.shutdown_deadline`, terminals told and let go) and exits 0;
//! what the deadline cuts short stays open in the journal and the next start finishes it. Also
//! the exit statuses for a database written by a newer lanehub and for a corrupt one.
//!
//! The real binary runs against one `lanehub sim` process (remote mode, polling only), so the
//! simulator outlives every lanehub process. Customers who ignore payments, approved through the
//! simulator's control API when the test says so, place each step without timing luck.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use lanehub::store::{SCHEMA_VERSION, Store};
use serde_json::{Value, json};
use support::process::{BIN, Process};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const ADMIN: &str = "shutdown-admin-token-0123456789";
/// Not in the club (remote mode seeds no members).
const CUSTOMER: &str = "4798765432";
const OTHER: &str = "4790000001";
const AMOUNT: u64 = 23990;
const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(25);
const SHUTTING_DOWN: &str = "lanehub is shutting down";

/// One `lanehub sim` and the data directory lanehub (re)starts on.
struct Rig {
    _sim: Process,
    sim: String,
    data: tempfile::TempDir,
    http: reqwest::Client,
}

impl Rig {
    fn new() -> Rig {
        let data = tempfile::tempdir().unwrap();
        let log = data.path().join("sim.log");
        let (sim, url) = Process::start(&["sim", "--listen", "127.0.0.1:0"], &[], &log);
        lanehub::install_crypto_provider();
        Rig {
            _sim: sim,
            sim: url,
            data,
            http: reqwest::Client::new(),
        }
    }

    /// Starts `lanehub run` on the rig's data dir with `extra` settings; waits for both lanes.
    async fn lanehub(&self, extra: &[(&str, &str)]) -> (Process, String) {
        let mut env = vec![
            ("LANEHUB__VIPPS__MODE", "remote".to_owned()),
            ("LANEHUB__VIPPS__BASE_URL", self.sim.clone()),
            ("LANEHUB__VIPPS__WEBHOOK_PUBLIC_URL", String::new()),
            ("LANEHUB__API__LISTEN", "127.0.0.1:0".to_owned()),
            ("LANEHUB__API__ADMIN_TOKEN", ADMIN.to_owned()),
            (
                "LANEHUB__LANES__0__TOKEN",
                "shutdown-lane-1-token-0123456789".to_owned(),
            ),
            (
                "LANEHUB__LANES__1__TOKEN",
                "shutdown-lane-2-token-0123456789".to_owned(),
            ),
            (
                "LANEHUB__STORE__DATA_DIR",
                self.data.path().display().to_string(),
            ),
            ("LANEHUB__SESSION__PAYMENT_FIRST_POLL", "100ms".to_owned()),
            (
                "LANEHUB__SESSION__PAYMENT_POLL_INTERVAL",
                "200ms".to_owned(),
            ),
        ];
        env.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let log = self.data.path().join("lanehub.log");
        let (process, url) = Process::start(&["run"], &env, &log);
        for lane in ["1", "2"] {
            self.wait_lane(&url, lane, "up", |s| s["up"] == true).await;
        }
        (process, url)
    }

    /// The log of every lanehub run on this rig.
    fn log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("lanehub.log")).unwrap_or_default()
    }

    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<Value>,
    ) -> (u16, String, Value) {
        let mut req = self.http.request(method, url).bearer_auth(ADMIN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        (status, content_type, body)
    }

    async fn call(&self, method: reqwest::Method, url: String, body: Option<Value>) -> Value {
        let (status, _, body) = self.send(method, &url, body).await;
        assert!((200..300).contains(&status), "{url}: {status} {body}");
        body
    }

    async fn sim_call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call(method, format!("{}/sim/v1{path}", self.sim), body)
            .await
    }

    /// The customer ignores payment requests; the test approves them through the simulator.
    async fn ignores_payments(&self, phone: &str) {
        let body =
            json!({"payment": "ignore", "paymentDelay": 0, "login": "consent", "loginDelay": 150});
        let path = format!("/customers/{phone}/behaviour");
        self.sim_call(reqwest::Method::PUT, &path, Some(body)).await;
    }

    async fn approve(&self, reference: &str) {
        let path = format!("/payments/{reference}/approve");
        self.sim_call(reqwest::Method::POST, &path, None).await;
    }

    async fn qr(&self, phone: &str) -> String {
        let customer = self
            .sim_call(reqwest::Method::GET, &format!("/customers/{phone}"), None)
            .await;
        customer["qrTokenUrl"].as_str().unwrap().to_owned()
    }

    /// Scans the customer's QR on `lane` and waits until the lane may take a payment.
    async fn identify(&self, api: &str, lane: &str, phone: &str) {
        let url = format!("{api}/api/v1/lanes/{lane}/scans");
        let qr = self.qr(phone).await;
        self.call(reqwest::Method::POST, url, Some(json!({ "text": qr })))
            .await;
        self.wait_lane(api, lane, "ready for payment", |s| {
            s["state"] == "ready_for_payment"
        })
        .await;
    }

    /// Requests the payment and waits until Vipps holds it; returns (session id, reference).
    async fn pay(&self, api: &str, lane: &str) -> (String, String) {
        let url = format!("{api}/api/v1/lanes/{lane}/payment");
        self.call(reqwest::Method::POST, url, Some(payment())).await;
        let waiting = self
            .wait_lane(api, lane, "saw the payment created", |s| {
                s["session"]["payment"]["state"] == "CREATED"
            })
            .await;
        let session = &waiting["session"];
        (
            session["id"].as_str().unwrap().to_owned(),
            session["payment"]["reference"].as_str().unwrap().to_owned(),
        )
    }

    async fn wait_lane(
        &self,
        api: &str,
        lane: &str,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let url = format!("{api}/api/v1/lanes/{lane}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let snapshot = self.call(reqwest::Method::GET, url.clone(), None).await;
            if done(&snapshot) {
                return snapshot;
            }
            assert!(
                Instant::now() < deadline,
                "lane {lane} never {what}: {snapshot}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// The one payment the simulator holds for `reference`.
    async fn vipps_payment(&self, reference: &str) -> Value {
        let path = format!("/payments/{reference}");
        self.sim_call(reqwest::Method::GET, &path, None).await
    }

    /// The sessions the journal holds open, as (lane, session) pairs.
    async fn open_sessions(&self) -> Vec<(String, String)> {
        let store = Store::open(self.data.path()).await.unwrap();
        let open = store.all_open_sessions().await.unwrap();
        open.into_iter()
            .map(|j| (j.lane.to_string(), j.session))
            .collect()
    }
}

fn payment() -> Value {
    json!({"amount": {"value": AMOUNT, "currency": "NOK"}, "description": "Groceries"})
}

fn captured(payment: &Value) -> u64 {
    payment["aggregate"]["capturedAmount"]["value"]
        .as_u64()
        .unwrap()
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A terminal on `lane`'s WebSocket, with its first event (the snapshot) read.
async fn terminal(api: &str, lane: &str) -> Socket {
    let url = format!(
        "{}/api/v1/lanes/{lane}/events?access_token={ADMIN}",
        api.replacen("http", "ws", 1)
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the WebSocket opens");
    match socket.next().await {
        Some(Ok(Message::Text(text))) => {
            let first: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(first["kind"], "snapshot", "{first}");
        }
        other => panic!("no snapshot first: {other:?}"),
    }
    socket
}

/// Every event a terminal receives until the server closes the socket, and the close frame.
async fn until_closed(mut socket: Socket) -> (Vec<Value>, Option<(CloseCode, String)>) {
    let mut events = vec![];
    let read = async {
        while let Some(msg) = socket.next().await {
            match msg {
                Ok(Message::Text(text)) => events.push(serde_json::from_str(&text).unwrap()),
                Ok(Message::Close(frame)) => {
                    return frame.map(|f| (f.code, f.reason.to_string()));
                }
                Ok(_) => {}
                Err(e) => panic!("the WebSocket failed: {e}; events: {events:#?}"),
            }
        }
        None
    };
    let close = tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server closes the WebSocket");
    (events, close)
}

#[tokio::test]
async fn sigterm_drains_lets_the_payment_finish_and_exits_0() {
    let rig = Rig::new();
    rig.ignores_payments(CUSTOMER).await;
    rig.ignores_payments(OTHER).await;
    let (mut lanehub, api) = rig.lanehub(&[]).await;
    rig.identify(&api, "1", CUSTOMER).await;
    let (session, reference) = rig.pay(&api, "1").await;
    rig.identify(&api, "2", OTHER).await;
    let socket = terminal(&api, "1").await;
    let watcher = tokio::spawn(until_closed(socket));

    lanehub.terminate();
    // Draining: not ready, and nothing new starts on any lane.
    let deadline = Instant::now() + PATIENCE;
    let ready = loop {
        let (status, _, body) = rig
            .send(reqwest::Method::GET, &format!("{api}/readyz"), None)
            .await;
        if body["shuttingDown"] == true {
            assert_eq!(status, 503, "{body}");
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never said shutting down"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(ready["ready"], false);
    let pay = format!("{api}/api/v1/lanes/2/payment");
    let (status, content_type, problem) =
        rig.send(reqwest::Method::POST, &pay, Some(payment())).await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(
        (&problem["type"], &problem["detail"]),
        (&json!("shutting_down"), &json!(SHUTTING_DOWN))
    );
    let enroll = format!("{api}/api/v1/lanes/2/enroll");
    let (status, _, problem) = rig.send(reqwest::Method::POST, &enroll, None).await;
    assert_eq!((status, &problem["type"]), (503, &json!("shutting_down")));
    // Reset still works, and an idle lane takes no customer.
    let reset = format!("{api}/api/v1/lanes/2/reset");
    let idle = rig.call(reqwest::Method::POST, reset, None).await;
    assert_eq!(idle["state"], "idle");
    let scan = json!({"text": rig.qr(OTHER).await});
    let scans = format!("{api}/api/v1/lanes/2/scans");
    let (status, _, problem) = rig.send(reqwest::Method::POST, &scans, Some(scan)).await;
    assert_eq!((status, &problem["type"]), (503, &json!("shutting_down")));
    // Lane 1 still follows its payment: the customer approves during the drain.
    let lane1 = rig
        .call(reqwest::Method::GET, format!("{api}/api/v1/lanes/1"), None)
        .await;
    assert_eq!(lane1["state"], "awaiting_payment");
    rig.approve(&reference).await;

    let status = lanehub.exited_within(PATIENCE).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", rig.log());
    let payment = rig.vipps_payment(&reference).await;
    assert_eq!(captured(&payment), AMOUNT, "{payment}");
    assert_eq!(rig.open_sessions().await, vec![], "log:\n{}", rig.log());
    let store = Store::open(rig.data.path()).await.unwrap();
    let records = store
        .session_records(&"1".parse().unwrap(), &session)
        .await
        .unwrap();
    let last = records.last().unwrap();
    assert_eq!(
        (last.kind.as_str(), &last.payload["outcome"]),
        ("closed", &json!("paid"))
    );

    let (events, close) = watcher.await.unwrap();
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let draining = kinds.iter().position(|k| *k == "draining");
    let approved = events
        .iter()
        .position(|e| e["snapshot"]["message"]["code"] == "payment_approved");
    assert!(
        draining.is_some() && approved.is_some() && draining < approved,
        "{events:#?}"
    );
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "shutdown", "{events:#?}");
    assert_eq!(last["data"]["message"], SHUTTING_DOWN);
    assert_eq!(last["data"]["sessionLeftOpen"], false);
    assert_eq!(close, Some((CloseCode::Away, SHUTTING_DOWN.to_owned())));
    let log = rig.log();
    assert!(!log.contains("rebuilding"), "{log}");
    assert!(log.contains("no session left open"), "{log}");
}

#[tokio::test]
async fn the_deadline_leaves_the_payment_open_and_the_next_start_finishes_it() {
    let rig = Rig::new();
    rig.ignores_payments(CUSTOMER).await;
    let deadline = Duration::from_secs(1);
    let (mut lanehub, api) = rig
        .lanehub(&[("LANEHUB__SUPERVISOR__SHUTDOWN_DEADLINE", "1s")])
        .await;
    rig.identify(&api, "1", CUSTOMER).await;
    let (session, reference) = rig.pay(&api, "1").await;
    let socket = terminal(&api, "1").await;
    let watcher = tokio::spawn(until_closed(socket));

    let sent = Instant::now();
    lanehub.terminate();
    // The drain waits for the payment until the deadline, then stops: the journal (2 s at most)
    // and the HTTP server (closed sockets) add little.
    let status = lanehub
        .exited_within(deadline + Duration::from_secs(5))
        .await;
    assert!(
        sent.elapsed() >= deadline,
        "stopped after {:?}",
        sent.elapsed()
    );
    assert_eq!(status.code(), Some(0), "log:\n{}", rig.log());
    assert_eq!(
        rig.open_sessions().await,
        vec![("1".to_owned(), session.clone())]
    );
    let log = rig.log();
    assert!(
        log.contains("session left open in the journal") && log.contains(&session),
        "{log}"
    );
    assert!(!log.contains("rebuilding"), "{log}");
    let (events, close) = watcher.await.unwrap();
    let last = events.last().unwrap();
    assert_eq!(
        (&last["kind"], &last["data"]["sessionLeftOpen"]),
        (&json!("shutdown"), &json!(true)),
        "{events:#?}"
    );
    assert_eq!(close, Some((CloseCode::Away, SHUTTING_DOWN.to_owned())));
    let vipps = rig.vipps_payment(&reference).await;
    assert_eq!(vipps["state"], "CREATED");

    // The customer approves while lanehub is down; the next start recovers and captures.
    rig.approve(&reference).await;
    let (mut lanehub, api) = rig.lanehub(&[]).await;
    rig.wait_lane(&api, "1", "finished the recovered payment", |s| {
        s["message"]["code"] == "payment_approved"
    })
    .await;
    assert_eq!(captured(&rig.vipps_payment(&reference).await), AMOUNT);
    let deadline = Instant::now() + PATIENCE;
    while !rig.open_sessions().await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the recovered session stays open"
        );
        tokio::time::sleep(POLL).await;
    }
    lanehub.terminate();
    let status = lanehub.exited_within(PATIENCE).await;
    assert_eq!(status.code(), Some(0));
}

/// Runs `lanehub run` on `data` until it exits by itself; its exit code and stderr.
async fn run_until_refused(data: &std::path::Path) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .arg("run")
        .env_remove("LANEHUB_CONFIG")
        .env("LANEHUB__API__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__SIM__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__STORE__DATA_DIR", data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut process = Process { child, log: None };
    let status = process.exited_within(PATIENCE).await;
    let mut err = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut err).unwrap();
    (status.code(), err)
}

#[tokio::test]
async fn a_database_with_a_damaged_page_exits_with_status_4_and_is_left_alone() {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: lanehub::domain::LaneId = "1".parse().unwrap();
    // A journal of several pages, as a store's is.
    for i in 0..200 {
        let record = json!({"kind": "session_started", "padding": "x".repeat(100)});
        store
            .append(&lane, &format!("s{i}"), "session_started", record)
            .await
            .unwrap();
    }
    let path = store.path().to_owned();
    drop(store);
    // The store thread checkpoints the WAL into the file and removes it as it closes.
    let wal = data.path().join("lanehub.db-wal");
    let deadline = Instant::now() + PATIENCE;
    while wal.exists() {
        assert!(Instant::now() < deadline, "the store never closed");
        tokio::time::sleep(POLL).await;
    }
    // Damage the header of the journal's root b-tree page: an invalid page type.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |r| r.get(0))
        .unwrap();
    let root: i64 = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'journal'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = ((root - 1) * page_size) as usize;
    bytes[at..at + 16].fill(0x7f);
    std::fs::write(&path, &bytes).unwrap();

    let (code, err) = run_until_refused(data.path()).await;
    assert_eq!(code, Some(4), "{err}");
    let expected = format!("database {} is corrupt (quick_check: ", path.display());
    assert!(err.contains(&expected), "{err}");
    // SQLite names the damaged page.
    assert!(
        err.to_lowercase().contains(&format!("page {root}: ")),
        "{err}"
    );
    assert!(err.contains("restore the latest backup"), "{err}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is left as it was"
    );
}

#[tokio::test]
async fn a_database_from_a_newer_lanehub_exits_with_status_3() {
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let path = store.path().to_owned();
    drop(store);
    let newer = SCHEMA_VERSION + 1;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", newer).unwrap();
    drop(conn);

    let (code, err) = run_until_refused(data.path()).await;
    assert_eq!(code, Some(3), "{err}");
    let expected = format!(
        "database {} was written by a newer lanehub (schema {newer}, this build knows up to \
         {SCHEMA_VERSION}); refusing to start to protect your data",
        path.display()
    );
    assert!(err.contains(&expected), "{err}");
}
