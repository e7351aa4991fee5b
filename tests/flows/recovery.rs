//! lanehub's own failures: a journal that cannot be written, a full store, lane panics and the
//! restart budget, crashes at each step of a checkout recovered from the journal, and retention.

use super::*;
use crate::late_enrollment::assert_enrolled_with_consents;

/// Makes the database refuse journal records of `kind`, as a failing disk would, until
/// [`accept_records`].
fn refuse_records(hub: &TestApp, kind: &str) -> rusqlite::Connection {
    let db = rusqlite::Connection::open(hub.store.path()).unwrap();
    db.execute_batch(&format!(
        "CREATE TRIGGER refuse_{kind} BEFORE INSERT ON journal WHEN NEW.kind = '{kind}'
         BEGIN SELECT RAISE(ABORT, 'disk trouble'); END;"
    ))
    .unwrap();
    db
}

fn accept_records(db: &rusqlite::Connection, kind: &str) {
    db.execute_batch(&format!("DROP TRIGGER refuse_{kind}"))
        .unwrap();
}

/// A member on lane 1 pays while the database refuses journal records of `kind`.
async fn member_pays_while_refusing(kind: &str) -> (TestApp, Terminal, rusqlite::Connection) {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    let db = refuse_records(&hub, kind);
    let (status, body) = hub.pay("1").await;
    assert_eq!(status, 200, "{body}");
    (hub, term, db)
}

#[actix_web::test]
async fn a_payment_whose_journal_record_cannot_be_written_is_never_sent() {
    // The database refuses exactly the record that must precede the payment request.
    let (hub, mut term, db) = member_pays_while_refusing("payment_requested").await;
    // A store fault, not Vipps': nothing is final and the session waits.
    let waiting = term.message("store_unavailable").await;
    assert_eq!(waiting["state"], "awaiting_payment_creation");
    assert!(
        hub.sim.payments().await.is_empty(),
        "a payment the journal does not know of reached Vipps"
    );

    // The database takes the record again: the same checkout carries on by itself and pays.
    accept_records(&db, "payment_requested");
    term.message("payment_approved").await;
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    term.assert_saw(&["store_unavailable", "payment_requested", "payment_approved"]);
}

#[actix_web::test]
async fn a_checkout_is_told_ended_only_once_its_end_is_on_disk() {
    // The database refuses the record of the checkout's end, and only that one.
    let (hub, mut term, db) = member_pays_while_refusing("session_ended").await;
    hub.sim
        .wait_payments("the payment captured", |p| {
            p.len() == 1 && captured(&p[0]) == AMOUNT
        })
        .await;
    // Paid at Vipps, but a restart now would recover the checkout from the journal: the lane
    // still shows it as it was, tells no outcome and starts no other checkout.
    let lane = held_after_refusals(&hub, 0.0, "awaiting_capture").await;
    let (status, body) = hub.scan("1", &hub.sim.qr(NON_MEMBER, false).await).await;
    assert_eq!(status, 409, "{body}");

    // The lane fails meanwhile: its next incarnation recovers the checkout from the journal and
    // holds its end too.
    let (status, _) = hub
        .call(reqwest::Method::POST, "/api/v1/lanes/1/test/panic", None)
        .await;
    assert_eq!(status, 202);
    term.event("down").await;
    term.event("up").await;
    let before = refused_writes(&hub).await;
    let recovered = term.message("session_recovered").await;
    assert_eq!(recovered["session"]["id"], lane["session"]["id"]);
    assert!(recovered["lastSession"].is_null(), "{recovered}");
    // (A recovered payment is read back from `awaiting_payment`, which it shows until saved.)
    held_after_refusals(&hub, before, "awaiting_payment").await;

    // The end reaches the disk: only now is the cashier told.
    accept_records(&db, "session_ended");
    term.message("payment_approved").await;
    let lane = hub.lane("1").await;
    assert_eq!(
        (&lane["state"], &lane["lastSession"]["outcome"]),
        (&json!("idle"), &json!("paid")),
        "{lane}"
    );
    assert_eq!(captured(&hub.sim.only_payment().await), AMOUNT);
    hub.assert_journal_closed().await;
}

/// How many store writes the database refused with a constraint (the tests' triggers).
async fn refused_writes(hub: &TestApp) -> f64 {
    hub.metric("lanehub_store_errors_total", &[("kind", "constraint")])
        .await
        .unwrap_or(0.0)
}

/// Waits until the database refused more than `than` writes (lane 1's end), then checks that
/// lane 1 still shows its paid checkout as it was (in `state`), without an outcome; its
/// snapshot then.
async fn held_after_refusals(hub: &TestApp, than: f64, state: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    while refused_writes(hub).await <= than {
        assert!(Instant::now() < deadline, "the end was never refused");
        tokio::time::sleep(POLL).await;
    }
    let lane = hub.lane("1").await;
    assert_eq!(lane["state"], state, "{lane}");
    assert!(lane["lastSession"].is_null(), "{lane}");
    assert_ne!(lane["message"]["code"], "payment_approved", "{lane}");
    lane
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

/// lanehub with lane 1's terminal, where the member was identified and the payment sent; the
/// member approves it after `delay_ms`.
async fn member_paying_in(delay_ms: u64) -> (TestApp, Terminal) {
    let hub = start(fast_settings()).await;
    hub.sim.behave(MEMBER, "approve", delay_ms, "consent").await;
    let mut term = hub.terminal("1").await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;
    hub.pay("1").await;
    hub.wait_lane("1", "sent the payment", |s| {
        s["state"] == "awaiting_payment"
    })
    .await;
    (hub, term)
}

async fn readyz(hub: &TestApp) -> (u16, Value) {
    hub.call(reqwest::Method::GET, "/readyz", None).await
}

#[actix_web::test]
async fn a_payment_approved_while_the_store_is_full_is_captured_once_the_store_is_back() {
    let (hub, mut term) = member_paying_in(600).await;

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
    let (hub, mut term) = member_paying_in(300).await;
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
    hub.sim.approve(&reference).await;
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
    // The journal as a crash right after the create's key was written leaves it: Vipps never
    // saw the request.
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    let lane: lanehub::domain::LaneId = "1".parse().unwrap();
    let (session, _) = journal_payment_requested(&store, &lane, vec![]).await;
    drop(store);
    recover_a_create_that_never_left(data, &session).await;
}

/// Starts lanehub on `data`, whose open `session` requested a payment that never reached Vipps,
/// and checks what the recovered session did; the lane as it ended.
async fn recover_a_create_that_never_left(
    data: tempfile::TempDir,
    session: &lanehub::session::SessionId,
) -> Value {
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
    ended
}

#[actix_web::test]
async fn a_crash_right_after_the_customer_consented_still_enrolls_the_member() {
    use lanehub::config::VippsMode;
    use lanehub::domain::LaneId;
    use lanehub::session::{JournalRecord, Membership, SessionId};
    use lanehub::sim::Simulator;
    use lanehub::vipps::actor::VippsHandle;
    use lanehub::vipps::convert::login_access_token;
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
    let token = loop {
        tokio::time::sleep(auth.interval).await;
        match vipps.login_token(&auth.auth_req_id).await.unwrap() {
            LoginPoll::Pending | LoginPoll::SlowDown => {}
            LoginPoll::Success(token) => break token,
            other => panic!("the customer consents: {other:?}"),
        }
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

    let member = hub.stored_member(&phone, "the consented member").await;
    assert_enrolled_with_consents(&member);
    // One Login at Vipps, completed; it was never polled for again after the restart.
    hub.only_login(NON_MEMBER, "completed").await;

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
    let count = |sql: &str| common::sql_int(&db, sql);
    assert_eq!(count("SELECT count(*) FROM sessions"), 1);
}

#[actix_web::test]
async fn journals_of_this_and_of_older_versions_recover_the_identified_customer() {
    use lanehub::domain::Amount;
    use lanehub::session::{JournalRecord, KeyedOperation, Membership, SessionId};
    let phone: lanehub::domain::Msisdn = MEMBER.parse().unwrap();
    let identified = Membership::Member;
    // Older versions journal a checkout's start and its customer apart; this one in one record.
    let journals = [
        vec![
            JournalRecord::SessionStarted,
            JournalRecord::CustomerIdentified {
                msisdn: phone.clone(),
                membership: identified,
            },
        ],
        vec![JournalRecord::SessionStartedIdentified {
            msisdn: phone.clone(),
            membership: identified,
        }],
    ];
    for started in journals {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open(data.path()).await.unwrap();
        let lane: lanehub::domain::LaneId = "1".parse().unwrap();
        let session = SessionId::from_uuid(uuid::Uuid::new_v4());
        let reference = lanehub::session::payment_reference(&lane, &session);
        // A create that never reached Vipps.
        let requested = JournalRecord::PaymentRequested {
            idempotency_key: KeyedOperation::Create.key(&session, &reference),
            reference,
            amount: Amount::nok(AMOUNT),
            msisdn: phone.clone(),
            description: "Groceries".into(),
            receipt_number: None,
            attempt: 1,
        };
        for record in started.iter().chain([&requested]) {
            let kind = record.kind();
            store
                .append(&lane, session.as_str(), kind, record)
                .await
                .unwrap();
        }
        drop(store);

        // The session ends with its customer as the journal knew them.
        let ended = recover_a_create_that_never_left(data, &session).await;
        assert_eq!(ended["lastSession"]["customer"]["member"], true, "{ended}");
    }
}
