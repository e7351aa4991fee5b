//! Commands on the lane WebSocket: the same outcomes as over HTTP, answers correlated by `id`
//! and in order, bad messages answered naming the problem with the socket kept open, and a
//! socket that takes commands for its own lane only.

use std::ops::{Deref, DerefMut};

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::ADMIN;
use crate::common::app::{Api, TestApp, fast_settings, start};
use crate::common::snapshot::{code, state, typed};
use crate::terminal::{LANE1, MEMBER_QR, post};
use crate::websocket::{Events, scan_lane_1};

/// A terminal that sends its commands on the lane's WebSocket; it reads as [`Events`] does.
pub struct Terminal(Events);

impl Deref for Terminal {
    type Target = Events;

    fn deref(&self) -> &Events {
        &self.0
    }
}

impl DerefMut for Terminal {
    fn deref_mut(&mut self) -> &mut Events {
        &mut self.0
    }
}

impl Terminal {
    /// Connects to `lane`'s WebSocket with `token`; returns once the first snapshot arrived.
    pub async fn connect(app: &Api, lane: &str, token: &str) -> Terminal {
        Terminal(Events::connect(app, lane, token).await)
    }

    async fn send(&mut self, message: Message) {
        let sent = self.0.socket.send(message).await;
        sent.expect("the socket is open");
    }

    /// Sends `command` with `id` (and `body`, if any).
    pub async fn command(&mut self, id: &str, command: &str, body: Option<Value>) {
        let mut message = json!({"id": id, "command": command});
        if let Some(body) = body {
            message["body"] = body;
        }
        self.send(Message::text(message.to_string())).await;
    }

    /// Reads on until the next answer; returns it.
    pub async fn answer(&mut self) -> Value {
        self.until("an answer", |m| m["kind"] == "answer").await
    }
}

/// A fresh app (test hooks on, every lane up, members seeded) and a terminal on lane 1.
async fn app_with_terminal() -> (TestApp, Terminal) {
    let app = start(fast_settings()).await;
    let terminal = Terminal::connect(&app, "1", LANE1).await;
    (app, terminal)
}

/// The answer's `id`, `status` and `body`, after checking it is an answer.
fn parts(answer: &Value) -> (&Value, u64, &Value) {
    assert_eq!(answer["kind"], "answer", "{answer}");
    let status = answer["status"].as_u64().expect("an answer has a status");
    (&answer["id"], status, &answer["body"])
}

#[actix_web::test]
async fn a_checkout_is_paid_over_the_websocket_with_answers_correlated_by_id() {
    let (app, mut terminal) = app_with_terminal().await;

    terminal
        .command("scan-1", "scan", Some(json!({"text": MEMBER_QR})))
        .await;
    let scanned = terminal.answer().await;
    let (id, status, lane) = parts(&scanned);
    assert_eq!((id, status), (&json!("scan-1"), 200), "{scanned}");
    assert_eq!(code(lane), "customer_scanned", "{lane}");
    assert_eq!(typed(lane).lane.as_str(), "1");
    // The event the scan caused came before its answer.
    let event = terminal.seen[..terminal.seen.len() - 1]
        .iter()
        .find(|m| m["kind"] == "changed" && code(&m["snapshot"]) == "customer_scanned");
    assert!(event.is_some(), "{:#?}", terminal.seen);
    terminal.until_message("member_welcomed").await;

    // Two commands sent back to back are answered in order, each with its id: the payment,
    // then a second one refused before it reaches the lane.
    let pay = json!({"amount": {"value": 23990, "currency": "NOK"}, "description": "Groceries"});
    terminal.command("pay-1", "pay", Some(pay.clone())).await;
    let zero = json!({"amount": {"value": 0, "currency": "NOK"}});
    terminal.command("pay-2", "pay", Some(zero.clone())).await;
    let paid = terminal.answer().await;
    let (id, status, lane) = parts(&paid);
    assert_eq!((id, status), (&json!("pay-1"), 200), "{paid}");
    let payment = typed(lane).session.unwrap().payment.unwrap();
    assert_eq!(payment.amount.value, 23990);
    let refused = terminal.answer().await;
    let (id, status, problem) = parts(&refused);
    assert_eq!((id, status), (&json!("pay-2"), 400), "{refused}");
    // The very problem HTTP answers for the same body.
    let (http_status, http_problem) = post(&app, "/api/v1/lanes/1/payment", LANE1, zero).await;
    assert_eq!((status, problem), (u64::from(http_status), &http_problem));
    assert_eq!(problem["field"], "amount.value");

    let approved = terminal.until_message("payment_approved").await;
    assert_eq!(state(&approved["snapshot"]), "idle");
    let last = typed(&approved["snapshot"]).last_session.unwrap();
    assert_eq!(last.outcome.as_deref(), Some("paid"));
    assert_eq!(app.sim.payments().await.len(), 1);

    // The lane refuses a payment with nobody identified: over the socket as over HTTP.
    terminal.command("pay-3", "pay", Some(pay.clone())).await;
    let answer = terminal.answer().await;
    let (id, status, problem) = parts(&answer);
    let (http_status, http_problem) = post(&app, "/api/v1/lanes/1/payment", LANE1, pay).await;
    assert_eq!(id, "pay-3");
    assert_eq!((status, problem), (u64::from(http_status), &http_problem));
    assert_eq!((status, &problem["type"]), (409, &json!("not_allowed")));

    // The commands without a body.
    for (i, command) in ["enroll", "cancel", "reset"].into_iter().enumerate() {
        let id = format!("{command}-{i}");
        terminal.command(&id, command, None).await;
        let answer = terminal.answer().await;
        let (got, status, body) = parts(&answer);
        let path = format!("/api/v1/lanes/1/{command}");
        let (http_status, http_body) = post(&app, &path, LANE1, json!({})).await;
        assert_eq!(got, &json!(id));
        assert_eq!(status, u64::from(http_status), "{command}: {answer}");
        if status == 200 {
            assert_eq!(state(body), state(&http_body), "{command}");
        } else {
            assert_eq!(body, &http_body, "{command}");
        }
    }
}

/// A bad message and what its answer must say (always `400` `invalid_body`).
struct Case {
    message: Message,
    id: Value,
    field: Value,
    /// A part of the problem's `detail`.
    detail: &'static str,
    /// A `pay` body that HTTP must refuse alike.
    http_body: Option<Value>,
}

impl Case {
    fn new(message: Message, id: Option<&str>, field: Option<&str>, detail: &'static str) -> Case {
        Case {
            message,
            id: json!(id),
            field: json!(field),
            detail,
            http_body: None,
        }
    }

    /// A `pay` command with `body`, refused naming `field` over the socket and over HTTP.
    fn pay(id: &str, body: Value, field: &str, detail: &'static str) -> Case {
        let message = json!({"id": id, "command": "pay", "body": body});
        Case {
            http_body: Some(body),
            ..Case::new(
                Message::text(message.to_string()),
                Some(id),
                Some(field),
                detail,
            )
        }
    }
}

#[actix_web::test]
async fn bad_messages_are_answered_naming_the_problem_and_the_socket_stays_open() {
    let (app, mut terminal) = app_with_terminal().await;
    let oversize = format!(
        r#"{{"id": "big", "command": "scan", "body": {{"text": "{}"}}}}"#,
        "7".repeat(70_000)
    );
    let pay = |amount: Value| json!({"amount": amount});
    let cases = [
        Case::new(Message::text("{not json"), None, None, "malformed JSON"),
        Case::new(
            Message::text("not json"),
            None,
            None,
            "a message must be a JSON object",
        ),
        Case::new(
            Message::text("[1, 2]"),
            None,
            None,
            "a message must be a JSON object",
        ),
        Case::new(
            Message::text(r#"{"id": "a", "command": "dance"}"#),
            Some("a"),
            Some("command"),
            "unknown variant `dance`",
        ),
        Case::new(
            Message::text(r#"{"command": "reset"}"#),
            None,
            Some("id"),
            "missing field `id`",
        ),
        Case::new(
            Message::text(r#"{"id": 7, "command": "reset"}"#),
            None,
            Some("id"),
            "invalid type",
        ),
        Case::new(
            Message::text(r#"{"id": "b", "command": "reset", "tip": 5}"#),
            Some("b"),
            Some("tip"),
            "unknown field `tip`",
        ),
        Case::new(
            Message::text(r#"{"id": "c", "command": "pay"}"#),
            Some("c"),
            Some("body"),
            "`pay` needs a body",
        ),
        Case::new(
            Message::text(r#"{"id": "d", "command": "pay", "body": [1]}"#),
            Some("d"),
            Some("body"),
            "the body must be a JSON object",
        ),
        Case::new(
            Message::text(r#"{"id": "e", "command": "cancel", "body": {"now": true}}"#),
            Some("e"),
            Some("body"),
            "`cancel` takes no body",
        ),
        Case::pay(
            "f",
            pay(json!({"value": 1.5, "currency": "NOK"})),
            "amount.value",
            "invalid type: floating point `1.5`",
        ),
        Case::pay(
            "g",
            pay(json!({"value": 65_000_001, "currency": "NOK"})),
            "amount.value",
            "at most 65000000 minor units",
        ),
        Case::pay(
            "h",
            pay(json!({"value": 100, "currency": "SEK"})),
            "amount.currency",
            "",
        ),
        Case::new(
            Message::text(r#"{"id": "i", "command": "scan", "body": {"text": "  "}}"#),
            Some("i"),
            Some("text"),
            "the scan is empty",
        ),
        Case::new(
            Message::binary(b"{}".to_vec()),
            None,
            None,
            "binary messages are not taken",
        ),
        Case::new(
            Message::text(oversize),
            None,
            None,
            "larger than 65536 bytes",
        ),
    ];
    for case in cases {
        let sent = format!("{:?}", case.message)
            .chars()
            .take(120)
            .collect::<String>();
        terminal.send(case.message).await;
        let answer = terminal.answer().await;
        let (id, status, problem) = parts(&answer);
        assert_eq!((id, status), (&case.id, 400), "{sent}: {answer}");
        assert_eq!(problem["type"], "invalid_body", "{sent}: {answer}");
        assert_eq!(problem["status"], 400, "{sent}: {answer}");
        assert_eq!(problem["field"], case.field, "{sent}: {answer}");
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(case.detail), "{sent}: {answer}");
        if let Some(body) = case.http_body {
            let (http_status, http_problem) =
                post(&app, "/api/v1/lanes/1/payment", LANE1, body).await;
            assert_eq!(u64::from(http_status), status, "{sent}");
            for key in ["type", "status", "field"] {
                assert_eq!(problem[key], http_problem[key], "{sent}: {key}");
            }
        }
    }

    // Still open, and still taking commands.
    terminal.command("ok", "reset", None).await;
    let answer = terminal.answer().await;
    assert_eq!(parts(&answer).0, "ok");
    assert_eq!(parts(&answer).1, 200, "{answer}");
    let (_, lane) = crate::terminal::get(&app, "/api/v1/lanes/1", LANE1).await;
    assert_eq!(lane["terminalConnected"], true);
}

#[actix_web::test]
async fn a_lane_socket_takes_commands_for_its_own_lane_only() {
    let (app, mut terminal) = app_with_terminal().await;
    let mut admin = Terminal::connect(&app, "1", ADMIN).await;
    let scan_lane_2 =
        json!({"id": "x", "command": "scan", "lane": "2", "body": {"text": MEMBER_QR}});
    for socket in [&mut terminal, &mut admin] {
        socket.send(Message::text(scan_lane_2.to_string())).await;
        let answer = socket.answer().await;
        let (id, status, problem) = parts(&answer);
        assert_eq!((id, status), (&json!("x"), 403), "{answer}");
        assert_eq!(problem["type"], "forbidden", "{answer}");
        assert!(
            problem["detail"].as_str().unwrap().contains("lane 1 only"),
            "{answer}"
        );
    }
    // Over HTTP the lane token is refused lane 2 alike.
    let scan = json!({"text": MEMBER_QR});
    let (status, problem) = post(&app, "/api/v1/lanes/2/scans", LANE1, scan).await;
    assert_eq!((status, &problem["type"]), (403, &json!("forbidden")));
    // Lane 2 saw nothing.
    let lane2 = app.lane("2").await;
    assert_eq!((state(&lane2), &lane2["session"]), ("idle", &Value::Null));

    // Naming its own lane is allowed, and acts on it.
    let own = json!({"id": "y", "command": "scan", "lane": "1", "body": {"text": MEMBER_QR}});
    terminal.send(Message::text(own.to_string())).await;
    let answer = terminal.answer().await;
    assert_eq!((parts(&answer).0, parts(&answer).1), (&json!("y"), 200));
    assert_eq!(code(parts(&answer).2), "customer_scanned", "{answer}");
    assert!(typed(&app.lane("1").await).session.is_some());
}

#[actix_web::test]
async fn a_store_that_cannot_be_written_is_answered_as_over_http() {
    let (app, mut terminal) = app_with_terminal().await;
    let refuse = json!({"refuseWrites": true});
    app.ok(reqwest::Method::POST, "/api/v1/test/store", Some(refuse))
        .await;
    let (http_status, http_problem) = scan_lane_1(&app, MEMBER_QR).await;
    assert_eq!(
        (http_status, &http_problem["type"]),
        (503, &json!("store_unavailable")),
        "{http_problem}"
    );
    terminal
        .command("s", "scan", Some(json!({"text": MEMBER_QR})))
        .await;
    let answer = terminal.answer().await;
    let (id, status, problem) = parts(&answer);
    assert_eq!(id, "s");
    assert_eq!((status, problem), (u64::from(http_status), &http_problem));
}
