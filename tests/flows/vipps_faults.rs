//! Vipps misbehaving: unavailable, check-in failing, a circuit open while a create may have
//! reached Vipps, duplicate, out-of-order and forged webhooks, and a payment that reaches Vipps
//! after its session gave up.

use super::*;
use lanehub::store::PaymentIndexState;

/// [`fast_settings`] that give up on a Vipps call after `retry_deadline` (retrying every 50 to
/// 100 ms) and open the circuit at the first failure, for `cool_down`.
fn giving_up_after(retry_deadline: Duration, cool_down: Duration) -> Settings {
    let mut settings = fast_settings();
    settings.vipps.retry_deadline = retry_deadline;
    settings.vipps.retry_initial_backoff = ms(50);
    settings.vipps.retry_max_backoff = ms(100);
    settings.vipps.circuit_failure_threshold = 1;
    settings.vipps.circuit_cool_down = cool_down;
    settings
}

#[actix_web::test]
async fn vipps_unavailable_sends_the_cashier_to_another_payment_method() {
    // The cool-down is long enough that the circuit is still open when the cashier presses pay
    // on a slow machine.
    let mut settings = giving_up_after(ms(500), ms(4_000));
    // Access tokens expire soon, so that lanehub needs a new one while Vipps is down.
    let token_lifetime = ms(1_500);
    settings.sim.token_lifetime = token_lifetime;
    let (hub, mut term) = start_with_terminal(settings).await;
    let qr = hub.sim.qr(MEMBER, true).await;
    // The webhook registration at start must not meet the faults below.
    hub.sim.wait_webhook_registered().await;

    // Every Vipps call fails, the access token too. The QR exchange failing does not stop the
    // checkout (the clear-text number identifies the customer), nor does the check-in.
    hub.sim.faults("", json!({"serverErrorRate": 1.0})).await;
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
    hub.sim.clear_faults("").await;
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
async fn a_create_that_may_have_reached_vipps_is_followed_while_the_circuit_is_open() {
    let mut settings = giving_up_after(ms(2000), ms(1000));
    settings.vipps.request_timeout = ms(300);
    let (hub, mut term) = start_with_terminal(settings).await;
    identify(&hub, &mut term, "1", MEMBER, "member_welcomed").await;

    // Vipps creates the payment but its answer never comes; the timeout opens the circuit, so the
    // retry is refused locally. The payment exists: the cashier must not be sent elsewhere.
    let hang = json!({"hangNext": 1, "hangMs": 5_000});
    hub.sim.faults("payment_create", hang).await;
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
async fn duplicate_out_of_order_and_forged_webhooks_still_make_one_payment_paid_once() {
    let (hub, mut term) = start_with_terminal(fast_settings()).await;
    // Every delivery is sent twice, and each is held back behind the next.
    hub.sim
        .faults(
            "",
            json!({"webhookDuplicateRate": 1.0, "webhookOutOfOrderRate": 1.0}),
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
    hub.sim.approve(&reference).await;
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
    // The faults really applied: the authorisation reached lanehub more than once. Held back for
    // a next delivery that never comes, it leaves 500 ms later, perhaps after polling saw it.
    let path =
        format!("/webhooks/deliveries?reference={reference}&event=epayments.payment.authorized.v1");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let deliveries = hub.sim.get(&path).await;
        if deliveries.as_array().is_some_and(|d| d.len() >= 2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "duplicated AUTHORIZED deliveries: {deliveries}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A payment whose create was journalled, whose session ended "did not reach Vipps", and which
/// the payments index still holds as `REQUESTED`.
async fn seed_unconfirmed(store: &Store, lane: &lanehub::domain::LaneId) -> String {
    use lanehub::domain::Amount;
    use lanehub::session::{FailReason, JournalRecord, Outcome};
    let ended = JournalRecord::SessionEnded {
        outcome: Outcome::Failed {
            reason: FailReason::PaymentNotCreated,
        },
    };
    let (session, reference) = journal_payment_requested(store, lane, vec![ended]).await;
    store
        .record_payment(
            &reference,
            lane,
            session.as_str(),
            Amount::nok(AMOUNT),
            PaymentIndexState::Requested,
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
        let late_row = hub.indexed(&late).await;
        let never_row = hub.indexed(&never).await;
        let requested = PaymentIndexState::Requested;
        if late_row.state != requested && never_row.state != requested {
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
    assert_eq!(late_state.as_str(), at_vipps["state"].as_str().unwrap());
    assert_eq!(captured(&at_vipps), 0);
    // The other one never came: after the window it is known not to exist.
    assert_eq!(never_state, PaymentIndexState::NotCreated);
}
