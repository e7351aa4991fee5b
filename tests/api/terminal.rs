//! The terminal API black-box: who may do what, errors that name the field, commands the state
//! refuses, full checkouts and refunds over HTTP, the OpenAPI document, readiness, HTTPS, and
//! the real binary driven through a checkout.

use std::collections::BTreeSet;
use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use lanehub::config::Settings;
use lanehub::startup::Application;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::app::{Api, spawn_app_with, test_settings, wait_seeded};
use crate::common::content_type;
use crate::common::process::announced_url;
use crate::common::{ADMIN, MEMBER, temp_dir};
use crate::socket_commands::Terminal;
use crate::websocket::{Events, app_with_terminal, lanes_up, scan_lane_1, scan_on_lane_1};

pub const LANE1: &str = "demo-lane-1-token";
pub const MEMBER_QR: &str = "https://qr.vipps.no/28/2/01/031/4791234567?v=1";
pub const DECLINER_QR: &str = "https://qr.vipps.no/28/2/01/031/4790000001?v=1";
/// A customer who never answers a payment request, so it stays in flight.
pub const IGNORER_QR: &str = "https://qr.vipps.no/28/2/01/031/4790000002?v=1";

/// Test settings where virtual customers answer at once and payments are read back quickly.
pub fn fast_settings() -> Settings {
    let mut settings = test_settings();
    for customer in &mut settings.sim.customers {
        customer.payment_delay = Duration::from_millis(50);
        customer.login_delay = Duration::from_millis(50);
    }
    settings.session.payment_first_poll = Duration::from_millis(200);
    settings.session.payment_poll_interval = Duration::from_millis(200);
    settings
}

/// One API call: status, content type and JSON body (`Null` when the body is not JSON).
pub async fn call(
    app: &Api,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, String, Value) {
    let mut req = app.http.request(method, format!("{}{path}", app.address));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    let res = req.send().await.expect("the request is answered");
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = res.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, content_type, body)
}

pub async fn get(app: &Api, path: &str, token: &str) -> (u16, Value) {
    let (status, _, body) = call(app, Method::GET, path, Some(token), None).await;
    (status, body)
}

pub async fn post(app: &Api, path: &str, token: &str, body: Value) -> (u16, Value) {
    let (status, _, body) = call(app, Method::POST, path, Some(token), Some(body)).await;
    (status, body)
}

/// A raw POST: any content type and bytes.
async fn post_raw(
    app: &Api,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let res = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(ADMIN)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, ct, body)
}

fn assert_problem(status: u16, content_type: &str, body: &Value, want: u16, kind: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(content_type, "application/problem+json", "{body}");
    assert_eq!(body["type"], kind, "{body}");
    assert_eq!(body["status"], want, "{body}");
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
}

#[actix_web::test]
async fn tokens_decide_who_may_do_what() {
    let app = spawn_app_with(fast_settings()).await;
    let lanes_of = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|l| l["lane"].as_str().unwrap().to_owned())
            .collect()
    };

    // No token, an unknown token, a token in the wrong scheme: 401 with a challenge.
    for token in [None, Some("wrong-token-wrong-token")] {
        let (status, ct, body) = call(&app, Method::GET, "/api/v1/lanes", token, None).await;
        assert_problem(status, &ct, &body, 401, "unauthorized");
    }
    let res = app
        .http
        .get(format!("{}/api/v1/lanes/1", app.address))
        .header("Authorization", format!("Basic {LANE1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(res.headers()["www-authenticate"], "Bearer");

    // The admin sees every lane; a lane token only its own.
    let (status, all) = get(&app, "/api/v1/lanes", ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(lanes_of(&all), ["1", "2"]);
    let (_, own) = get(&app, "/api/v1/lanes", LANE1).await;
    assert_eq!(lanes_of(&own), ["1"]);
    // The scheme is case-insensitive.
    let res = app
        .http
        .get(format!("{}/api/v1/lanes/1", app.address))
        .header("Authorization", format!("bearer {LANE1}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A lane token on another lane: 403 for reads and every command; the admin may.
    for (method, path, body) in [
        (Method::GET, "/api/v1/lanes/2", None),
        (
            Method::POST,
            "/api/v1/lanes/2/scans",
            Some(json!({"text": MEMBER_QR})),
        ),
        (Method::POST, "/api/v1/lanes/2/enroll", None),
        (
            Method::POST,
            "/api/v1/lanes/2/payment",
            Some(json!({"amount": {"value": 100, "currency": "NOK"}})),
        ),
        (Method::POST, "/api/v1/lanes/2/cancel", None),
        (Method::POST, "/api/v1/lanes/2/reset", None),
    ] {
        let (status, ct, body) = call(&app, method, path, Some(LANE1), body).await;
        assert_problem(status, &ct, &body, 403, "forbidden");
        assert!(
            body["detail"].as_str().unwrap().contains("own lane"),
            "{body}"
        );
    }
    let (status, lane2) = get(&app, "/api/v1/lanes/2", ADMIN).await;
    assert_eq!(status, 200);
    assert_eq!(lane2["lane"], "2");

    // Refunds are the admin's alone.
    let refund = json!({"amount": {"value": 100, "currency": "NOK"}});
    let path = "/api/v1/payments/lh-1-00000000000000000000000000000000/refund";
    let (status, ct, body) =
        call(&app, Method::POST, path, Some(LANE1), Some(refund.clone())).await;
    assert_problem(status, &ct, &body, 403, "forbidden");
    let (status, ct, body) = call(&app, Method::POST, path, None, Some(refund.clone())).await;
    assert_problem(status, &ct, &body, 401, "unauthorized");
    let (status, ct, body) = call(&app, Method::POST, path, Some(ADMIN), Some(refund)).await;
    assert_problem(status, &ct, &body, 404, "not_found");

    // A token in the URL is taken on the lane WebSocket only (websocket.rs): anywhere else,
    // even the admin's is 401.
    for (method, path) in [
        (Method::GET, "/api/v1/lanes"),
        (Method::GET, "/api/v1/lanes/1"),
        (Method::POST, "/api/v1/lanes/1/reset"),
        (Method::POST, "/api/v1/lanes/1/cancel"),
    ] {
        for token in [ADMIN, LANE1] {
            let path = format!("{path}?access_token={token}");
            let (status, ct, body) = call(&app, method.clone(), &path, None, None).await;
            assert_problem(status, &ct, &body, 401, "unauthorized");
        }
    }
    let refund = json!({"amount": {"value": 100, "currency": "NOK"}});
    let path = format!(
        "/api/v1/payments/lh-1-00000000000000000000000000000000/refund?access_token={ADMIN}"
    );
    let (status, ct, body) = call(&app, Method::POST, &path, None, Some(refund)).await;
    assert_problem(status, &ct, &body, 401, "unauthorized");

    // The test hook does not exist unless enabled.
    let (status, ct, body) = call(
        &app,
        Method::POST,
        "/api/v1/lanes/1/test/panic",
        Some(ADMIN),
        None,
    )
    .await;
    assert_problem(status, &ct, &body, 404, "not_found");
}

#[actix_web::test]
async fn unknown_lanes_paths_and_methods_are_answered_as_problems() {
    let app = spawn_app_with(fast_settings()).await;
    for (method, path) in [
        (Method::GET, "/api/v1/lanes/9"),
        (Method::POST, "/api/v1/lanes/9/reset"),
        (Method::POST, "/api/v1/lanes/%20/cancel"),
        (Method::POST, "/api/v1/lanes/..%2F1/enroll"),
        (Method::GET, "/api/v1/nothing-here"),
        (Method::POST, "/api/v1/payments/x/refund"),
    ] {
        let body = (method == Method::POST && path.ends_with("refund"))
            .then(|| json!({"amount": {"value": 1, "currency": "NOK"}}));
        let (status, ct, body) = call(&app, method, path, Some(ADMIN), body).await;
        assert_problem(status, &ct, &body, 404, "not_found");
    }
    // A lane token cannot tell an unknown lane from another lane's: the same answer for both.
    for (method, unknown, other) in [
        (Method::GET, "/api/v1/lanes/9", "/api/v1/lanes/2"),
        (
            Method::POST,
            "/api/v1/lanes/9/reset",
            "/api/v1/lanes/2/reset",
        ),
        (
            Method::POST,
            "/api/v1/lanes/%20/cancel",
            "/api/v1/lanes/2/cancel",
        ),
        (
            Method::GET,
            "/api/v1/lanes/9/events",
            "/api/v1/lanes/2/events",
        ),
    ] {
        let unknown = call(&app, method.clone(), unknown, Some(LANE1), None).await;
        let other = call(&app, method, other, Some(LANE1), None).await;
        assert_eq!(unknown, other);
        assert_problem(unknown.0, &unknown.1, &unknown.2, 403, "forbidden");
    }

    // A known path with the wrong method: 405 naming the right one.
    for (method, path, allow) in [
        (Method::DELETE, "/api/v1/lanes", "GET"),
        (Method::PUT, "/api/v1/lanes/1/payment", "POST"),
        (Method::GET, "/api/v1/lanes/1/reset", "POST"),
        (Method::POST, "/healthz", "GET"),
    ] {
        let res = app
            .http
            .request(method, format!("{}{path}", app.address))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 405, "{path}");
        assert_eq!(res.headers()["allow"], allow, "{path}");
        assert_eq!(res.headers()["content-type"], "application/problem+json");
    }
}

#[actix_web::test]
async fn bad_bodies_get_400_naming_the_field() {
    let app = spawn_app_with(fast_settings()).await;
    let pay = "/api/v1/lanes/1/payment";
    let scan = "/api/v1/lanes/1/scans";
    let refund = "/api/v1/payments/lh-1-00000000000000000000000000000000/refund";
    let line = |total: u64| {
        json!({"name": "Milk", "id": "7038010000000", "quantity": 2, "unitPrice": total / 2,
               "totalAmount": total, "taxAmount": total / 5, "taxPercentage": 25})
    };
    let cases: Vec<(&str, Value, Option<&str>)> = vec![
        (
            pay,
            json!({"amount": {"value": 239.9, "currency": "NOK"}}),
            Some("amount.value"),
        ),
        (
            pay,
            json!({"amount": {"value": "23990", "currency": "NOK"}}),
            Some("amount.value"),
        ),
        (
            pay,
            json!({"amount": {"value": -5, "currency": "NOK"}}),
            Some("amount.value"),
        ),
        (
            pay,
            json!({"amount": {"value": 0, "currency": "NOK"}}),
            Some("amount.value"),
        ),
        (
            pay,
            json!({"amount": {"value": 65_000_001u64, "currency": "NOK"}}),
            Some("amount.value"),
        ),
        (
            pay,
            json!({"amount": {"currency": "NOK"}}),
            Some("amount.value"),
        ),
        (pay, json!({}), Some("amount")),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "SEK"}}),
            Some("amount.currency"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "nok"}}),
            Some("amount.currency"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK", "cents": 1}}),
            Some("amount.cents"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK"}, "tip": 10}),
            Some("tip"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK"}, "description": "ab"}),
            Some("description"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK"}, "description": "x".repeat(101)}),
            Some("description"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK"}, "description": "Bad\u{7}bell"}),
            Some("description"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK"}, "receiptNumber": "R-1"}),
            Some("receiptNumber"),
        ),
        (
            pay,
            json!({"amount": {"value": 100, "currency": "NOK"}, "receiptNumber": "R 1", "orderLines": [line(100)]}),
            Some("receiptNumber"),
        ),
        (
            pay,
            json!({"amount": {"value": 300, "currency": "NOK"}, "orderLines": [line(200)]}),
            Some("orderLines"),
        ),
        (
            pay,
            json!({"amount": {"value": 200, "currency": "NOK"}, "orderLines": [{"name": "Milk", "id": "1", "quantity": 3, "unitPrice": 100, "totalAmount": 200, "taxAmount": 40, "taxPercentage": 25}]}),
            Some("orderLines[0].totalAmount"),
        ),
        (
            pay,
            json!({"amount": {"value": 200, "currency": "NOK"}, "orderLines": [{"name": "", "id": "1", "quantity": 2, "unitPrice": 100, "totalAmount": 200, "taxAmount": 40, "taxPercentage": 25}]}),
            Some("orderLines[0].name"),
        ),
        (
            pay,
            json!({"amount": {"value": 200, "currency": "NOK"}, "orderLines": [{"name": "Milk", "id": "1", "quantity": 2, "unitPrice": 100, "totalAmount": 200, "taxAmount": 40, "taxPercentage": 300}]}),
            Some("orderLines[0].taxPercentage"),
        ),
        (pay, json!([1, 2]), None),
        (scan, json!({"text": ""}), Some("text")),
        (scan, json!({"text": "   "}), Some("text")),
        (
            scan,
            json!({"text": "https://qr.vipps.no/\u{0}x"}),
            Some("text"),
        ),
        (scan, json!({"text": "ab\u{1b}[31m"}), Some("text")),
        (scan, json!({"text": "9".repeat(5000)}), Some("text")),
        (scan, json!({"text": 42}), Some("text")),
        (scan, json!({}), Some("text")),
        (scan, json!({"text": MEMBER_QR, "lane": "2"}), Some("lane")),
        (
            refund,
            json!({"amount": {"value": 1.5, "currency": "NOK"}}),
            Some("amount.value"),
        ),
        (
            refund,
            json!({"amount": {"value": 100, "currency": "SEK"}}),
            Some("amount.currency"),
        ),
        (
            refund,
            json!({"amount": {"value": 0, "currency": "NOK"}}),
            Some("amount.value"),
        ),
    ];
    // The same bodies as commands on the lane's WebSocket get the same problems.
    let mut terminal = Terminal::connect(&app, "1", LANE1).await;
    for (i, (path, body, field)) in cases.into_iter().enumerate() {
        let (status, ct, problem) =
            call(&app, Method::POST, path, Some(ADMIN), Some(body.clone())).await;
        assert_problem(status, &ct, &problem, 400, "invalid_body");
        assert_eq!(
            problem["field"].as_str(),
            field,
            "{path} {body} → {problem}"
        );
        let command = [(pay, "pay"), (scan, "scan")]
            .into_iter()
            .find_map(|(p, command)| (p == path).then_some(command));
        if let Some(command) = command.filter(|_| body.is_object()) {
            let id = i.to_string();
            terminal.command(&id, command, Some(body.clone())).await;
            let answer = terminal.answer().await;
            assert_eq!(answer["id"], id, "{body} → {answer}");
            for key in ["type", "status", "field"] {
                assert_eq!(answer["body"][key], problem[key], "{body} → {answer}");
            }
        }
    }

    // Not JSON, the wrong content type, or too big: 400 (never a 500), nothing named.
    let valid = br#"{"amount": {"value": 100, "currency": "NOK"}}"#.to_vec();
    for (content_type, bytes, says) in [
        (
            "application/json",
            b"{\"amount\": ".to_vec(),
            "malformed JSON",
        ),
        ("application/json", b"\xff\xfe".to_vec(), "JSON object"),
        ("application/json", Vec::new(), "malformed JSON"),
        ("text/plain", valid.clone(), "Content-Type"),
        (
            "application/x-www-form-urlencoded",
            b"amount=100".to_vec(),
            "Content-Type",
        ),
    ] {
        let (status, ct, problem) = post_raw(&app, pay, content_type, bytes).await;
        assert_problem(status, &ct, &problem, 400, "invalid_body");
        assert!(problem.get("field").is_none(), "{problem}");
        assert!(
            problem["detail"].as_str().unwrap().contains(says),
            "{problem}"
        );
    }
    let mut huge = br#"{"amount": {"value": 100, "currency": "NOK"}, "description": ""#.to_vec();
    huge.extend(std::iter::repeat_n(b'x', 70 * 1024));
    huge.extend(br#""}"#);
    let (status, ct, problem) = post_raw(&app, pay, "application/json", huge).await;
    assert!(status == 400 || status == 413, "{status} {problem}");
    assert_eq!(ct, "application/problem+json");
    assert!(
        problem["detail"].as_str().unwrap().contains("65536"),
        "{problem}"
    );

    // None of it reached the lane.
    let (_, lane) = get(&app, "/api/v1/lanes/1", ADMIN).await;
    assert_eq!(lane["state"], "idle");
    assert_eq!(lane["session"], Value::Null);
}

#[actix_web::test]
async fn commands_the_state_does_not_allow_get_409_saying_why() {
    let app = spawn_app_with(fast_settings()).await;
    lanes_up(&app).await;
    let pay = json!({"amount": {"value": 4990, "currency": "NOK"}});
    let conflict = |body: &Value, says: &str| {
        assert_eq!(body["type"], "not_allowed", "{body}");
        assert_eq!(body["status"], 409, "{body}");
        assert!(body["detail"].as_str().unwrap().contains(says), "{body}");
    };

    // Nobody identified yet.
    let (status, body) = post(&app, "/api/v1/lanes/1/enroll", LANE1, json!(null)).await;
    assert_eq!(status, 409);
    conflict(&body, "no customer");
    let (status, body) = post(&app, "/api/v1/lanes/1/payment", LANE1, pay.clone()).await;
    assert_eq!(status, 409);
    conflict(&body, "no customer");
    let (status, body) = post(&app, "/api/v1/lanes/1/cancel", LANE1, json!(null)).await;
    assert_eq!(status, 409);
    conflict(&body, "no session");

    // A payment the customer leaves open: no reset, no second payment; cancel ends it.
    let mut events = Events::connect(&app, "1", LANE1).await;
    scan_on_lane_1(&app, IGNORER_QR).await;
    events.until_message("non_member").await;
    let (status, lane) = post(&app, "/api/v1/lanes/1/payment", LANE1, pay.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(
        lane["session"]["payment"]["amount"],
        json!({"value": 4990, "currency": "NOK"})
    );
    events
        .until("awaiting_payment", |e| {
            e["snapshot"]["state"] == "awaiting_payment"
        })
        .await;
    let (status, body) = post(&app, "/api/v1/lanes/1/reset", LANE1, json!(null)).await;
    assert_eq!(status, 409);
    conflict(&body, "payment is in progress");
    let (status, body) = post(&app, "/api/v1/lanes/1/payment", LANE1, pay).await;
    assert_eq!(status, 409);
    conflict(&body, "already has a payment");
    let (status, body) = post(&app, "/api/v1/lanes/1/enroll", LANE1, json!(null)).await;
    assert_eq!(status, 409, "{body}");
    let (status, lane) = post(&app, "/api/v1/lanes/1/cancel", LANE1, json!(null)).await;
    assert_eq!(status, 200);
    assert_eq!(lane["state"], "awaiting_cancel");
    let cancelled = events.until_message("payment_cancelled").await;
    assert_eq!(cancelled["snapshot"]["state"], "idle");
    // Idle again: reset is harmless.
    let (status, lane) = post(&app, "/api/v1/lanes/1/reset", LANE1, json!(null)).await;
    assert_eq!(status, 200);
    assert_eq!(lane["state"], "idle");
}

#[actix_web::test]
async fn a_member_checkout_is_paid_and_the_admin_refunds_it() {
    let (app, mut events) = app_with_terminal().await;

    let lane = scan_on_lane_1(&app, MEMBER_QR).await;
    assert_eq!(lane["message"]["code"], "customer_scanned");
    events.until_message("member_welcomed").await;
    let (_, lane) = get(&app, "/api/v1/lanes/1", LANE1).await;
    assert_eq!(lane["state"], "ready_for_payment");
    assert_eq!(
        lane["session"]["customer"],
        json!({"phoneNumber": "47******67", "member": true})
    );

    let body = json!({
        "amount": {"value": 23990, "currency": "NOK"},
        "description": "Groceries",
        "receiptNumber": "R-1001",
        "orderLines": [
            {"name": "Coffee", "id": "7038010000001", "quantity": 2, "unitPrice": 9995,
             "totalAmount": 19990, "taxAmount": 2221, "taxPercentage": 15},
            {"name": "Bag", "id": "7038010000002", "quantity": 1, "unitPrice": 4000,
             "totalAmount": 4000, "taxAmount": 800, "taxPercentage": 25}
        ]
    });
    let (status, lane) = post(&app, "/api/v1/lanes/1/payment", LANE1, body).await;
    assert_eq!(status, 200, "{lane}");
    assert_eq!(lane["message"]["code"], "payment_requested");
    let reference = lane["session"]["payment"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    events.until_message("payment_approved").await;
    let (_, lane) = get(&app, "/api/v1/lanes/1", LANE1).await;
    assert_eq!(lane["state"], "idle");
    assert_eq!(lane["message"]["code"], "payment_approved");

    // The back office refunds part, then the rest; more than was captured is refused.
    let refund = |value: u64| json!({"amount": {"value": value, "currency": "NOK"}});
    let path = format!("/api/v1/payments/{reference}/refund");
    let (status, answer) = post(&app, &path, ADMIN, refund(1000)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["reference"], reference);
    assert_eq!(
        answer["aggregate"]["capturedAmount"],
        json!({"currency": "NOK", "value": 23990})
    );
    assert_eq!(
        answer["aggregate"]["refundedAmount"],
        json!({"currency": "NOK", "value": 1000})
    );
    let (status, answer) = post(&app, &path, ADMIN, refund(22990)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["aggregate"]["refundedAmount"]["value"], 23990);
    let (status, problem) = post(&app, &path, ADMIN, refund(1)).await;
    assert_eq!(status, 409, "{problem}");
    assert_eq!(problem["type"], "not_allowed");
    // Create, capture and three refunds used Vipps' five changes of this payment per minute.
    let (status, problem) = post(&app, &path, ADMIN, refund(1)).await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["type"], "rate_limited");
    let (status, problem) = post(
        &app,
        &path,
        ADMIN,
        json!({"amount": {"value": 100, "currency": "DKK"}}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["field"], "amount.currency");
}

#[actix_web::test]
async fn a_declined_payment_ends_the_checkout_as_declined() {
    let (app, mut events) = app_with_terminal().await;
    scan_on_lane_1(&app, DECLINER_QR).await;
    let identified = events.until_message("non_member").await;
    assert_eq!(
        identified["snapshot"]["session"]["customer"]["member"],
        false
    );
    let pay = json!({"amount": {"value": 23990, "currency": "NOK"}});
    let (status, _) = post(&app, "/api/v1/lanes/1/payment", LANE1, pay).await;
    assert_eq!(status, 200);
    let declined = events.until_message("payment_declined").await;
    assert_eq!(declined["snapshot"]["state"], "idle");
    assert!(
        !events
            .seen
            .iter()
            .any(|e| e["snapshot"]["message"]["code"] == "payment_approved"),
        "a declined payment was never approved"
    );
}

#[actix_web::test]
async fn operations_endpoints_answer_without_a_token() {
    let app = spawn_app_with(fast_settings()).await;
    lanes_up(&app).await;
    let (status, _, ready) = call(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["lanes"], json!({"total": 2, "down": []}));
    assert_eq!(ready["vipps"]["token"], true);
    // One circuit per Vipps API, all closed.
    let apis = ready["vipps"]["apis"].as_object().expect("vipps.apis");
    let names: Vec<&str> = apis.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "access_token",
            "check_in",
            "epayment",
            "login",
            "qr",
            "webhooks"
        ],
        "{ready}"
    );
    assert!(apis.values().all(|a| a["circuit"] == "closed"), "{ready}");
    let (status, _, health) = call(&app, Method::GET, "/healthz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status(), 200);
    assert!(content_type(&metrics).starts_with("text/plain"));
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains("lanehub_lane_up"),
        "{}",
        &text[..text.len().min(500)]
    );
}

/// Every `$ref` in `value` as a JSON pointer.
fn refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        out.insert(r.clone());
                    }
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[actix_web::test]
async fn the_openapi_document_lists_every_route_and_is_well_formed() {
    let app = spawn_app_with(fast_settings()).await;
    let (status, ct, doc) = call(&app, Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let routes = [
        ("get", "/api/v1/lanes"),
        ("get", "/api/v1/lanes/{lane}"),
        ("post", "/api/v1/lanes/{lane}/scans"),
        ("post", "/api/v1/lanes/{lane}/enroll"),
        ("post", "/api/v1/lanes/{lane}/payment"),
        ("post", "/api/v1/lanes/{lane}/cancel"),
        ("post", "/api/v1/lanes/{lane}/reset"),
        ("get", "/api/v1/lanes/{lane}/events"),
        ("post", "/api/v1/payments/{reference}/refund"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/metrics"),
    ];
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(
        paths.len(),
        routes.len(),
        "{:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (method, path) in routes {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is missing");
        assert!(op["operationId"].is_string(), "{method} {path}");
        let responses = op["responses"].as_object().unwrap();
        assert!(!responses.is_empty(), "{method} {path}");
        for (code, response) in responses {
            // OpenAPI requires a description on every response.
            assert!(
                response["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {code} has no description"
            );
        }
        // Every path parameter is declared.
        for name in path
            .split('{')
            .skip(1)
            .map(|s| s.split('}').next().unwrap())
        {
            let declared = op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == name && p["in"] == "path" && p["required"] == true);
            assert!(declared, "{method} {path} does not declare {{{name}}}");
        }
        let open = ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"].contains(&path);
        assert_eq!(
            op["security"] == json!([{}]),
            open,
            "{method} {path} security"
        );
    }
    assert_eq!(doc["security"], json!([{"bearer": []}]));
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );

    let mut all = BTreeSet::new();
    refs(&doc, &mut all);
    assert!(all.len() > 5, "{all:?}");
    for r in all {
        let pointer = r.strip_prefix('#').expect("local references only");
        assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
    }
    let currency = &doc["components"]["schemas"]["CurrencyCode"]["enum"];
    assert_eq!(currency, &json!(["NOK", "DKK", "EUR"]));
}

/// Starts lanehub with HTTPS from the test-only certificate in tests/fixtures/tls.
fn tls_settings() -> Settings {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls");
    let mut settings = fast_settings();
    settings.api.tls_cert = Some(fixtures.join("cert.pem"));
    settings.api.tls_key = Some(fixtures.join("key.pem"));
    settings
}

#[actix_web::test]
async fn https_serves_the_api_when_a_certificate_is_configured() {
    let app = Application::build(tls_settings()).expect("lanehub builds with TLS");
    let url = app.url();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    actix_web::rt::spawn(app.run_until_stopped());

    let pem = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/tls/cert.pem"
    ))
    .unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let res = client.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let res = client
        .get(format!("{url}/api/v1/lanes/1"))
        .bearer_auth(LANE1)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // Plain HTTP to the TLS port gets no API answer.
    let plain = url.replacen("https", "http", 1);
    let answer = reqwest::get(format!("{plain}/healthz")).await;
    assert!(answer.is_err() || !answer.unwrap().status().is_success());
    // A client that does not trust the certificate refuses the connection.
    let strict = reqwest::Client::new();
    assert!(strict.get(format!("{url}/healthz")).send().await.is_err());
}

#[test]
fn tls_settings_are_checked_at_load_and_at_start() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tls");
    let env = |pairs: &[(&str, String)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    };
    let cert = format!("{fixtures}/cert.pem");
    let key = format!("{fixtures}/key.pem");

    let only_cert =
        Settings::load(None, env(&[("LANEHUB__API__TLS_CERT", cert.clone())])).unwrap_err();
    assert_eq!(only_cert.key, "api.tls_key", "{only_cert}");
    let only_key =
        Settings::load(None, env(&[("LANEHUB__API__TLS_KEY", key.clone())])).unwrap_err();
    assert_eq!(only_key.key, "api.tls_cert", "{only_key}");
    let missing = Settings::load(
        None,
        env(&[
            ("LANEHUB__API__TLS_CERT", format!("{fixtures}/nope.pem")),
            ("LANEHUB__API__TLS_KEY", key.clone()),
        ]),
    )
    .unwrap_err();
    assert_eq!(missing.key, "api.tls_cert");
    assert!(missing.message.contains("nope.pem"), "{missing}");
    let both = Settings::load(
        None,
        env(&[
            ("LANEHUB__API__TLS_CERT", cert.clone()),
            ("LANEHUB__API__TLS_KEY", key),
        ]),
    )
    .unwrap();
    assert!(both.api.tls().is_some());
    let plain = Settings::load(None, Vec::new()).unwrap();
    assert!(plain.api.tls().is_none(), "HTTPS is off unless configured");

    // Readable files that hold no key are refused at start, naming the setting.
    let mut swapped = test_settings();
    swapped.api.tls_cert = Some(cert.clone().into());
    swapped.api.tls_key = Some(cert.into());
    let system = actix_web::rt::System::new();
    let err = system
        .block_on(async { Application::build(swapped).map(|_| ()) })
        .unwrap_err();
    assert!(err.to_string().contains("api.tls_key"), "{err}");
}

/// The real binary on free ports with fast virtual customers; killed when dropped.
struct Binary {
    child: std::process::Child,
    url: String,
    data: PathBuf,
    /// Kept open: a closed pipe would make the binary's next line on stdout fail.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_binary() -> Binary {
    let data = temp_dir("binary");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lanehub"));
    cmd.arg("run")
        .env("LANEHUB__API__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__SIM__LISTEN", "127.0.0.1:0")
        .env("LANEHUB__STORE__DATA_DIR", &data)
        .env("LANEHUB__SESSION__PAYMENT_FIRST_POLL", "200ms")
        .env("LANEHUB__SESSION__PAYMENT_POLL_INTERVAL", "200ms")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for i in 0..5 {
        cmd.env(
            format!("LANEHUB__SIM__CUSTOMERS__{i}__PAYMENT_DELAY"),
            "50ms",
        );
    }
    let mut child = cmd.spawn().expect("the binary starts");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
    let url = announced_url(&mut stdout);
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    Binary {
        child,
        url,
        data,
        _stdout: stdout,
    }
}

#[actix_web::test]
async fn the_real_binary_runs_a_member_checkout_and_a_refund() {
    lanehub::install_crypto_provider();
    let binary = start_binary();
    let app = Api::new(binary.url.clone(), ADMIN);
    lanes_up(&app).await;
    // SQLite lets this process read the running binary's store.
    let store = lanehub::store::Store::open(&binary.data).await.unwrap();
    wait_seeded(&store, [&MEMBER.parse().unwrap()]).await;
    let (status, _, ready) = call(&app, Method::GET, "/readyz", None, None).await;
    assert_eq!(status, 200, "{ready}");
    let mut events = Events::connect(&app, "2", "demo-lane-2-token").await;
    let (status, _) = post(
        &app,
        "/api/v1/lanes/2/scans",
        ADMIN,
        json!({"text": MEMBER_QR}),
    )
    .await;
    assert_eq!(status, 200);
    events.until_message("member_welcomed").await;
    let pay = json!({"amount": {"value": 12345, "currency": "NOK"}, "description": "Groceries"});
    let (status, lane) = post(&app, "/api/v1/lanes/2/payment", "demo-lane-2-token", pay).await;
    assert_eq!(status, 200, "{lane}");
    let reference = lane["session"]["payment"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    events.until_message("payment_approved").await;
    let (status, answer) = post(
        &app,
        &format!("/api/v1/payments/{reference}/refund"),
        ADMIN,
        json!({"amount": {"value": 12345, "currency": "NOK"}}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["aggregate"]["refundedAmount"]["value"], 12345);
    let metrics = reqwest::get(format!("{}/metrics", binary.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let paid = metrics
        .lines()
        .find(|l| {
            l.starts_with("lanehub_payments_total")
                && l.contains("lane=\"2\"")
                && l.contains("paid")
        })
        .unwrap_or_else(|| panic!("no paid payment counted on lane 2:\n{metrics}"));
    assert!(paid.ends_with(" 1"), "{paid}");
}

#[actix_web::test]
async fn a_stalled_body_is_answered_408_and_its_connection_closed_at_the_deadline() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DEADLINE: Duration = Duration::from_millis(300);
    let mut settings = fast_settings();
    settings.api.body_timeout = DEADLINE;
    let app = spawn_app_with(settings).await;
    let addr = app.address.trim_start_matches("http://").to_owned();
    // The webhook route takes bodies without a token; the terminal API after one.
    for (path, auth) in [
        ("/vipps/webhooks", String::new()),
        (
            "/api/v1/lanes/1/scans",
            format!("Authorization: Bearer {LANE1}\r\n"),
        ),
    ] {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let started = tokio::time::Instant::now();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: 1000\r\n\r\n{{\"text\": \"59012"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        // The server answers, then closes the connection with the body unread.
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
            .await
            .unwrap_or_else(|_| panic!("{path}: the stalled connection is still open"))
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text}");
        assert!(text.contains("\"type\":\"body_timeout\""), "{path}: {text}");
        assert!(started.elapsed() >= DEADLINE, "{path}: cut off early");
    }
    // A body that arrives in time is served as ever.
    let (status, _) = scan_lane_1(&app, "hello").await;
    assert_eq!(status, 400);
}
