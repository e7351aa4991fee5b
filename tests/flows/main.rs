//! Acceptance flows through the real lane actors against the embedded Vipps simulator.
//!
//! Each test starts lanehub in-process (`Application::build`, free ports, a private data dir),
//! drives a lane through the terminal API and watches it over the lane's WebSocket, as a cashier's
//! terminal would. It then asserts both sides: what the cashier saw (message codes and texts, the
//! lane snapshot) and what Vipps holds (the simulator's control API: payments, check-ins, logins),
//! plus the membership store. Virtual customers answer within ~150 ms and payments are read back
//! every 250 ms, so each flow takes well under two seconds; expiry moves the simulator's clock.

use std::time::Duration;

use actix_codec::{Decoder, Encoder};
use actix_http::ws;
use actix_web::web::BytesMut;
use futures_util::future::join_all;
use lanehub::config::{Settings, SimProfile};
use lanehub::domain::Msisdn;
use lanehub::startup::Application;
use lanehub::store::{MemberSource, MembershipStore, Store};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

#[path = "../common/mod.rs"]
mod common;

use common::app::{TestApp, assert_closed_with, fast_settings, lanes, launch, start, start_on};
use common::snapshot::{captured, code};
use common::{ADMIN, AMOUNT, DECLINER, IGNORER, MEMBER, NON_MEMBER, PATIENCE, POLL, ms};

impl TestApp {
    /// Asserts that the database file holds no Login token (in journal consents or late
    /// enrollments) and returns how many consent records the journal keeps.
    fn assert_no_login_token_stored(&self) -> i64 {
        let db = rusqlite::Connection::open(self.store.path()).unwrap();
        let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
        let journalled = count(
            "SELECT count(*) FROM journal WHERE kind = 'enrollment_consented'
               AND json_extract(payload, '$.login_token') IS NOT NULL",
        );
        let late = count("SELECT count(*) FROM late_enrollments WHERE login_token IS NOT NULL");
        assert_eq!(
            (journalled, late),
            (0, 0),
            "Login tokens left in the database"
        );
        count("SELECT count(*) FROM journal WHERE kind = 'enrollment_consented'")
    }

    async fn terminal(&self, lane: &str) -> Terminal {
        Terminal::connect(&self.address, lane).await
    }
}

/// A lane terminal: the lane's WebSocket, read event by event, remembering the cashier's messages.
struct Terminal {
    io: TcpStream,
    buf: BytesMut,
    codec: ws::Codec,
    /// Message codes in the order the cashier saw them (repeats collapsed).
    seen: Vec<String>,
    /// Kinds of every event read.
    kinds: Vec<String>,
}

impl Terminal {
    async fn connect(api: &str, lane: &str) -> Terminal {
        let host = api.trim_start_matches("http://");
        let mut io = TcpStream::connect(host).await.unwrap();
        let request = format!(
            "GET /api/v1/lanes/{lane}/events?access_token={ADMIN} HTTP/1.1\r\nHost: {host}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        io.write_all(request.as_bytes()).await.unwrap();
        // Read the answer's head byte by byte so no frame is swallowed with it.
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(io.read_u8().await.expect("upgrade answer"));
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "not upgraded: {head}");
        Terminal {
            io,
            buf: BytesMut::new(),
            codec: ws::Codec::new().client_mode(),
            seen: vec![],
            kinds: vec![],
        }
    }

    /// The next event; answers the server's pings on the way.
    async fn next(&mut self) -> Value {
        loop {
            match self.codec.decode(&mut self.buf).expect("a valid frame") {
                Some(ws::Frame::Text(text)) => {
                    let event: Value = serde_json::from_slice(&text).unwrap();
                    let code = code(&event["snapshot"]).to_owned();
                    if !code.is_empty() && self.seen.last() != Some(&code) {
                        self.seen.push(code);
                    }
                    self.kinds
                        .push(event["kind"].as_str().unwrap_or_default().to_owned());
                    return event;
                }
                Some(ws::Frame::Ping(payload)) => {
                    let mut out = BytesMut::new();
                    self.codec
                        .encode(ws::Message::Pong(payload), &mut out)
                        .unwrap();
                    self.io.write_all(&out).await.unwrap();
                }
                Some(ws::Frame::Close(reason)) => {
                    panic!("the lane closed the WebSocket: {reason:?}")
                }
                Some(_) => {}
                None => {
                    let n = self.io.read_buf(&mut self.buf).await.unwrap();
                    assert!(n > 0, "the WebSocket closed");
                }
            }
        }
    }

    /// Reads events until one satisfies `done`.
    async fn until(&mut self, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(event) if done(&event) => return event,
                Ok(_) => {}
                Err(_) => panic!(
                    "no {what} within {PATIENCE:?}; the cashier saw {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Waits for the cashier's message `code`; returns the snapshot that carries it.
    async fn message(&mut self, want: &str) -> Value {
        self.until(want, |e| code(&e["snapshot"]) == want).await["snapshot"].clone()
    }

    /// Waits for an event of `kind`.
    async fn event(&mut self, kind: &str) -> Value {
        self.until(kind, |e| e["kind"] == kind).await
    }

    /// Asserts the cashier saw `codes` in this order (other messages may come between).
    fn assert_saw(&self, codes: &[&str]) {
        let mut rest = self.seen.iter();
        for want in codes {
            assert!(
                rest.any(|c| c == want),
                "the cashier should have seen {codes:?} in order; saw {:?}",
                self.seen
            );
        }
    }
}

/// Scans `phone`'s QR on `lane` and waits for the cashier's `expect` message.
async fn identify(
    hub: &TestApp,
    term: &mut Terminal,
    lane: &str,
    phone: &str,
    expect: &str,
) -> Value {
    let (status, body) = hub.scan(lane, &hub.sim.qr(phone, false).await).await;
    assert_eq!(status, 200, "{body}");
    let snapshot = term.message(expect).await;
    assert_eq!(snapshot["state"], "ready_for_payment", "{snapshot}");
    snapshot
}

/// Presses pay and waits until the payment exists at Vipps (the lane read it back as CREATED).
async fn pay_and_wait_created(hub: &TestApp, term: &mut Terminal, lane: &str) -> Value {
    let (status, body) = hub.pay(lane).await;
    assert_eq!(status, 200, "{body}");
    term.until("the payment read back as CREATED", |e| {
        e["snapshot"]["session"]["payment"]["state"] == "CREATED"
    })
    .await["snapshot"]
        .clone()
}

#[actix_web::test]
async fn member_checkout_is_checked_in_paid_and_refundable() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;

    let ready = identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    assert_eq!(ready["message"]["text"], "Member 47******67 welcomed");
    assert_eq!(ready["session"]["customer"]["phoneNumber"], "47******67");
    assert_eq!(ready["session"]["customer"]["member"], true);
    let session = ready["session"]["id"].clone();

    // A product barcode reaches the terminal as a `scan` event and leaves the session alone.
    let (status, body) = hub.scan("1", "4006381333931").await;
    assert_eq!(status, 200, "{body}");
    let scan = term.event("scan").await;
    assert_eq!(scan["data"]["barcode"], "4006381333931");
    assert_eq!(scan["data"]["format"], "ean13");
    assert_eq!(scan["snapshot"]["state"], "ready_for_payment");
    assert_eq!(scan["snapshot"]["session"]["id"], session);

    // Garbage is refused with a reason, and the lane is unharmed.
    let (status, body) = hub.scan("1", "not a code at all").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("not a Vipps QR code"), "{body}");
    let after = hub.lane("1").await;
    assert_eq!(
        (&after["up"], &after["state"]),
        (&json!(true), &json!("ready_for_payment"))
    );
    assert_eq!(after["session"]["id"], session);

    // Pay; a second pay for the same session is refused.
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    let reference = body["session"]["payment"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 409, "{body}");

    let done = term.message("payment_approved").await;
    assert_eq!(done["message"]["text"], "Payment approved 239.90 NOK");
    assert_eq!(done["state"], "idle");
    // The ended checkout stays visible, with its outcome, until the next one begins.
    assert_eq!(done["session"], Value::Null);
    assert_eq!(done["lastSession"]["id"], session);
    assert_eq!(done["lastSession"]["outcome"], "paid");
    assert_eq!(
        done["lastSession"]["payment"]["reference"],
        reference.as_str()
    );
    term.assert_saw(&[
        "customer_scanned",
        "member_welcomed",
        "payment_requested",
        "payment_authorised",
        "payment_approved",
    ]);

    // Vipps: the member saw the member check-in; one payment, captured in full.
    let checkins = hub
        .sim
        .get(&format!("/checkins?phoneNumber={MEMBER}"))
        .await;
    assert_eq!(checkins.as_array().unwrap().len(), 1, "{checkins}");
    assert_eq!(checkins[0]["isMember"], true);
    assert_eq!(checkins[0]["shown"], "member_check_in");
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["reference"], reference.as_str());
    assert_eq!(payment["state"], "AUTHORIZED");
    assert_eq!(captured(&payment), AMOUNT);

    // Refund from the back office: a lane token may not, the admin token may.
    let refund = json!({"amount": {"value": 5000, "currency": "NOK"}});
    let url = format!("/api/v1/payments/{reference}/refund");
    let res = hub
        .http
        .post(format!("{}{url}", hub.address))
        .bearer_auth("demo-lane-1-token")
        .json(&refund)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let (status, body) = hub.call(reqwest::Method::POST, &url, Some(refund)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["aggregate"]["refundedAmount"]["value"], 5000);
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["aggregate"]["refundedAmount"]["value"], 5000);

    // lanehub's own records agree: the session is closed, the payments index holds the amounts.
    hub.assert_journal_closed().await;
    let indexed = hub
        .store
        .payment(&reference.parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (indexed.captured, indexed.refunded),
        (AMOUNT, 5000),
        "{indexed:?}"
    );
}

#[actix_web::test]
async fn non_member_enrolls_then_pays_as_a_member() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    let ready = identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    assert_eq!(ready["session"]["customer"]["member"], false);
    assert_eq!(
        ready["message"]["text"],
        "Customer 47******32 is not a member: offer enrollment"
    );

    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let asked = &body["session"]["enrollment"];
    assert!(asked == "starting" || asked == "awaiting_consent", "{body}");
    let enrolled = term.message("enrollment_completed").await;
    assert_eq!(enrolled["session"]["enrollment"], "enrolled");
    assert_eq!(
        enrolled["message"]["text"],
        "Welcome to the club, Ola Nordmann!"
    );
    assert_eq!(enrolled["state"], "ready_for_payment");
    assert_eq!(enrolled["session"]["customer"]["member"], true);

    let member = hub
        .store
        .member(&phone)
        .await
        .unwrap()
        .expect("enrolled member stored");
    assert_eq!(member.name, "Ola Nordmann");
    assert_eq!(member.source, MemberSource::Enrollment);
    assert_eq!(
        member.enrolled_lane.map(|l| l.to_string()),
        Some("1".into())
    );
    // The token was needed until userinfo answered: the consent is kept, the token is not.
    assert_eq!(hub.assert_no_login_token_stored(), 1);

    hub.pay("1").await;
    term.message("payment_approved").await;
    term.assert_saw(&[
        "non_member",
        "enrollment_started",
        "enrollment_awaiting_consent",
        "enrollment_completed",
        "payment_requested",
        "payment_approved",
    ]);

    // Vipps: checked in as a non-member (before enrolling), one Login, one captured payment.
    let checkins = hub
        .sim
        .get(&format!("/checkins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(checkins[0]["isMember"], false, "{checkins}");
    assert_eq!(checkins[0]["shown"], "waiting_screen");
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");
    assert_eq!(logins[0]["state"], "completed");
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn non_member_declining_enrollment_still_pays() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    // Denies the Login, but approves the payment.
    hub.sim.behave(DECLINER, "approve", 150, "deny").await;

    identify(&hub, &mut term, "1", DECLINER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    let declined = term.message("enrollment_declined").await;
    assert_eq!(
        declined["message"]["text"],
        "Enrollment declined by the customer"
    );
    assert_eq!(declined["state"], "ready_for_payment");
    assert_eq!(declined["session"]["customer"]["member"], false);

    hub.pay("1").await;
    term.message("payment_approved").await;

    let phone: Msisdn = DECLINER.parse().unwrap();
    assert!(
        hub.store.member(&phone).await.unwrap().is_none(),
        "not enrolled"
    );
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={DECLINER}"))
        .await;
    assert_eq!(logins[0]["state"], "denied", "{logins}");
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_login_scope_vipps_has_not_activated_tells_the_cashier_why_enrollment_failed() {
    // As in Vipps' test environment: delegatedConsents is not activated for the client.
    let mut settings = fast_settings();
    settings.sim.login_delegated_consents = false;
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    let failed = term.message("enrollment_failed").await;
    let text = failed["message"]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Enrollment failed: Vipps refused the login: invalid_scope")
            && text.contains("delegatedConsents")
            && text.contains("vipps.login_scopes"),
        "{failed}"
    );
    assert_eq!(failed["state"], "ready_for_payment");
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().map(Vec::len), Some(0), "{logins}");
    hub.pay("1").await;
    term.message("payment_approved").await;
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_login_start_whose_answer_was_lost_is_not_started_twice() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    // Vipps starts the Login (the customer gets the request) but its answer never arrives.
    hub.sim
        .call(
            reqwest::Method::PUT,
            "/faults/login_authenticate",
            Some(json!({"dropNext": 1})),
        )
        .await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    let failed = term.message("enrollment_failed").await;
    assert_eq!(
        failed["message"]["text"],
        "Enrollment failed: Vipps did not answer; the customer may see a request in the app: \
         enroll again in a few minutes",
        "{failed}"
    );
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().map(Vec::len), Some(1), "{logins}");

    // Enrolling again at once: Vipps refuses while the first Login is open, and says so.
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_started").await;
    let again = term.message("enrollment_failed").await;
    assert_eq!(
        again["message"]["text"],
        "Enrollment failed: a Vipps login to this customer is still open: enroll again in a few \
         minutes",
        "{again}"
    );
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().map(Vec::len), Some(1), "{logins}");
}

#[actix_web::test]
async fn a_token_poll_whose_answer_was_lost_tells_the_cashier_to_enroll_again() {
    let mut settings = fast_settings();
    // The lane's next scheduled poll is 3 s away: the one the consent's ping triggers comes first.
    settings.sim.login_interval = Duration::from_secs(3);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_awaiting_consent").await;
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    let id = logins[0]["authReqId"].as_str().unwrap().to_owned();
    // The customer consents; the poll that fetches the token loses its answer.
    hub.sim
        .call(
            reqwest::Method::PUT,
            "/faults/login_token",
            Some(json!({"dropNext": 1})),
        )
        .await;
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/logins/{id}/consent"),
            None,
        )
        .await;

    let failed = term.message("enrollment_failed").await;
    assert_eq!(
        failed["message"]["text"],
        "Enrollment failed: the customer's consent was lost on the way from Vipps: enroll again \
         later",
        "{failed}"
    );
    assert_eq!(failed["state"], "ready_for_payment");
    let login = hub.sim.get(&format!("/logins/{id}")).await;
    assert_eq!(login["state"], "completed", "{login}");
    let faults = hub.sim.get("/faults").await;
    assert_eq!(
        faults["injectedByOperation"]["login_token"]["drop"], 1,
        "{faults}"
    );
}

#[actix_web::test]
async fn the_default_login_scopes_enroll_where_delegated_consents_is_not_activated() {
    let mut settings = fast_settings();
    settings.sim.login_delegated_consents = false;
    let defaults = Settings::load(None, Vec::new()).unwrap();
    settings.vipps.login_scopes = defaults.vipps.login_scopes;
    assert!(
        !settings
            .vipps
            .login_scopes
            .iter()
            .any(|s| s == "delegatedConsents")
    );
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_completed").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    let member = hub.store.member(&phone).await.unwrap().expect("enrolled");
    assert_eq!(member.name, "Ola Nordmann");
    assert!(member.consents.is_empty(), "{:?}", member.consents);
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(
        logins[0]["scopes"],
        json!(["openid", "name", "phoneNumber", "email"])
    );
}

#[actix_web::test]
async fn declined_payment_is_reported_and_not_captured() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", DECLINER, "non_member").await;
    hub.pay("1").await;
    let done = term.message("payment_declined").await;
    assert_eq!(done["message"]["text"], "Payment declined by the customer");
    assert_eq!(done["state"], "idle");
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["state"], "ABORTED");
    assert_eq!(captured(&payment), 0);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn payment_the_customer_ignores_expires() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", IGNORER, "non_member").await;
    pay_and_wait_created(&hub, &mut term, "1").await;

    // Vipps' ten minutes pass at the simulator; lanehub learns it by webhook or read-back.
    hub.sim
        .call(
            reqwest::Method::POST,
            "/clock/advance",
            Some(json!({"ms": 601_000})),
        )
        .await;
    let done = term.message("payment_expired").await;
    assert_eq!(
        done["message"]["text"],
        "Payment expired: the customer did not answer"
    );
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["state"], "EXPIRED");
    assert_eq!(captured(&payment), 0);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn cashier_cancels_a_payment_not_yet_approved() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    // The member takes a minute to approve: the cashier cancels first.
    hub.sim.behave(MEMBER, "approve", 60_000, "consent").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    pay_and_wait_created(&hub, &mut term, "1").await;

    let (status, body) = hub.command("1", "cancel", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let done = term.message("payment_cancelled").await;
    assert_eq!(done["state"], "idle");
    term.assert_saw(&["payment_requested", "cancel_requested", "payment_cancelled"]);
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["state"], "TERMINATED");
    assert_eq!(captured(&payment), 0);
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn vipps_unavailable_sends_the_cashier_to_another_payment_method() {
    let mut settings = fast_settings();
    settings.vipps.retry_deadline = ms(500);
    settings.vipps.retry_initial_backoff = ms(50);
    settings.vipps.retry_max_backoff = ms(100);
    settings.vipps.circuit_failure_threshold = 1;
    // Long enough that the circuit is still open when the cashier presses pay on a slow machine.
    settings.vipps.circuit_cool_down = ms(4_000);
    // Access tokens expire soon, so that lanehub needs a new one while Vipps is down.
    let token_lifetime = ms(1_500);
    settings.sim.token_lifetime = token_lifetime;
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    let qr = hub.sim.qr(MEMBER, true).await;
    // The webhook registration at start must not meet the faults below.
    hub.sim.wait_webhook_registered().await;

    // Every Vipps call fails, the access token too. The QR exchange failing does not stop the
    // checkout (the clear-text number identifies the customer), nor does the check-in.
    hub.sim
        .call(
            reqwest::Method::PUT,
            "/faults",
            Some(json!({"serverErrorRate": 1.0})),
        )
        .await;
    let (status, body) = hub.scan("1", &qr).await;
    assert_eq!(status, 200, "{body}");
    term.message("member_welcomed").await;
    let check_in = term.event("check_in").await;
    assert_eq!(check_in["data"]["code"], "check_in_failed", "{check_in}");
    // By now the token has expired and fetching another failed: the access-token circuit is
    // open, so no call that needs a token is sent.
    tokio::time::sleep(token_lifetime).await;

    // The payment cannot be sent: the cashier is told at once, and nothing exists at Vipps.
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    let done = term
        .until("the session to end", |e| e["snapshot"]["state"] == "idle")
        .await["snapshot"]
        .clone();
    assert_eq!(code(&done), "vipps_unavailable", "saw {:?}", term.seen);
    assert_eq!(
        done["message"]["text"],
        "Vipps is unavailable: take another payment method"
    );
    assert_eq!(done["state"], "idle");
    assert!(hub.sim.payments().await.is_empty());

    // Vipps recovers. Once the circuits let a probe through (a check-in succeeds), checkouts work.
    hub.sim.call(reqwest::Method::DELETE, "/faults", None).await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        hub.scan("1", &qr).await;
        term.message("member_welcomed").await;
        let check_in = term.event("check_in").await;
        if check_in["data"]["code"] == "check_in_sent" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Vipps never came back: {check_in}"
        );
        hub.command("1", "reset", json!({})).await;
        term.message("session_closed").await;
        // Nothing announces the end of the cool-down: try again a little later.
        tokio::time::sleep(POLL * 4).await;
    }
    hub.pay("1").await;
    term.message("payment_approved").await;
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
}

#[actix_web::test]
async fn check_in_failing_in_the_test_environment_never_stops_payments() {
    // As in the real test environment, every check-in answers 500.
    let mut settings = fast_settings();
    settings.sim.profile = SimProfile::TestEnvironment;
    let ids = ["1", "2", "3", "4", "5", "6"];
    settings.lanes = lanes(&ids);
    // Fewer failed check-ins than lanes open a circuit.
    assert!(settings.vipps.circuit_failure_threshold < ids.len() as u32);
    let hub = start(settings).await;
    let mut terms = Vec::new();
    for id in ids {
        terms.push(hub.terminal(id).await);
    }

    // Six customers scan at once; every check-in fails, every customer is welcomed.
    let qr = hub.sim.qr(MEMBER, false).await;
    for (status, body) in join_all(ids.map(|id| hub.scan(id, &qr))).await {
        assert_eq!(status, 200, "{body}");
    }
    for term in &mut terms {
        term.message("member_welcomed").await;
        let check_in = term.event("check_in").await;
        assert_eq!(check_in["data"]["code"], "check_in_failed", "{check_in}");
    }
    let check_ins = hub.sim.get("/checkins").await;
    assert!(
        check_ins
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["outcome"] == "server_error"),
        "{check_ins}"
    );

    // Check-in's circuit is open, and lanehub is ready all the same. (Not read from the metrics:
    // the recorder is one per process, shared with the other tests' lanehubs.)
    let res = hub.get("/readyz").await;
    assert_eq!(res.status(), 200);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(
        ready["vipps"]["apis"]["check_in"]["circuit"], "open",
        "{ready}"
    );
    assert_eq!(
        ready["vipps"]["apis"]["epayment"]["circuit"], "closed",
        "{ready}"
    );
    assert_eq!(ready["vipps"]["circuitOpen"], false, "{ready}");

    // Every lane takes its payment.
    for id in ids {
        let (status, body) = hub.pay(id).await;
        assert_eq!(status, 200, "{body}");
    }
    for term in &mut terms {
        term.message("payment_approved").await;
    }
    let payments = hub.sim.payments().await;
    assert_eq!(payments.len(), ids.len());
    assert!(
        payments.iter().all(|p| captured(p) == AMOUNT),
        "{payments:?}"
    );
}

#[actix_web::test]
async fn a_personal_qr_of_a_new_shape_goes_to_the_exchange() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    // A shape no integration knows yet; only the QR exchange understands it.
    let customer = hub.sim.get(&format!("/customers/{NON_MEMBER}")).await;
    let qr = customer["qrFutureUrl"].as_str().expect("a new-shape QR");
    assert!(qr.starts_with("https://qr.vipps.no/c/"), "{qr}");
    let (status, body) = hub.scan("1", qr).await;
    assert_eq!(status, 200, "{body}");
    let snapshot = term.message("non_member").await;
    assert_eq!(snapshot["state"], "ready_for_payment", "{snapshot}");
    hub.command("1", "reset", json!({})).await;
    term.message("session_closed").await;

    // A QR-host URL the exchange does not know is refused by the exchange.
    let (status, body) = hub.scan("1", "https://qr.vipps.no/c/nobody?v=3").await;
    assert_eq!(status, 200, "{body}");
    term.message("qr_not_recognised").await;
}

#[actix_web::test]
async fn a_payment_whose_journal_record_cannot_be_written_is_never_sent() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;

    // The database refuses exactly the record that must precede the payment request.
    let db = rusqlite::Connection::open(hub.store.path()).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_payment BEFORE INSERT ON journal
         WHEN NEW.kind = 'payment_requested'
         BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;",
    )
    .unwrap();
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    // A store fault, not Vipps': nothing is final and the session waits.
    let waiting = term.message("store_unavailable").await;
    assert_eq!(waiting["state"], "awaiting_payment_creation");
    assert!(
        hub.sim.payments().await.is_empty(),
        "a payment the journal does not know of reached Vipps"
    );

    // The database takes the record again: the same checkout carries on by itself and pays.
    db.execute_batch("DROP TRIGGER refuse_payment").unwrap();
    term.message("payment_approved").await;
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    term.assert_saw(&["store_unavailable", "payment_requested", "payment_approved"]);
}

/// Makes every store write fail as on a full disk, or stops doing so (test hook).
async fn refuse_writes(hub: &TestApp, refuse: bool) {
    let (status, body) = hub
        .call(
            reqwest::Method::POST,
            "/api/v1/test/store",
            Some(json!({ "refuseWrites": refuse })),
        )
        .await;
    assert_eq!(status, 204, "{body}");
}

async fn readyz(hub: &TestApp) -> (u16, Value) {
    hub.call(reqwest::Method::GET, "/readyz", None).await
}

#[actix_web::test]
async fn a_payment_approved_while_the_store_is_full_is_captured_once_the_store_is_back() {
    let hub = start(fast_settings()).await;
    hub.sim.behave(MEMBER, "approve", 600, "consent").await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    hub.pay("1").await;
    hub.wait_lane("1", "sent the payment", |s| {
        s["state"] == "awaiting_payment"
    })
    .await;

    // The disk fills while the customer decides; the customer approves.
    refuse_writes(&hub, true).await;
    let waiting = term.message("store_unavailable").await;
    assert_ne!(waiting["state"], "idle", "the session must not end");
    let (status, ready) = readyz(&hub).await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["store"]["writable"], false, "{ready}");
    assert!(
        ready["store"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("full")),
        "{ready}"
    );
    // Not captured: the capture could not be journalled, so it was never sent.
    hub.wait_lane("1", "waited for the store to capture", |s| {
        s["state"] == "awaiting_capture" && s["message"]["code"] == "store_unavailable"
    })
    .await;
    let payment = hub.sim.only_payment().await;
    assert_eq!(
        (&payment["state"], captured(&payment)),
        (&json!("AUTHORIZED"), 0)
    );
    // A new checkout on another lane is refused as a store fault, not as Vipps'.
    let (status, body) = hub.scan("2", &hub.sim.qr(MEMBER, false).await).await;
    assert_eq!(
        (status, &body["type"]),
        (503, &json!("store_unavailable")),
        "{body}"
    );
    assert!(
        hub.metric("lanehub_store_errors_total", &[("kind", "disk_full")])
            .await
            .is_some_and(|n| n >= 1.0)
    );

    // Space again: the session carries on by itself, no restart.
    refuse_writes(&hub, false).await;
    term.message("payment_approved").await;
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    let (status, ready) = readyz(&hub).await;
    assert_eq!(
        (status, &ready["store"]["writable"]),
        (200, &json!(true)),
        "{ready}"
    );
    assert!(
        !term
            .seen
            .iter()
            .any(|c| c == "payment_failed" || c == "vipps_unavailable"),
        "the cashier was told a wrong outcome: {:?}",
        term.seen
    );
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_cancel_while_the_store_is_full_is_carried_out_before_anything_final_is_shown() {
    let hub = start(fast_settings()).await;
    hub.sim.behave(MEMBER, "approve", 300, "consent").await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    hub.pay("1").await;
    hub.wait_lane("1", "sent the payment", |s| {
        s["state"] == "awaiting_payment"
    })
    .await;
    refuse_writes(&hub, true).await;
    hub.wait_lane("1", "waited for the store to capture", |s| {
        s["state"] == "awaiting_capture" && s["message"]["code"] == "store_unavailable"
    })
    .await;

    // The customer pays otherwise: the cashier cancels while nothing can be saved.
    let (status, body) = hub.command("1", "cancel", json!({})).await;
    assert_eq!(
        (status, &body["state"]),
        (200, &json!("awaiting_cancel")),
        "{body}"
    );
    assert_eq!(
        captured(&hub.sim.only_payment().await),
        0,
        "never captured once the cashier cancelled"
    );

    refuse_writes(&hub, false).await;
    term.message("payment_cancelled").await;
    let payment = hub.sim.only_payment().await;
    assert_eq!(captured(&payment), 0, "{payment}");
    assert_eq!(
        payment["aggregate"]["cancelledAmount"]["value"],
        json!(AMOUNT),
        "{payment}"
    );
}

#[actix_web::test]
async fn a_create_that_may_have_reached_vipps_is_followed_while_the_circuit_is_open() {
    let mut settings = fast_settings();
    settings.vipps.request_timeout = ms(300);
    settings.vipps.retry_deadline = ms(2000);
    settings.vipps.retry_initial_backoff = ms(50);
    settings.vipps.retry_max_backoff = ms(100);
    settings.vipps.circuit_failure_threshold = 1;
    settings.vipps.circuit_cool_down = ms(1000);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;

    // Vipps creates the payment but its answer never comes; the timeout opens the circuit, so the
    // retry is refused locally. The payment exists: the cashier must not be sent elsewhere.
    let hang = json!({"hangNext": 1, "hangMs": 5_000});
    hub.sim
        .call(reqwest::Method::PUT, "/faults/payment_create", Some(hang))
        .await;
    hub.pay("1").await;
    let done = term
        .until("the session to end", |e| e["snapshot"]["state"] == "idle")
        .await;
    assert_eq!(
        code(&done["snapshot"]),
        "payment_approved",
        "saw {:?}",
        term.seen
    );
    let payment = hub.sim.only_payment().await;
    assert_eq!(captured(&payment), AMOUNT);
}

#[actix_web::test]
async fn a_panicking_lane_restarts_with_its_session_and_the_payment_completes() {
    let mut settings = fast_settings();
    settings.lanes = lanes(&["panic-a", "panic-b"]);
    let hub = start(settings).await;
    let mut a = hub.terminal("panic-a").await;
    let mut b = hub.terminal("panic-b").await;

    // Lane b has a customer waiting to pay; lane a waits for a customer who ignores the request.
    identify(&hub, &mut b, "panic-b", MEMBER, "member_welcomed").await;
    let b_before = hub.lane("panic-b").await;
    identify(&hub, &mut a, "panic-a", IGNORER, "non_member").await;
    let waiting = pay_and_wait_created(&hub, &mut a, "panic-a").await;
    let session = waiting["session"]["id"].clone();
    let reference = waiting["session"]["payment"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();

    let url = "/api/v1/lanes/panic-a/test/panic";
    let (status, _) = hub.call(reqwest::Method::POST, url, None).await;
    assert_eq!(status, 202);
    a.event("down").await;
    let up = a.event("up").await;
    assert_eq!(up["snapshot"]["up"], true);
    let recovered = a.message("session_recovered").await;
    assert_eq!(
        recovered["session"]["id"], session,
        "same session after the restart"
    );
    assert_eq!(
        recovered["session"]["payment"]["reference"],
        reference.as_str()
    );
    assert_eq!(recovered["state"], "awaiting_payment");
    let restarts = [("lane", "panic-a"), ("reason", "panic")];
    assert_eq!(
        hub.metric("lanehub_lane_restarts_total", &restarts).await,
        Some(1.0)
    );

    // The customer approves after the restart; the restarted lane captures exactly once.
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/payments/{reference}/approve"),
            None,
        )
        .await;
    let done = a.message("payment_approved").await;
    assert_eq!(done["state"], "idle");
    let payment = hub.sim.only_payment().await;
    assert_eq!(payment["reference"], reference.as_str());
    assert_eq!(captured(&payment), AMOUNT);

    // Lane b never noticed: same session, never restarted, no down/up on its terminal.
    let b_after = hub.lane("panic-b").await;
    assert_eq!(b_after["session"], b_before["session"]);
    assert_eq!(b_after["state"], "ready_for_payment");
    assert!(
        !b.kinds.iter().any(|k| k == "down" || k == "up"),
        "{:?}",
        b.kinds
    );
    let other = [("lane", "panic-b"), ("reason", "panic")];
    assert_eq!(
        hub.metric("lanehub_lane_restarts_total", &other).await,
        Some(0.0)
    );
}

#[actix_web::test]
async fn a_lane_past_its_restart_budget_is_marked_down() {
    let mut settings = fast_settings();
    settings.lanes = lanes(&["budget-a", "budget-b"]);
    settings.supervisor.max_restarts = 2;
    let hub = start(settings).await;
    let mut term = hub.terminal("budget-a").await;
    let panic_url = "/api/v1/lanes/budget-a/test/panic";

    for _ in 0..2 {
        let (status, _) = hub.call(reqwest::Method::POST, panic_url, None).await;
        assert_eq!(status, 202);
        term.event("down").await;
        term.event("up").await;
    }
    let (status, _) = hub.call(reqwest::Method::POST, panic_url, None).await;
    assert_eq!(status, 202);
    term.event("down").await;

    let down = hub
        .wait_lane("budget-a", "marked down", |s| s["up"] == false)
        .await;
    assert_eq!(down["lane"], "budget-a");
    let (status, body) = hub.scan("budget-a", &hub.sim.qr(MEMBER, false).await).await;
    assert_eq!(status, 503, "{body}");
    let (status, _) = hub.call(reqwest::Method::POST, panic_url, None).await;
    assert_eq!(status, 503);
    // Reported: /readyz names the lane, the metrics show it down after two restarts.
    let ready = hub.get("/readyz").await;
    assert_eq!(ready.status(), 503);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["lanes"]["down"], json!(["budget-a"]));
    assert_eq!(
        hub.metric("lanehub_lane_up", &[("lane", "budget-a")]).await,
        Some(0.0)
    );
    let restarts = [("lane", "budget-a"), ("reason", "panic")];
    assert_eq!(
        hub.metric("lanehub_lane_restarts_total", &restarts).await,
        Some(2.0)
    );

    // The other lane works on.
    let mut other = hub.terminal("budget-b").await;
    identify(&hub, &mut other, "budget-b", MEMBER, "member_welcomed").await;
}

#[actix_web::test]
async fn a_session_that_ended_but_was_not_closed_before_a_crash_is_closed_at_start() {
    use lanehub::session::{JournalRecord, Outcome, SessionId};
    // The journal as a crash between writing the outcome and closing the session leaves it.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: lanehub::domain::LaneId = "1".parse().unwrap();
    let session = SessionId::from_uuid(uuid::Uuid::new_v4());
    for record in [
        JournalRecord::SessionStarted,
        JournalRecord::SessionEnded {
            outcome: Outcome::Declined,
        },
    ] {
        store
            .append(&lane, session.as_str(), record.kind(), &record)
            .await
            .unwrap();
    }
    assert_eq!(store.all_open_sessions().await.unwrap().len(), 1);
    drop(store);

    let hub = start_on(fast_settings(), data).await;
    hub.assert_journal_closed().await;
    assert_closed_with(&hub.store, &lane.to_string(), session.as_str(), "declined").await;
    assert_eq!(hub.lane("1").await["state"], "idle");
}

#[actix_web::test]
async fn a_crash_after_the_create_key_was_written_but_before_the_request_left_creates_nothing() {
    use lanehub::domain::{Amount, LaneId};
    use lanehub::session::{
        JournalRecord, KeyedOperation, Membership, SessionId, idempotency_key, payment_reference,
    };
    // The journal as a crash right after the create's key was written leaves it: Vipps never
    // saw the request.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: LaneId = "1".parse().unwrap();
    let session = SessionId::from_uuid(uuid::Uuid::new_v4());
    let reference = payment_reference(&lane, &session);
    for record in [
        JournalRecord::SessionStarted,
        JournalRecord::CustomerIdentified {
            msisdn: MEMBER.parse().unwrap(),
            membership: Membership::Member,
        },
        JournalRecord::PaymentRequested {
            reference: reference.clone(),
            idempotency_key: idempotency_key(&session, KeyedOperation::Create),
            amount: Amount::nok(AMOUNT),
            msisdn: MEMBER.parse().unwrap(),
            description: "Groceries".into(),
            receipt_number: None,
            attempt: 1,
        },
    ] {
        store
            .append(&lane, session.as_str(), record.kind(), &record)
            .await
            .unwrap();
    }
    drop(store);

    // At start the lane reads the payment back, finds none, and never creates it afresh: the
    // cashier is sent to another payment method rather than risk a second charge later.
    let hub = start_on(fast_settings(), data).await;
    let ended = hub
        .wait_lane("1", "the recovered session to end", |s| {
            s["lastSession"]["id"] == session.as_str()
        })
        .await;
    assert_eq!(ended["state"], "idle");
    assert_eq!(ended["lastSession"]["outcome"], "failed", "{ended}");
    assert_eq!(
        ended["message"]["text"],
        "The payment request did not reach Vipps: take another payment method"
    );
    assert!(hub.sim.payments().await.is_empty());
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn duplicate_out_of_order_and_forged_webhooks_still_make_one_payment_paid_once() {
    let hub = start(fast_settings()).await;
    let mut term = hub.terminal("1").await;
    // Every delivery is sent twice, and each is held back behind the next.
    hub.sim
        .call(
            reqwest::Method::PUT,
            "/faults",
            Some(json!({"webhookDuplicateRate": 1.0, "webhookOutOfOrderRate": 1.0})),
        )
        .await;
    hub.sim.behave(MEMBER, "ignore", 0, "consent").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    let waiting = pay_and_wait_created(&hub, &mut term, "1").await;
    let reference = waiting["session"]["payment"]["reference"]
        .as_str()
        .unwrap()
        .to_owned();

    // Someone on the store network claims the payment was aborted and then captured.
    for name in ["ABORTED", "CAPTURED"] {
        let body = format!(
            r#"{{"msn":"123456","reference":"{reference}","pspReference":"1","name":"{name}","amount":{{"currency":"NOK","value":{AMOUNT}}},"timestamp":"2026-11-27T10:00:00Z","success":true}}"#
        );
        let response = hub
            .http
            .post(format!("{}/vipps/webhooks", hub.address))
            .header("content-type", "application/json")
            .header(
                "x-ms-date",
                httpdate::fmt_http_date(std::time::SystemTime::now()),
            )
            .header(
                "x-ms-content-sha256",
                "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            )
            .header(
                "authorization",
                "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=Zm9yZ2Vk",
            )
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "a forged {name} was accepted");
    }
    let still = hub.lane("1").await;
    assert_eq!(still["state"], "awaiting_payment", "{still}");

    // The customer approves; the doubled, reordered deliveries change nothing.
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/payments/{reference}/approve"),
            None,
        )
        .await;
    let done = term.message("payment_approved").await;
    assert_eq!(done["lastSession"]["outcome"], "paid");
    term.assert_saw(&["payment_requested", "payment_approved"]);
    let payment = hub.sim.only_payment().await;
    assert_eq!(captured(&payment), AMOUNT);
    hub.assert_journal_closed().await;
    assert!(
        !term
            .seen
            .iter()
            .any(|c| c.contains("declined") || c.contains("failed") || c.contains("cancelled")),
        "the cashier was told something untrue: {:?}",
        term.seen
    );
    // The faults really applied: the authorisation reached lanehub more than once.
    let deliveries = hub
        .sim
        .get(&format!(
            "/webhooks/deliveries?reference={reference}&event=epayments.payment.authorized.v1"
        ))
        .await;
    assert!(
        deliveries.as_array().is_some_and(|d| d.len() >= 2),
        "duplicated AUTHORIZED deliveries: {deliveries}"
    );
}

/// A payment whose create was journalled, whose session ended "did not reach Vipps", and which
/// the payments index still holds as `REQUESTED`.
async fn seed_unconfirmed(store: &Store, lane: &lanehub::domain::LaneId) -> String {
    use lanehub::domain::Amount;
    use lanehub::session::{
        FailReason, JournalRecord, KeyedOperation, Membership, Outcome, SessionId, idempotency_key,
        payment_reference,
    };
    let session = SessionId::from_uuid(uuid::Uuid::new_v4());
    let reference = payment_reference(lane, &session);
    for record in [
        JournalRecord::SessionStarted,
        JournalRecord::CustomerIdentified {
            msisdn: MEMBER.parse().unwrap(),
            membership: Membership::Member,
        },
        JournalRecord::PaymentRequested {
            reference: reference.clone(),
            idempotency_key: idempotency_key(&session, KeyedOperation::Create),
            amount: Amount::nok(AMOUNT),
            msisdn: MEMBER.parse().unwrap(),
            description: "Groceries".into(),
            receipt_number: None,
            attempt: 1,
        },
        JournalRecord::SessionEnded {
            outcome: Outcome::Failed {
                reason: FailReason::PaymentNotCreated,
            },
        },
    ] {
        store
            .append(lane, session.as_str(), record.kind(), &record)
            .await
            .unwrap();
    }
    store
        .record_payment(
            &reference,
            lane,
            session.as_str(),
            Amount::nok(AMOUNT),
            "REQUESTED",
        )
        .await
        .unwrap();
    store
        .close_session(lane, session.as_str(), "failed")
        .await
        .unwrap();
    reference.to_string()
}

#[actix_web::test]
async fn a_payment_that_reaches_vipps_after_its_session_gave_up_is_cancelled() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("lanehub=debug")
        .try_init();
    use lanehub::domain::Amount;
    use lanehub::vipps::VippsHandle;
    use lanehub::vipps::models::CreatePaymentRequest;
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: lanehub::domain::LaneId = "1".parse().unwrap();
    let late = seed_unconfirmed(&store, &lane).await;
    let never = seed_unconfirmed(&store, &lane).await;
    drop(store);

    let mut settings = fast_settings();
    settings.supervisor.unconfirmed_payment_interval = ms(100);
    settings.supervisor.unconfirmed_payment_window = Duration::from_secs(2);
    let vipps_settings = settings.vipps.clone();
    let hub = start_on(settings, data).await;

    // The lost request is processed now, long after the lane told the cashier otherwise.
    let mut direct = vipps_settings;
    direct.base_url = hub.sim.url.clone();
    let vipps = VippsHandle::start(&direct, direct.actor_settings()).unwrap();
    let request = CreatePaymentRequest::in_store(
        late.parse().unwrap(),
        Amount::nok(AMOUNT),
        MEMBER.parse().unwrap(),
        "Groceries",
    );
    vipps
        .create_payment(&"late-create-key-0001".parse().unwrap(), &request)
        .await
        .unwrap();

    let deadline = Instant::now() + PATIENCE;
    let (late_state, never_state) = loop {
        let late_row = hub
            .store
            .payment(&late.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        let never_row = hub
            .store
            .payment(&never.parse().unwrap())
            .await
            .unwrap()
            .unwrap();
        if late_row.state != "REQUESTED" && never_row.state != "REQUESTED" {
            break (late_row.state, never_row.state);
        }
        assert!(
            Instant::now() < deadline,
            "still unconfirmed: {late_row:?} {never_row:?}"
        );
        tokio::time::sleep(POLL).await;
    };
    let at_vipps = hub.sim.only_payment().await;
    assert_eq!(at_vipps["reference"], late.as_str());
    // Cancelled: before approval it ends TERMINATED; after, it stays AUTHORIZED with the whole
    // amount cancelled.
    let cancelled = at_vipps["aggregate"]["cancelledAmount"]["value"].as_u64();
    assert!(
        at_vipps["state"] == "TERMINATED"
            || (at_vipps["state"] == "AUTHORIZED" && cancelled == Some(AMOUNT)),
        "the late payment is cancelled: {at_vipps}"
    );
    assert_eq!(late_state, at_vipps["state"].as_str().unwrap());
    assert_eq!(captured(&at_vipps), 0);
    // The other one never came: after the window it is known not to exist.
    assert_eq!(never_state, "NOT_CREATED");
}

#[actix_web::test]
async fn a_crash_right_after_the_customer_consented_still_enrolls_the_member() {
    use lanehub::config::VippsMode;
    use lanehub::domain::LaneId;
    use lanehub::lane::effects::login_access_token;
    use lanehub::session::{JournalRecord, Membership, SessionId};
    use lanehub::sim::Simulator;
    use lanehub::vipps::actor::{LoginOutcome, VippsHandle};
    use lanehub::vipps::models::{LoginPoll, LoginRequest};

    // Vipps outlives lanehub's crash: a simulator of its own, lanehub pointed at it.
    let mut settings = fast_settings();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sim = Simulator::new(settings.sim.clone())
        .serve(listener)
        .expect("the simulator starts");
    settings.vipps.mode = VippsMode::Remote;
    settings.vipps.base_url = sim.base_url();

    // Before the crash the lane started Login and its token poll succeeded: the customer
    // consented, and Vipps has handed the token out (once).
    let vipps = VippsHandle::start(&settings.vipps, settings.vipps.actor_settings())
        .expect("the Vipps client starts");
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    let request = LoginRequest {
        phone_number: phone.clone(),
        scopes: settings.vipps.login_scopes.clone(),
        binding_message: None,
        requested_expiry: None,
    };
    let auth = vipps.login_authenticate(&request).await.unwrap();
    let token = match vipps.poll_login(&auth).await.unwrap() {
        LoginOutcome::Success(token) => token,
        other => panic!("the customer consents: {other:?}"),
    };
    let again = vipps.login_token(&auth.auth_req_id).await;
    assert!(
        !matches!(again, Ok(LoginPoll::Success(_))),
        "the token is handed out once: {again:?}"
    );

    // The journal as a crash right after the consent was written leaves it.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: LaneId = "1".parse().unwrap();
    let session = SessionId::from_uuid(uuid::Uuid::new_v4());
    for record in [
        JournalRecord::SessionStarted,
        JournalRecord::CustomerIdentified {
            msisdn: phone.clone(),
            membership: Membership::NonMember,
        },
        JournalRecord::EnrollmentStarted {
            msisdn: phone.clone(),
            auth_req_id: auth.auth_req_id.as_str().to_owned(),
        },
        JournalRecord::EnrollmentConsented {
            login_token: Some(login_access_token(&token)),
        },
    ] {
        store
            .append(&lane, session.as_str(), record.kind(), &record)
            .await
            .unwrap();
    }
    drop(store);

    // lanehub starts on that journal and finishes the enrollment with the journalled token.
    settings.store.data_dir = data.path().to_owned();
    let app = Application::build(settings.clone()).expect("lanehub builds");
    let hub = launch(app, &settings, Some(data));
    let enrolled = hub
        .wait_lane("1", "finished the recovered enrollment", |s| {
            s["session"]["enrollment"] == "enrolled"
        })
        .await;
    assert_eq!(enrolled["session"]["id"], session.as_str(), "{enrolled}");
    assert_eq!(
        enrolled["session"]["customer"]["member"], true,
        "{enrolled}"
    );
    assert_eq!(enrolled["state"], "ready_for_payment");

    let member = hub
        .store
        .member(&phone)
        .await
        .unwrap()
        .expect("the consented member is stored");
    assert_enrolled_with_consents(&member);
    // One Login at Vipps, completed; it was never polled for again after the restart.
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");
    assert_eq!(logins[0]["state"], "completed", "{logins}");

    let (status, body) = hub.command("1", "reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    hub.assert_journal_closed().await;
    let kinds: Vec<String> = hub
        .store
        .session_records(&lane, session.as_str())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    let userinfo = kinds.iter().position(|k| k == "enrollment_userinfo");
    let finished = kinds.iter().position(|k| k == "enrollment_finished");
    assert!(
        userinfo.is_some() && userinfo < finished,
        "userinfo journalled before the enrollment finished: {kinds:?}"
    );
    // The recovered enrollment used the journalled token; once userinfo was written it is gone.
    assert_eq!(hub.assert_no_login_token_stored(), 1);
    let db = rusqlite::Connection::open(hub.store.path()).unwrap();
    let holding: i64 = db
        .query_row(
            "SELECT count(*) FROM journal WHERE instr(payload, ?1) > 0",
            [secrecy::ExposeSecret::expose_secret(
                login_access_token(&token).secret(),
            )],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(holding, 0, "the token itself is in no journal record");
    drop(sim);
}

#[actix_web::test]
async fn a_running_lanehub_prunes_sessions_closed_longer_ago_than_the_retention() {
    use lanehub::domain::LaneId;
    use lanehub::supervisor::retention::FIRST_PRUNE_AFTER;

    // A journal from 100 days of trading: two sessions closed long ago, one yesterday.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: LaneId = "1".parse().unwrap();
    let sessions = [("old-1", 100), ("old-2", 95), ("recent", 1)];
    for (session, _) in sessions {
        let record = json!({"kind": "customer_identified", "msisdn": NON_MEMBER});
        store
            .append(&lane, session, "customer_identified", record)
            .await
            .unwrap();
        store.close_session(&lane, session, "paid").await.unwrap();
    }
    let db = rusqlite::Connection::open(store.path()).unwrap();
    for (session, days) in sessions {
        let at = chrono::Utc::now() - chrono::Duration::days(days);
        db.execute(
            "UPDATE journal SET recorded_at = ?1 WHERE session = ?2",
            rusqlite::params![
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                session
            ],
        )
        .unwrap();
    }
    drop(store);

    let hub = start_on(fast_settings(), data).await;
    // The first run is a minute after start; the clock is moved there instead of waited for.
    tokio::time::pause();
    tokio::time::advance(FIRST_PRUNE_AFTER).await;
    let records = |session: &'static str| {
        let (store, lane) = (hub.store.clone(), lane.clone());
        async move { store.session_records(&lane, session).await.unwrap().len() }
    };
    // Each look is a round trip to the store thread: a bound in real time, not in the paused
    // clock (which jumps ahead while the store works).
    let mut looks = 0;
    while records("old-2").await > 0 {
        looks += 1;
        assert!(looks < 20_000, "the old sessions were never pruned");
        tokio::task::yield_now().await;
    }
    assert_eq!(records("old-1").await, 0);
    assert_eq!(
        records("recent").await,
        2,
        "a session closed yesterday is kept"
    );
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(count("SELECT count(*) FROM sessions"), 1);
}

/// Polls the membership store until `phone` is a member.
async fn wait_member(hub: &TestApp, phone: &Msisdn, what: &str) -> lanehub::store::Member {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(member) = hub.store.member(phone).await.unwrap() {
            return member;
        }
        assert!(Instant::now() < deadline, "{what}: never stored");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls the late enrollment of Login `id` until the follower has resolved it.
async fn wait_late_outcome(hub: &TestApp, id: &str) -> lanehub::store::LateEnrollment {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let late = hub.store.late_enrollment(id).await.unwrap();
        if let Some(late) = late.filter(|l| l.outcome.is_some()) {
            return late;
        }
        assert!(
            Instant::now() < deadline,
            "late enrollment {id} never resolved"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Asserts the member came in by enrollment at lane 1 with the consents from Vipps.
fn assert_enrolled_with_consents(member: &lanehub::store::Member) {
    assert_eq!(member.name, "Ola Nordmann");
    assert_eq!(member.source, MemberSource::Enrollment);
    assert_eq!(
        member.enrolled_lane.as_ref().map(|l| l.to_string()),
        Some("1".into())
    );
    assert!(
        member.consents.iter().any(|c| c.required && c.accepted),
        "{:?}",
        member.consents
    );
    assert!(
        member.consents.iter().any(|c| !c.required),
        "{:?}",
        member.consents
    );
}

#[actix_web::test]
async fn a_customer_who_consents_after_the_cashier_paid_still_becomes_a_member() {
    let mut settings = fast_settings();
    settings.supervisor.late_enrollment_interval = ms(100);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    // The customer approves the payment but leaves the Login open until the test answers it.
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
    term.message("enrollment_awaiting_consent").await;
    // The cashier does not wait for the consent.
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    let paid = term.message("payment_approved").await;
    assert_eq!(paid["state"], "idle", "{paid}");
    term.assert_saw(&[
        "enrollment_awaiting_consent",
        "payment_requested",
        "payment_approved",
    ]);
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    // Now the customer consents in the Vipps app.
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");
    assert_eq!(logins[0]["state"], "pending", "{logins}");
    let id = logins[0]["authReqId"].as_str().unwrap().to_owned();
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/logins/{id}/consent"),
            None,
        )
        .await;

    let member = wait_member(&hub, &phone, "the member who consented late").await;
    assert_enrolled_with_consents(&member);
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins[0]["state"], "completed", "{logins}");
    let late = wait_late_outcome(&hub, &id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    assert_eq!(late.msisdn.as_ref(), Some(&phone));
    assert!(
        late.login_token.is_none(),
        "a resolved enrollment keeps no token"
    );
    hub.assert_no_login_token_stored();
    // Other tests of this process may count too: the family is global, not per lane.
    let enrolled = hub
        .metric("lanehub_late_enrollments_total", &[("outcome", "enrolled")])
        .await;
    assert!(enrolled.is_some_and(|n| n >= 1.0), "{enrolled:?}");
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_consent_given_after_the_lanes_login_timeout_still_makes_a_member() {
    let mut settings = fast_settings();
    // The cashier waits half a second; Vipps keeps the Login open for its ten minutes.
    settings.session.login_timeout = ms(500);
    settings.supervisor.late_enrollment_interval = ms(100);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_awaiting_consent").await;
    let moved_on = term.message("enrollment_abandoned").await;
    assert_eq!(moved_on["state"], "ready_for_payment", "{moved_on}");
    assert_eq!(
        moved_on["message"]["text"],
        "Enrollment no longer awaited here: a consent in Vipps still enrolls"
    );

    // Minute 7 at Vipps: the Login is still open, and the customer consents.
    hub.sim
        .call(
            reqwest::Method::POST,
            "/clock/advance",
            Some(json!({"ms": 7 * 60_000})),
        )
        .await;
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");
    assert_eq!(logins[0]["state"], "pending", "{logins}");
    let id = logins[0]["authReqId"].as_str().unwrap().to_owned();
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/logins/{id}/consent"),
            None,
        )
        .await;

    let member = wait_member(&hub, &phone, "the member who consented at minute 7").await;
    assert_enrolled_with_consents(&member);
    let late = wait_late_outcome(&hub, &id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    hub.pay("1").await;
    term.message("payment_approved").await;
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn the_follower_slows_down_when_vipps_says_slow_down() {
    let mut settings = fast_settings();
    // Vipps asks for 2 s between polls; the follower sweeps every 100 ms.
    settings.sim.login_interval = Duration::from_secs(2);
    settings.supervisor.late_enrollment_interval = ms(100);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    // A 1 ms latency on every token poll, so the simulator counts them.
    hub.sim
        .call(
            reqwest::Method::PUT,
            "/faults/login_token",
            Some(json!({"latencyMs": 1})),
        )
        .await;
    let polls = || async {
        hub.sim.get("/faults").await["injectedByOperation"]["login_token"]["latency"]
            .as_u64()
            .unwrap_or(0)
    };

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    hub.command("1", "enroll", json!({})).await;
    term.message("enrollment_awaiting_consent").await;
    hub.pay("1").await;
    term.message("payment_approved").await;
    // The follower polls (pending), polls again too soon (slow_down)...
    let deadline = Instant::now() + PATIENCE;
    while polls().await < 2 {
        assert!(Instant::now() < deadline, "the follower never polled twice");
        tokio::time::sleep(POLL).await;
    }
    // ...and then keeps 5 s more between polls, not one per sweep.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(polls().await, 2);
}

#[actix_web::test]
async fn a_member_whose_store_failed_is_stored_by_the_follower_later() {
    let mut settings = fast_settings();
    settings.supervisor.late_enrollment_interval = ms(100);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();

    // The membership table refuses new members for a while (a full disk, a locked file).
    let db = rusqlite::Connection::open(hub.store.path()).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch(
        "CREATE TRIGGER refuse_members BEFORE INSERT ON members
         BEGIN SELECT RAISE(ABORT, 'members cannot be written now'); END;",
    )
    .unwrap();

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let failed = term.message("enrollment_failed").await;
    assert_eq!(failed["state"], "ready_for_payment", "{failed}");
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    // The follower keeps trying; once members can be written again the member is stored.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let open = hub.store.unresolved_late_enrollments().await.unwrap();
        if open.iter().any(|l| l.userinfo.is_some()) {
            break;
        }
        assert!(Instant::now() < deadline, "never handed over: {open:?}");
        tokio::time::sleep(POLL).await;
    }
    assert!(hub.store.member(&phone).await.unwrap().is_none());
    db.execute_batch("DROP TRIGGER refuse_members").unwrap();
    let member = wait_member(&hub, &phone, "the member whose store had failed").await;
    assert_enrolled_with_consents(&member);
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    let id = logins[0]["authReqId"].as_str().unwrap();
    let late = wait_late_outcome(&hub, id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    // Other tests of this process may count too: the family is global, not per lane.
    let enrolled = hub
        .metric("lanehub_late_enrollments_total", &[("outcome", "enrolled")])
        .await;
    assert!(enrolled.is_some_and(|n| n >= 1.0), "{enrolled:?}");
    // One Login only: the follower used the journalled userinfo, it did not poll again.
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");

    let (status, body) = hub.command("1", "reset", json!({})).await;
    assert_eq!(status, 200, "{body}");
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_token_poll_in_flight_when_the_cashier_pays_hands_the_consent_to_the_follower() {
    use lanehub::config::VippsMode;
    use lanehub::supervisor::late_enrollment::Follower;
    use lanehub::vipps::actor::VippsHandle;
    use std::sync::Arc;

    let mut settings = fast_settings();
    // The follower sweeps once at start and then not within the test: the test sweeps itself.
    settings.supervisor.late_enrollment_interval = Duration::from_secs(3600);
    let hub = start(settings.clone()).await;
    let mut term = hub.terminal("1").await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    // Every token poll takes 2 s to reach Vipps, so the lane's poll is in flight for a while.
    let slow = json!({"latencyMs": 2_000});
    hub.sim
        .call(reqwest::Method::PUT, "/faults/login_token", Some(slow))
        .await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
    term.message("enrollment_awaiting_consent").await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let faults = hub.sim.get("/faults").await;
        if faults["injectedByOperation"]["login_token"]["latency"].as_u64() >= Some(1) {
            break;
        }
        assert!(Instant::now() < deadline, "the lane never polled: {faults}");
        tokio::time::sleep(POLL).await;
    }
    // The customer consents while that poll is on its way; the cashier pays at once.
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    let id = logins[0]["authReqId"].as_str().unwrap().to_owned();
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/logins/{id}/consent"),
            None,
        )
        .await;
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");

    // The poll comes back with the token after the session stopped waiting: the lane stores it
    // for the follower instead of dropping it (Vipps will not hand it out again).
    let deadline = Instant::now() + PATIENCE;
    let late = loop {
        let late = hub.store.late_enrollment(&id).await.unwrap();
        if let Some(late) = late.filter(|l| l.login_token.is_some()) {
            break late;
        }
        assert!(
            Instant::now() < deadline,
            "the late token was never handed over"
        );
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(late.outcome, None);
    let logins = hub
        .sim
        .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
        .await;
    assert_eq!(logins[0]["state"], "completed", "{logins}");
    term.message("payment_approved").await;
    assert!(hub.store.member(&phone).await.unwrap().is_none());

    // One sweep reads the journal for the customer's number and finishes the enrollment with
    // the handed-over token.
    let mut vipps_settings = settings.vipps.clone();
    vipps_settings.mode = VippsMode::Remote;
    vipps_settings.base_url = hub.sim.url.clone();
    let vipps = VippsHandle::start(&vipps_settings, vipps_settings.actor_settings())
        .expect("the Vipps client starts");
    let members: Arc<dyn MembershipStore> = Arc::new(hub.store.clone());
    let window = settings.supervisor.late_enrollment_window;
    Follower::default()
        .sweep(&hub.store, members.as_ref(), &vipps, window)
        .await
        .unwrap();
    let member = hub.store.member(&phone).await.unwrap().expect("enrolled");
    assert_enrolled_with_consents(&member);
    let late = hub.store.late_enrollment(&id).await.unwrap().unwrap();
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
    assert_eq!(late.msisdn.as_ref(), Some(&phone));
    hub.assert_journal_closed().await;
}

#[actix_web::test]
async fn a_login_that_starts_after_the_cashier_paid_is_still_followed_to_the_member() {
    let mut settings = fast_settings();
    settings.supervisor.late_enrollment_interval = ms(100);
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    hub.sim.behave(NON_MEMBER, "approve", 150, "ignore").await;
    let phone: Msisdn = NON_MEMBER.parse().unwrap();
    // The Login start takes a second to reach Vipps: the cashier pays before it is answered.
    hub.sim
        .call(
            reqwest::Method::PUT,
            "/faults/login_authenticate",
            Some(json!({"latencyMs": 1_000})),
        )
        .await;

    identify(&hub, &mut term, "1", NON_MEMBER, "non_member").await;
    let (status, body) = hub.command("1", "enroll", json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");

    // Vipps started the Login all the same and asks the customer, who consents.
    let deadline = Instant::now() + PATIENCE;
    let id = loop {
        let logins = hub
            .sim
            .get(&format!("/logins?phoneNumber={NON_MEMBER}"))
            .await;
        let late = match logins[0]["authReqId"].as_str() {
            Some(id) => hub.store.late_enrollment(id).await.unwrap(),
            None => None,
        };
        if let Some(late) = late {
            break late.auth_req_id;
        }
        assert!(
            Instant::now() < deadline,
            "the late Login was never handed to the follower: {logins}"
        );
        tokio::time::sleep(POLL).await;
    };
    hub.sim
        .call(
            reqwest::Method::POST,
            &format!("/logins/{id}/consent"),
            None,
        )
        .await;
    term.message("payment_approved").await;

    let member = wait_member(&hub, &phone, "the member the follower enrolls").await;
    assert_enrolled_with_consents(&member);
    // The member is stored before the follower records the outcome.
    let late = wait_late_outcome(&hub, &id).await;
    assert_eq!(late.outcome.as_deref(), Some("enrolled"));
}

#[actix_web::test]
async fn a_scanner_scan_the_lane_refuses_is_reported_to_the_terminal() {
    use lanehub::config::{ScannerRole, ScannerSettings, ScannerSource};

    let mut settings = fast_settings();
    settings.lanes[0].scanners = vec![ScannerSettings {
        role: ScannerRole::Customer,
        source: ScannerSource::Simulated,
        vid: None,
        pid: None,
        serial: None,
        path: None,
        protocol: None,
        layout: None,
        inter_report_timeout: None,
    }];
    let hub = start(settings).await;
    let mut term = hub.terminal("1").await;
    let scan = |text: String| {
        let url = "/api/v1/lanes/1/test/scanner";
        hub.call(reqwest::Method::POST, url, Some(json!({ "text": text })))
    };
    // The customer's scanner reads the QR: the checkout starts as from the terminal.
    let (status, body) = scan(hub.sim.qr(MEMBER, false).await).await;
    assert_eq!(status, 202, "{body}");
    term.message("member_welcomed").await;
    hub.sim.behave(MEMBER, "ignore", 150, "consent").await;
    pay_and_wait_created(&hub, &mut term, "1").await;

    // Another customer's QR while the payment is out: nobody answers a scanner, so the terminal
    // is told why nothing happened.
    let (status, body) = scan(hub.sim.qr(NON_MEMBER, false).await).await;
    assert_eq!(status, 202, "{body}");
    let rejected = term.event("scan_rejected").await;
    let reason = rejected["data"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("payment"), "{rejected}");
    assert_eq!(
        rejected["snapshot"]["state"], "awaiting_payment",
        "{rejected}"
    );
}
