//! Webhook registration at start: a registration that fails is tried again in the background,
//! with backoff, until it succeeds; meanwhile the receiver refuses deliveries (503) and polling
//! follows payments.

use std::time::Duration;

use lanehub::config::Settings;
use lanehub::sim::faults::FaultConfig;
use lanehub::startup::Application;
use lanehub::vipps::Operation;
use serde_json::Value;
use tokio::time::Instant;

const PATIENCE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(25);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

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
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::load(None, Vec::new()).expect("built-in defaults load");
    settings.api.listen = "127.0.0.1:0".parse().unwrap();
    settings.sim.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = data.path().to_owned();
    // One request per attempt: a hung request outlives the call's deadline, leaving no time for
    // a retry within the attempt.
    settings.vipps.retry_deadline = ms(300);
    settings.vipps.webhook_registration_backoff = ms(50);
    settings.vipps.webhook_registration_max_backoff = ms(100);
    let app = Application::build(settings).expect("lanehub builds");
    let api = format!("http://{}", app.addr());
    let sim = app.simulator().expect("simulator mode");
    let sim_url = sim.base_url();
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
    actix_web::rt::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    assert_eq!(unsigned_delivery(&http, &api).await, 503);

    let ours = format!("{api}/vipps/webhooks");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let hooks: Vec<Value> = http
            .get(format!("{sim_url}/sim/v1/webhooks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if hooks.iter().any(|h| h["url"] == ours.as_str()) {
            break;
        }
        assert!(Instant::now() < deadline, "never registered: {hooks:?}");
        tokio::time::sleep(POLL).await;
    }
    let faults: Value = http
        .get(format!("{sim_url}/sim/v1/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        faults["injectedByOperation"]["webhook_list"]["hang"], 2,
        "{faults}"
    );
    // The secret reached the receiver: deliveries are verified now.
    let deadline = Instant::now() + PATIENCE;
    while unsigned_delivery(&http, &api).await != 401 {
        assert!(
            Instant::now() < deadline,
            "the receiver never got the secret"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The registrations the simulator holds for `url`.
async fn registrations_for(http: &reqwest::Client, sim_url: &str, url: &str) -> Vec<Value> {
    let hooks: Vec<Value> = http
        .get(format!("{sim_url}/sim/v1/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    hooks.into_iter().filter(|h| h["url"] == url).collect()
}

#[actix_web::test]
async fn a_registration_whose_answer_was_lost_leaves_exactly_one_registration_that_verifies() {
    let data = tempfile::tempdir().unwrap();
    let mut settings = Settings::load(None, Vec::new()).expect("built-in defaults load");
    settings.api.listen = "127.0.0.1:0".parse().unwrap();
    settings.sim.listen = "127.0.0.1:0".parse().unwrap();
    settings.store.data_dir = data.path().to_owned();
    settings.vipps.webhook_registration_backoff = ms(50);
    settings.vipps.webhook_registration_max_backoff = ms(100);
    let app = Application::build(settings).expect("lanehub builds");
    let api = format!("http://{}", app.addr());
    let sim = app.simulator().expect("simulator mode");
    let sim_url = sim.base_url();
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
    actix_web::rt::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let ours = format!("{api}/vipps/webhooks");

    // Registered once the receiver has a secret (an unsigned delivery is then refused as such).
    let deadline = Instant::now() + PATIENCE;
    while unsigned_delivery(&http, &api).await != 401 {
        assert!(Instant::now() < deadline, "never registered");
        tokio::time::sleep(POLL).await;
    }
    let faults = state.faults.view();
    assert_eq!(
        faults.injected_by_operation["webhook_register"].drop, 1,
        "the first registration's answer was lost: {faults:?}"
    );
    let registered = registrations_for(&http, &sim_url, &ours).await;
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
        let attempts: Vec<Value> = http
            .get(format!(
                "{sim_url}/sim/v1/webhooks/deliveries?webhookId={id}"
            ))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if let Some(first) = attempts.first() {
            assert_eq!(first["outcome"], "delivered", "{attempts:?}");
            break;
        }
        assert!(Instant::now() < deadline, "nothing was delivered");
        tokio::time::sleep(POLL).await;
    }
}
