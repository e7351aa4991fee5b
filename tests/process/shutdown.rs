//! Stopping lanehub: SIGTERM drains the lanes (no new checkouts, payments in flight followed to a
//! final state within `supervisor.shutdown_deadline`, terminals told and let go) and exits 0;
//! what the deadline cuts short stays open in the journal and the next start finishes it. Also
//! the exit statuses for a database written by a newer lanehub and for a corrupt one.
//!
//! The real binary runs against one `lanehub sim` process (remote mode, polling only), so the
//! simulator outlives every lanehub process. Customers who ignore payments, approved through the
//! simulator's control API when the test says so, place each step without timing luck.

use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use lanehub::store::SCHEMA_VERSION;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::common::app::{Api, assert_closed_with, payment_body};
use crate::common::process::{BIN, Process, Rig};
use crate::common::snapshot::captured;
use crate::common::{AMOUNT, DECLINER, NON_MEMBER, PATIENCE, POLL, sql_int};

const SHUTTING_DOWN: &str = "lanehub is shutting down";

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A terminal on `lane`'s WebSocket, with its first event (the snapshot) read.
async fn terminal(api: &Api, lane: &str) -> Socket {
    let url = format!(
        "{}/api/v1/lanes/{lane}/events?access_token={}",
        api.address.replacen("http", "ws", 1),
        api.token
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
    rig.sim.behave(NON_MEMBER, "ignore", 0, "consent").await;
    rig.sim.behave(DECLINER, "ignore", 0, "consent").await;
    let (mut lanehub, api) = rig.lanehub(&[]).await;
    rig.identify(&api, "1", NON_MEMBER).await;
    let (session, reference) = rig.pay(&api, "1").await;
    rig.identify(&api, "2", DECLINER).await;
    let socket = terminal(&api, "1").await;
    let watcher = tokio::spawn(until_closed(socket));

    lanehub.terminate();
    // Draining: not ready, and nothing new starts on any lane.
    let deadline = Instant::now() + PATIENCE;
    let ready = loop {
        let (status, _, body) = api.send(reqwest::Method::GET, "/readyz", None).await;
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
    let pay = "/api/v1/lanes/2/payment";
    let (status, content_type, problem) = api
        .send(reqwest::Method::POST, pay, Some(payment_body()))
        .await;
    assert_eq!(status, 503, "{problem}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(
        (&problem["type"], &problem["detail"]),
        (&json!("shutting_down"), &json!(SHUTTING_DOWN))
    );
    let enroll = "/api/v1/lanes/2/enroll";
    let (status, _, problem) = api.send(reqwest::Method::POST, enroll, None).await;
    assert_eq!((status, &problem["type"]), (503, &json!("shutting_down")));
    // Reset still works, and an idle lane takes no customer.
    let reset = "/api/v1/lanes/2/reset";
    let idle = api.ok(reqwest::Method::POST, reset, None).await;
    assert_eq!(idle["state"], "idle");
    let scan = json!({"text": rig.sim.qr(DECLINER, false).await});
    let scans = "/api/v1/lanes/2/scans";
    let (status, _, problem) = api.send(reqwest::Method::POST, scans, Some(scan)).await;
    assert_eq!((status, &problem["type"]), (503, &json!("shutting_down")));
    // Lane 1 still follows its payment: the customer approves during the drain.
    let lane1 = api.lane("1").await;
    assert_eq!(lane1["state"], "awaiting_payment");
    rig.sim.approve(&reference).await;

    let status = lanehub.exited_within(PATIENCE).await;
    assert_eq!(status.code(), Some(0), "log:\n{}", rig.log());
    let payment = rig.sim.payment(&reference).await;
    assert_eq!(captured(&payment), AMOUNT, "{payment}");
    assert_eq!(rig.open_sessions().await, vec![], "log:\n{}", rig.log());
    assert_closed_with(&rig.store().await, "1", &session, "paid").await;

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
    rig.sim.behave(NON_MEMBER, "ignore", 0, "consent").await;
    let deadline = Duration::from_secs(1);
    let (mut lanehub, api) = rig
        .lanehub(&[("LANEHUB__SUPERVISOR__SHUTDOWN_DEADLINE", "1s")])
        .await;
    rig.identify(&api, "1", NON_MEMBER).await;
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
    let vipps = rig.sim.payment(&reference).await;
    assert_eq!(vipps["state"], "CREATED");

    // The customer approves while lanehub is down; the next start recovers and captures.
    rig.sim.approve(&reference).await;
    let (mut lanehub, api) = rig.lanehub(&[]).await;
    api.wait_lane("1", "finished the recovered payment", |s| {
        s["message"]["code"] == "payment_approved"
    })
    .await;
    assert_eq!(captured(&rig.sim.payment(&reference).await), AMOUNT);
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
    let store = lanehub::store::Store::open(data.path()).await.unwrap();
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
    let root = sql_int(
        &conn,
        "SELECT rootpage FROM sqlite_master WHERE name = 'journal'",
    );
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
    let store = lanehub::store::Store::open(data.path()).await.unwrap();
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
