//! Webhook registration at start: a registration that fails is tried again in the background,
//! with backoff, until it succeeds; meanwhile the receiver refuses deliveries (503) and polling
//! follows payments.

use lanehub::sim::faults::FaultConfig;
use lanehub::startup::Application;
use lanehub::vipps::Operation;
use serde_json::Value;
use tokio::time::Instant;

use crate::common::app::{launch, test_settings};
use crate::common::sim::SimControl;
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
        "epayments.payment.created.v1",
        serde_json::json!({
            "msn": "123456",
            "reference": "lh-1-0123456789abcdef",
            "pspReference": "psp-1",
            "name": "CREATED",
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
