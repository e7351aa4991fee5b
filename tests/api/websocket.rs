//! The lane WebSocket: a snapshot first, then every change with `seq` one higher than the last;
//! tokens checked before the upgrade; heartbeats, and a terminal that stops answering is let go;
//! at most `api.max_websockets_per_lane` per lane, and no body deadline on a live socket.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{self, Message, client::IntoClientRequest};

use crate::common::ADMIN;
use crate::common::app::{Api, TestApp, spawn_app_with, start};
use crate::terminal::{LANE1, MEMBER_QR, fast_settings, post};

/// How long a test waits for an event before failing.
const EVENT_DEADLINE: Duration = Duration::from_secs(15);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A terminal's view of a lane's WebSocket.
pub struct Events {
    pub socket: Socket,
    /// Every event received so far, in order.
    pub seen: Vec<Value>,
}

fn ws_url(app: &Api, lane: &str, token: &str) -> String {
    format!(
        "{}/api/v1/lanes/{lane}/events?access_token={token}",
        app.address.replacen("http", "ws", 1)
    )
}

impl Events {
    /// Connects with `?access_token=` and returns once the first event (the snapshot) arrived.
    pub async fn connect(app: &Api, lane: &str, token: &str) -> Events {
        let (socket, _) = tokio_tungstenite::connect_async(ws_url(app, lane, token))
            .await
            .expect("the WebSocket opens");
        let mut events = Events {
            socket,
            seen: vec![],
        };
        let first = events.next().await;
        assert_eq!(first["kind"], "snapshot", "the first event: {first}");
        events
    }

    /// The next event (pings are answered by the client library while reading).
    pub async fn next(&mut self) -> Value {
        let next = tokio::time::timeout(EVENT_DEADLINE, async {
            loop {
                match self.socket.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return serde_json::from_str::<Value>(&text).expect("events are JSON");
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    other => panic!("the WebSocket ended: {other:?}"),
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no event within {EVENT_DEADLINE:?}; seen: {:#?}", self.seen));
        self.seen.push(next.clone());
        next
    }

    /// Reads events until one's snapshot carries the cashier message `code`; returns that event.
    pub async fn until_message(&mut self, code: &str) -> Value {
        loop {
            let ev = self.next().await;
            if ev["snapshot"]["message"]["code"] == code {
                return ev;
            }
        }
    }

    /// Reads events until one satisfies `pred`.
    pub async fn until(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let ev = self.next().await;
            if pred(&ev) {
                return ev;
            }
            assert!(self.seen.len() < 500, "no event {what} in {:#?}", self.seen);
        }
    }
}

/// Waits until every lane runs (lanes come up just after `spawn_app` returns).
pub async fn lanes_up(app: &Api) {
    for lane in ["1", "2"] {
        let mut events = Events::connect(app, lane, ADMIN).await;
        if events.seen[0]["snapshot"]["up"] != true {
            events.until("up", |e| e["snapshot"]["up"] == true).await;
        }
    }
}

/// A fresh app (fast settings), ready (every lane up, the simulator's members seeded into the
/// club, so the member's scan meets a member), and a terminal on lane 1.
pub async fn app_with_terminal() -> (TestApp, Events) {
    let app = start(fast_settings()).await;
    let events = Events::connect(&app, "1", LANE1).await;
    (app, events)
}

/// Scans `text` on lane 1 with the lane's token; the status and the answer.
pub async fn scan_lane_1(app: &Api, text: &str) -> (u16, Value) {
    post(app, "/api/v1/lanes/1/scans", LANE1, json!({ "text": text })).await
}

/// Scans `qr` on lane 1, which must accept it; the lane as the answer shows it.
pub async fn scan_on_lane_1(app: &Api, qr: &str) -> Value {
    let (status, lane) = scan_lane_1(app, qr).await;
    assert_eq!(status, 200, "{lane}");
    lane
}

#[actix_web::test]
async fn a_checkout_streams_events_with_seq_rising_by_one() {
    let (app, mut events) = app_with_terminal().await;

    scan_on_lane_1(&app, MEMBER_QR).await;
    events.until_message("member_welcomed").await;
    let pay = json!({"amount": {"value": 23990, "currency": "NOK"}});
    let (status, _) = post(&app, "/api/v1/lanes/1/payment", LANE1, pay).await;
    assert_eq!(status, 200);
    let paid = events.until_message("payment_approved").await;
    assert_eq!(paid["snapshot"]["state"], "idle");

    let seqs: Vec<u64> = events
        .seen
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    for (i, pair) in seqs.windows(2).enumerate() {
        assert_eq!(
            pair[1],
            pair[0] + 1,
            "event {} breaks the sequence: {seqs:?}",
            i + 1
        );
    }
    assert!(seqs.len() > 4, "{seqs:?}");
    // The terminal is counted in its own first snapshot; then the cashier messages come in
    // flow order.
    assert_eq!(
        events.seen[0]["snapshot"]["terminalConnected"], true,
        "{:#?}",
        events.seen
    );
    let mut codes: Vec<&str> = events
        .seen
        .iter()
        .filter(|e| e["kind"] == "changed")
        .filter_map(|e| e["snapshot"]["message"]["code"].as_str())
        .collect();
    codes.dedup();
    let wanted = [
        "customer_scanned",
        "member_welcomed",
        "payment_requested",
        "payment_approved",
    ];
    let mut at = 0;
    for code in &codes {
        if at < wanted.len() && *code == wanted[at] {
            at += 1;
        }
    }
    assert_eq!(at, wanted.len(), "messages out of order: {codes:?}");
    // The member's check-in is reported beside the main message, which it does not replace.
    let check_in = events
        .seen
        .iter()
        .find(|e| e["kind"] == "check_in")
        .expect("a check_in event");
    assert_eq!(check_in["data"]["code"], "check_in_sent");
    // Phone numbers only ever appear masked.
    let text = serde_json::to_string(&events.seen).unwrap();
    assert!(!text.contains("4791234567"), "a full phone number leaked");
    assert!(text.contains("47******67"));
}

#[actix_web::test]
async fn a_reconnecting_terminal_gets_a_fresh_snapshot() {
    let (app, mut events) = app_with_terminal().await;
    scan_lane_1(&app, MEMBER_QR).await;
    let welcomed = events.until_message("member_welcomed").await;
    let last_seq = events.seen.last().unwrap()["seq"].as_u64().unwrap();
    events.socket.close(None).await.unwrap();

    let again = Events::connect(&app, "1", LANE1).await;
    let snapshot = &again.seen[0];
    assert_eq!(snapshot["kind"], "snapshot");
    assert!(snapshot["seq"].as_u64().unwrap() >= last_seq, "{snapshot}");
    assert_eq!(snapshot["snapshot"]["state"], welcomed["snapshot"]["state"]);
    assert_eq!(
        snapshot["snapshot"]["session"]["customer"],
        json!({"phoneNumber": "47******67", "member": true})
    );
}

#[actix_web::test]
async fn a_product_barcode_is_passed_on_and_an_unknown_scan_is_reported() {
    let (app, mut events) = app_with_terminal().await;
    let (status, lane) = scan_lane_1(&app, "5901234123457").await;
    assert_eq!(status, 200);
    assert_eq!(lane["state"], "idle");
    let scan = events.until("scan", |e| e["kind"] == "scan").await;
    assert_eq!(
        scan["data"],
        json!({"barcode": "5901234123457", "format": "ean13"})
    );

    let (status, problem) = scan_lane_1(&app, "hello").await;
    assert_eq!(status, 400);
    assert_eq!(problem["field"], "text");
    let rejected = events
        .until("scan_rejected", |e| e["kind"] == "scan_rejected")
        .await;
    assert!(rejected["data"]["reason"].is_string(), "{rejected}");
}

#[actix_web::test]
async fn tokens_are_checked_before_the_upgrade() {
    let app = spawn_app_with(fast_settings()).await;
    let refused = |url: String| async move {
        match tokio_tungstenite::connect_async(url).await {
            Err(tungstenite::Error::Http(res)) => {
                let body = res.body().clone().unwrap_or_default();
                let problem: Value = serde_json::from_slice(&body).expect("a problem body");
                (res.status().as_u16(), problem)
            }
            Ok(_) => panic!("the upgrade was accepted"),
            Err(e) => panic!("unexpected error: {e}"),
        }
    };
    let (status, problem) = refused(ws_url(&app, "1", "wrong-token")).await;
    assert_eq!(status, 401);
    assert_eq!(problem["type"], "unauthorized");
    let no_token = format!(
        "{}/api/v1/lanes/1/events",
        app.address.replacen("http", "ws", 1)
    );
    assert_eq!(refused(no_token).await.0, 401);
    let (status, problem) = refused(ws_url(&app, "2", LANE1)).await;
    assert_eq!(status, 403);
    assert_eq!(problem["type"], "forbidden");
    assert_eq!(refused(ws_url(&app, "9", ADMIN)).await.0, 404);

    // The Authorization header works as well as the query parameter.
    let url = format!(
        "{}/api/v1/lanes/1/events",
        app.address.replacen("http", "ws", 1)
    );
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Authorization", format!("Bearer {LANE1}").parse().unwrap());
    let (mut socket, res) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(res.status(), 101);
    let first = socket.next().await.unwrap().unwrap();
    let first: Value = serde_json::from_str(first.to_text().unwrap()).unwrap();
    assert_eq!(first["kind"], "snapshot");

    // A plain GET is not an upgrade.
    let res = app
        .http
        .get(format!("{}/api/v1/lanes/1/events", app.address))
        .bearer_auth(LANE1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
}

#[actix_web::test]
async fn the_server_pings_and_a_terminal_that_answers_stays_connected() {
    let mut settings = fast_settings();
    settings.api.heartbeat_interval = Duration::from_millis(50);
    let app = spawn_app_with(settings).await;
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_url(&app, "1", LANE1))
        .await
        .unwrap();
    // Reading answers each ping with a pong; five pings means at least four intervals passed
    // with the terminal kept, although two missed pongs would have closed it.
    let mut pings = 0;
    tokio::time::timeout(EVENT_DEADLINE, async {
        while pings < 5 {
            match socket.next().await {
                Some(Ok(Message::Ping(payload))) => {
                    assert_eq!(&payload[..], b"lanehub");
                    pings += 1;
                }
                Some(Ok(Message::Text(_) | Message::Pong(_))) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the server pings");
    let (_, lane) = crate::terminal::get(&app, "/api/v1/lanes/1", LANE1).await;
    assert_eq!(lane["terminalConnected"], true);
}

/// One WebSocket frame from the server (unmasked): its opcode and payload.
async fn read_frame(stream: &mut tokio::net::TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 2];
    stream.read_exact(&mut head).await.ok()?;
    let len = match head[1] & 0x7f {
        126 => u64::from(stream.read_u16().await.ok()?),
        127 => stream.read_u64().await.ok()?,
        n => u64::from(n),
    };
    let mut payload = vec![0u8; usize::try_from(len).ok()?];
    stream.read_exact(&mut payload).await.ok()?;
    Some((head[0] & 0x0f, payload))
}

#[actix_web::test]
async fn a_terminal_that_stops_answering_pings_is_disconnected() {
    let mut settings = fast_settings();
    settings.api.heartbeat_interval = Duration::from_millis(50);
    let app = spawn_app_with(settings).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // A raw client that completes the handshake and then never answers a ping.
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let request = format!(
        "GET /api/v1/lanes/1/events?access_token={LANE1} HTTP/1.1\r\nHost: {addr}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );

    let mut opcodes = vec![];
    let closed = tokio::time::timeout(EVENT_DEADLINE, async {
        while let Some((opcode, _)) = read_frame(&mut stream).await {
            opcodes.push(opcode);
            if opcode == 0x8 {
                return true;
            }
        }
        false
    })
    .await
    .expect("the server gives up on the silent terminal");
    assert!(closed, "a close frame ends the socket: {opcodes:?}");
    assert_eq!(opcodes[0], 0x1, "the snapshot comes first: {opcodes:?}");
    let pings = opcodes.iter().filter(|&&op| op == 0x9).count();
    assert!(pings >= 2, "two pings went unanswered first: {opcodes:?}");
    // The lane no longer counts the terminal as connected.
    let (_, lane) = crate::terminal::get(&app, "/api/v1/lanes/1", LANE1).await;
    assert_eq!(lane["terminalConnected"], false);
}

#[actix_web::test]
async fn a_lane_takes_at_most_its_websockets_and_none_is_cut_by_the_body_deadline() {
    let mut settings = fast_settings();
    settings.api.max_websockets_per_lane = 2;
    settings.api.body_timeout = Duration::from_millis(200);
    settings.api.heartbeat_interval = Duration::from_millis(100);
    let app = spawn_app_with(settings).await;
    let mut first = Events::connect(&app, "1", LANE1).await;
    let _second = Events::connect(&app, "1", ADMIN).await;
    let third = tokio_tungstenite::connect_async(ws_url(&app, "1", LANE1)).await;
    match third {
        Err(tungstenite::Error::Http(res)) => {
            assert_eq!(res.status().as_u16(), 429);
            let problem: Value =
                serde_json::from_slice(&res.body().clone().unwrap_or_default()).unwrap();
            assert!(
                problem["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("api.max_websockets_per_lane")),
                "{problem}"
            );
        }
        other => panic!("a third WebSocket on lane 1: {other:?}"),
    }
    // Another lane has places of its own.
    let _other = Events::connect(&app, "2", ADMIN).await;

    // Well past the body deadline the first socket still gets pings and events.
    let mut pings = 0;
    tokio::time::timeout(EVENT_DEADLINE, async {
        while pings < 6 {
            match first.socket.next().await {
                Some(Ok(Message::Ping(_))) => pings += 1,
                // Kept: the lane may come up meanwhile, and that event is looked for below.
                Some(Ok(Message::Text(text))) => first
                    .seen
                    .push(serde_json::from_str(&text).expect("events are JSON")),
                Some(Ok(Message::Pong(_))) => {}
                other => panic!("the WebSocket ended: {other:?}"),
            }
        }
    })
    .await
    .expect("the server keeps pinging");
    if !first.seen.iter().any(|e| e["snapshot"]["up"] == true) {
        first.until("up", |e| e["snapshot"]["up"] == true).await;
    }
    let scan = json!({"text": "5901234123457"});
    let (status, _) = post(&app, "/api/v1/lanes/1/scans", LANE1, scan).await;
    assert_eq!(status, 200);
    first.until("scan", |e| e["kind"] == "scan").await;

    // A closed socket frees its place.
    first.socket.close(None).await.unwrap();
    drop(first);
    let deadline = tokio::time::Instant::now() + EVENT_DEADLINE;
    loop {
        match tokio_tungstenite::connect_async(ws_url(&app, "1", LANE1)).await {
            Ok(_) => break,
            Err(tungstenite::Error::Http(res)) if res.status() == 429 => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the place stays taken"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
