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

mod checkout;
mod late_enrollment;
mod recovery;
mod vipps_faults;

use common::app::{TestApp, assert_closed_with, fast_settings, lanes, launch, start, start_on};
use common::snapshot::{captured, code};
use common::{ADMIN, AMOUNT, DECLINER, IGNORER, MEMBER, NON_MEMBER, PATIENCE, POLL, ms};

impl TestApp {
    /// Asserts that the database file holds no Login token (in journal consents or late
    /// enrollments) and returns how many consent records the journal keeps.
    fn assert_no_login_token_stored(&self) -> i64 {
        let db = rusqlite::Connection::open(self.store.path()).unwrap();
        let count = |sql: &str| common::sql_int(&db, sql);
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

    /// The payments index's row of `reference`, which must be there.
    async fn indexed(&self, reference: &str) -> lanehub::store::PaymentRecord {
        let row = self.store.payment(&reference.parse().unwrap()).await;
        row.unwrap()
            .unwrap_or_else(|| panic!("{reference} is not indexed"))
    }

    /// The member `phone`, who must be in the club (`what` says who).
    async fn stored_member(&self, phone: &Msisdn, what: &str) -> lanehub::store::Member {
        let member = self.store.member(phone).await.unwrap();
        member.unwrap_or_else(|| panic!("{what} is not stored"))
    }

    /// The Logins Vipps holds for `phone`.
    async fn logins(&self, phone: &str) -> Value {
        self.sim.get(&format!("/logins?phoneNumber={phone}")).await
    }

    /// Asserts Vipps holds one Login for `phone`, in `state`; that Login.
    async fn only_login(&self, phone: &str, state: &str) -> Value {
        let logins = self.logins(phone).await;
        assert_eq!(logins.as_array().unwrap().len(), 1, "{logins}");
        assert_eq!(logins[0]["state"], state, "{logins}");
        logins[0].clone()
    }
}

/// Journals a session on `lane` in which the member was identified and [`AMOUNT`] requested
/// (the create's key written), then `more`; the session and the payment's reference.
async fn journal_payment_requested(
    store: &Store,
    lane: &lanehub::domain::LaneId,
    more: Vec<lanehub::session::JournalRecord>,
) -> (
    lanehub::session::SessionId,
    lanehub::domain::PaymentReference,
) {
    use lanehub::domain::Amount;
    use lanehub::session::{
        JournalRecord, KeyedOperation, Membership, SessionId, payment_reference,
    };
    let session = SessionId::from_uuid(uuid::Uuid::new_v4());
    let reference = payment_reference(lane, &session);
    let requested = [
        JournalRecord::SessionStarted,
        JournalRecord::CustomerIdentified {
            msisdn: MEMBER.parse().unwrap(),
            membership: Membership::Member,
        },
        JournalRecord::PaymentRequested {
            reference: reference.clone(),
            idempotency_key: KeyedOperation::Create.key(&session, &reference),
            amount: Amount::nok(AMOUNT),
            msisdn: MEMBER.parse().unwrap(),
            description: "Groceries".into(),
            receipt_number: None,
            attempt: 1,
        },
    ];
    for record in requested.into_iter().chain(more) {
        store
            .append(lane, session.as_str(), record.kind(), &record)
            .await
            .unwrap();
    }
    (session, reference)
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

/// Starts lanehub on `settings` (see [`start`]) and opens lane 1's terminal.
async fn start_with_terminal(settings: Settings) -> (TestApp, Terminal) {
    let hub = start(settings).await;
    let term = hub.terminal("1").await;
    (hub, term)
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
