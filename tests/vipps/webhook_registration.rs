//! Webhook registration at start: a registration that fails is tried again in the background,
//! with backoff, until it succeeds; meanwhile the receiver refuses deliveries (503) and polling
//! follows payments. lanehub registers for `SUBSCRIBED_WEBHOOK_EVENTS` only, replaces a
//! registration for other events, and still takes in any known event it is sent.

use std::time::{Duration, SystemTime};

use lanehub::backoff::Backoff;
use lanehub::shutdown::Shutdown;
use lanehub::sim::faults::FaultConfig;
use lanehub::sim::webhooks::delivery::Target;
use lanehub::startup::Application;
use lanehub::store::Store;
use lanehub::vipps::models::RegisterWebhookRequest;
use lanehub::vipps::registration::register;
use lanehub::vipps::{
    Operation, SUBSCRIBED_WEBHOOK_EVENTS, VippsClient, VippsHandle, WEBHOOK_EVENTS, signature,
};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use crate::common::app::{launch, test_settings};
use crate::common::sim::SimControl;
use crate::common::vipps::Sim;
use crate::common::{PATIENCE, POLL, ms};

/// What lanehub's webhook endpoint answers an unsigned delivery: 503 before registration (no
/// secret yet), 401 after (the signature is checked).
async fn unsigned_delivery(http: &reqwest::Client, api: &str) -> u16 {
    http.post(format!("{api}/vipps/webhooks"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[actix_web::test]
async fn a_failed_registration_is_retried_until_it_succeeds() {
    let mut settings = test_settings();
    // One request per attempt: a hung request outlives the call's deadline, leaving no time for
    // a retry within the attempt.
    settings.vipps.retry_deadline = ms(300);
    settings.vipps.webhook_registration_backoff = ms(50);
    settings.vipps.webhook_registration_max_backoff = ms(100);
    let app = Application::build(settings.clone()).expect("lanehub builds");
    let sim = app.simulator().expect("simulator mode");
    // The registration task was only spawned: it has not run yet, so its first two attempts
    // (each starts by listing the webhooks) hang past their deadline.
    let hang = FaultConfig {
        hang_next: 2,
        hang_ms: Some(5_000),
        ..FaultConfig::default()
    };
    sim.simulator
        .state()
        .faults
        .set_operation(Operation::WebhookList, hang)
        .unwrap();
    let app = launch(app, &settings, None);
    let (http, api) = (&app.http, app.address.as_str());
    assert_eq!(unsigned_delivery(http, api).await, 503);

    let ours = format!("{api}/vipps/webhooks");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let hooks = registrations_for(&app.sim, &ours).await;
        if !hooks.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "never registered: {hooks:?}");
        tokio::time::sleep(POLL).await;
    }
    let faults = app.sim.get("/faults").await;
    assert_eq!(
        faults["injectedByOperation"]["webhook_list"]["hang"], 2,
        "{faults}"
    );
    // The secret reached the receiver: deliveries are verified now.
    let deadline = Instant::now() + PATIENCE;
    while unsigned_delivery(http, api).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the receiver never got the secret"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The registrations the simulator holds for `url`.
async fn registrations_for(sim: &SimControl, url: &str) -> Vec<Value> {
    let hooks = sim.get("/webhooks").await;
    let hooks = hooks.as_array().expect("a list of registrations");
    hooks.iter().filter(|h| h["url"] == url).cloned().collect()
}

#[actix_web::test]
async fn a_registration_whose_answer_was_lost_leaves_exactly_one_registration_that_verifies() {
    let mut settings = test_settings();
    settings.vipps.webhook_registration_backoff = ms(50);
    settings.vipps.webhook_registration_max_backoff = ms(100);
    let app = Application::build(settings.clone()).expect("lanehub builds");
    let sim = app.simulator().expect("simulator mode");
    let state = sim.simulator.state().clone();
    // Vipps creates the first registration, but its answer (with the secret) never arrives.
    let lost = FaultConfig {
        drop_next: 1,
        ..FaultConfig::default()
    };
    state
        .faults
        .set_operation(Operation::WebhookRegister, lost)
        .unwrap();
    let app = launch(app, &settings, None);
    let (http, api) = (&app.http, app.address.as_str());
    let ours = format!("{api}/vipps/webhooks");

    // Registered once the receiver has a secret (an unsigned delivery is then refused as such).
    let deadline = Instant::now() + PATIENCE;
    while unsigned_delivery(http, api).await != 401 {
        assert!(Instant::now() < deadline, "never registered");
        tokio::time::sleep(POLL).await;
    }
    let faults = state.faults.view();
    assert_eq!(
        faults.injected_by_operation["webhook_register"].drop, 1,
        "the first registration's answer was lost: {faults:?}"
    );
    let registered = registrations_for(&app.sim, &ours).await;
    assert_eq!(
        registered.len(),
        1,
        "one registration remains: {registered:?}"
    );

    // A delivery of that registration verifies: lanehub holds its secret.
    let id = registered[0]["id"].as_str().unwrap().to_owned();
    state.webhooks.publish(
        "123456",
        "epayments.payment.authorized.v1",
        serde_json::json!({
            "msn": "123456",
            "reference": "lh-1-0123456789abcdef",
            "pspReference": "psp-1",
            "name": "AUTHORIZED",
            "amount": {"currency": "NOK", "value": 100},
            "timestamp": "2026-12-06T22:00:00Z",
            "success": true
        }),
    );
    let deadline = Instant::now() + PATIENCE;
    loop {
        let path = format!("/webhooks/deliveries?webhookId={id}");
        let attempts = app.sim.get(&path).await;
        if let Some(first) = attempts.as_array().and_then(|a| a.first()) {
            assert_eq!(first["outcome"], "delivered", "{attempts:?}");
            break;
        }
        assert!(Instant::now() < deadline, "nothing was delivered");
        tokio::time::sleep(POLL).await;
    }
}

fn sorted(events: &[impl AsRef<str>]) -> Vec<String> {
    let mut v: Vec<String> = events.iter().map(|e| e.as_ref().to_owned()).collect();
    v.sort();
    v
}

#[actix_web::test]
async fn a_registration_for_other_events_is_replaced_and_one_for_ours_is_kept() {
    let sim = Sim::start(|_| {});
    let client = VippsClient::new(&sim.vipps).unwrap();
    let token = client.fetch_token().await.unwrap();
    let url = "http://127.0.0.1:9/vipps/webhooks";
    // An older lanehub's registration for every known event, its id and secret held.
    let all = RegisterWebhookRequest {
        url: url.to_owned(),
        events: WEBHOOK_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
    };
    let old = client.register_webhook(&token, &all).await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(data.path()).await.unwrap();
    store
        .put_secret_setting("webhook.secret", &old.secret)
        .await
        .unwrap();
    store.put_setting("webhook.id", &old.id).await.unwrap();
    store.put_setting("webhook.url", url).await.unwrap();

    let vipps = VippsHandle::with_client(client.clone(), sim.vipps.actor_settings(), ms(5_000));
    let backoff = Backoff {
        initial: ms(50),
        max: ms(100),
    };
    let shutdown = Shutdown::default();
    let secret = register(&vipps, &store, url, backoff, &shutdown)
        .await
        .expect("registered");
    let hooks = client.list_webhooks(&token).await.unwrap();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_ne!(hooks[0].id, old.id, "the old registration was deleted");
    assert_eq!(sorted(&hooks[0].events), sorted(&SUBSCRIBED_WEBHOOK_EVENTS));
    assert_ne!(secret.expose_secret(), old.secret.expose_secret());
    assert_eq!(
        store.setting("webhook.id").await.unwrap().as_deref(),
        Some(hooks[0].id.as_str())
    );

    // At the next start the registration for lanehub's events is reused as it is.
    let again = register(&vipps, &store, url, backoff, &shutdown)
        .await
        .expect("registered");
    let after = client.list_webhooks(&token).await.unwrap();
    assert_eq!(
        after.iter().map(|w| &w.id).collect::<Vec<_>>(),
        [&hooks[0].id]
    );
    assert_eq!(again.expose_secret(), secret.expose_secret());
    sim.server.stop().await;
}

#[actix_web::test]
async fn a_known_event_lanehub_did_not_subscribe_to_is_still_taken_in_once() {
    let settings = test_settings();
    let app = Application::build(settings.clone()).expect("lanehub builds");
    let app = launch(app, &settings, None);
    let (http, api) = (&app.http, app.address.as_str());
    let deadline = Instant::now() + PATIENCE;
    while unsigned_delivery(http, api).await != 401 {
        assert!(Instant::now() < deadline, "never registered");
        tokio::time::sleep(POLL).await;
    }
    let secret = app
        .store
        .secret_setting("webhook.secret")
        .await
        .unwrap()
        .expect("the secret is stored");
    let url = format!("{api}/vipps/webhooks");
    let target = Target::new("wh".into(), url.parse().unwrap(), String::new());
    let body = r#"{"msn":"123456","reference":"lh-1-00000000deadbeef","pspReference":"9","name":"CAPTURED","amount":{"currency":"NOK","value":100},"timestamp":"2026-12-07T02:00:00Z","success":true}"#;
    let deliver = || {
        let h = signature::sign(
            secret.expose_secret(),
            &target.path_and_query,
            &target.host,
            &httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(1)),
            body.as_bytes(),
        );
        http.post(&url)
            .header("x-ms-date", h.date)
            .header("x-ms-content-sha256", h.content_sha256)
            .header("authorization", h.authorization)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let counted = |verdict: &'static str| {
        let app = &app;
        async move {
            let labels = [("event", "captured"), ("verdict", verdict)];
            app.metric("lanehub_webhooks_received_total", &labels)
                .await
                .unwrap_or(0.0)
        }
    };
    let before = (
        counted("unknown_reference").await,
        counted("duplicate").await,
    );
    assert_eq!(deliver().await.unwrap().status(), 200);
    assert_eq!(
        deliver().await.unwrap().status(),
        200,
        "a repeat is answered"
    );
    // No lane owns the payment; the repeat is known as one.
    assert!(counted("unknown_reference").await > before.0);
    assert!(counted("duplicate").await > before.1);
}
