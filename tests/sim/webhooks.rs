//! Black-box tests of the simulator's Webhooks API and its deliveries: registration rules,
//! signatures that verify as Vipps documents them, order per registration, retries (hurried by
//! moving the simulator's clock) and giving up. A tiny actix-web receiver records what arrives;
//! waiting for the delivery tasks is a short bounded poll.

use std::time::Duration;

use lanehub::config::{SimMerchant, SimSettings};
use lanehub::sim::SimServer;
use lanehub::vipps::signature;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::openapi;
use crate::common::sim::{Answer, Merchant, SimControl, serve_simulator, store_payment};
use crate::receiver::{Received, Receiver};

const KARI: &str = "4791234567"; // approves after 2 s
const IVAR: &str = "4790000002"; // ignores
const WEBHOOKS: &str = "/webhooks/v1/webhooks";

/// Polls `f` every 10 ms for up to 5 s: deliveries run on their own tasks.
async fn until<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..500 {
        if let Some(t) = f().await {
            return t;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

struct Sim {
    server: SimServer,
    merchant: Merchant,
    control: SimControl,
}

const OTHER_MSN: &str = "654321";

async fn start(customize: impl FnOnce(&mut SimSettings)) -> Sim {
    let server = serve_simulator(|settings| {
        settings.sim.rate_limits = false;
        settings.sim.merchants.push(SimMerchant {
            name: "Other Store".into(),
            client_id: "other-client".into(),
            client_secret: "other-secret".into(),
            subscription_key: "other-subscription-key".into(),
            merchant_serial_number: OTHER_MSN.into(),
        });
        customize(&mut settings.sim);
    });
    Sim {
        merchant: Merchant::new(server.base_url()).await,
        control: SimControl::new(server.base_url()),
        server,
    }
}

impl Sim {
    async fn token_for(&self, id: &str, secret: &str, key: &str) -> String {
        let req = self
            .merchant
            .http
            .post(format!("{}/accesstoken/get", self.merchant.base))
            .header("client_id", id)
            .header("client_secret", secret)
            .header("Ocp-Apim-Subscription-Key", key);
        Answer::of(req).await.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    fn call(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.merchant.call(method, path)
    }

    /// The merchant's registrations.
    async fn list(&self) -> Answer {
        Answer::of(self.call(Method::GET, WEBHOOKS)).await
    }

    async fn register(&self, url: &str, events: &[&str]) -> Answer {
        let body = json!({"url": url, "events": events});
        Answer::of(self.call(Method::POST, WEBHOOKS).json(&body)).await
    }

    /// Registers and returns (id, secret).
    async fn registered(&self, url: &str, events: &[&str]) -> (String, String) {
        let res = self.register(url, events).await;
        assert_eq!(res.status, 201, "{}", res.body);
        (
            res.body["id"].as_str().expect("id").to_owned(),
            res.body["secret"].as_str().expect("secret").to_owned(),
        )
    }

    async fn create(&self, reference: &str, phone: &str) {
        let res = self
            .call(Method::POST, "/epayment/v1/payments")
            .header("Idempotency-Key", format!("create-{reference}"))
            .json(&store_payment(reference, phone, 1000));
        assert_eq!(Answer::of(res).await.status, 201);
    }

    async fn modify(&self, reference: &str, op: &str, key: &str, body: Value) {
        let res = self
            .call(
                Method::POST,
                &format!("/epayment/v1/payments/{reference}/{op}"),
            )
            .header("Idempotency-Key", key)
            .json(&body);
        assert_eq!(Answer::of(res).await.status, 200);
    }

    async fn advance(&self, ms: u64) {
        self.control.advance(ms).await;
    }

    async fn deliveries(&self, query: &str) -> Vec<Value> {
        let log = self
            .control
            .get(&format!("/webhooks/deliveries{query}"))
            .await;
        log.as_array().cloned().unwrap_or_default()
    }
}

/// Every ePayment event lanehub subscribes to.
fn all_payment_events() -> Vec<&'static str> {
    let events = lanehub::vipps::WEBHOOK_EVENTS.iter().copied();
    events.filter(|e| e.starts_with("epayments.")).collect()
}

#[actix_web::test]
async fn registration_api_validates_lists_and_deletes() {
    let sim = start(|_| {}).await;
    let url = "https://example.com/vipps/webhooks?store=1";
    let (id, secret) = sim
        .registered(url, &["epayments.payment.captured.v1"])
        .await;
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert!(secret.len() >= 32);

    let list = sim.list().await;
    assert_eq!(list.status, 200);
    assert_eq!(
        list.body,
        json!({"webhooks": [{"id": id, "url": url, "events": ["epayments.payment.captured.v1"]}]})
    );
    // Another merchant sees only its own.
    let other = sim
        .token_for("other-client", "other-secret", "other-subscription-key")
        .await;
    let theirs = Answer::of(
        sim.merchant
            .http
            .get(format!("{}{WEBHOOKS}", sim.merchant.base))
            .bearer_auth(&other)
            .header("Ocp-Apim-Subscription-Key", "other-subscription-key"),
    )
    .await;
    assert_eq!(theirs.body, json!({"webhooks": []}));

    // Validation, each naming the field.
    let cases: [(Value, &str); 9] = [
        (
            json!({"url": "http://example.com/x", "events": all_payment_events()}),
            "url",
        ),
        (
            json!({"url": "ftp://127.0.0.1/x", "events": all_payment_events()}),
            "url",
        ),
        (
            json!({"url": "/relative", "events": all_payment_events()}),
            "url",
        ),
        (json!({"events": all_payment_events()}), "url"),
        (json!({"url": url}), "events"),
        (json!({"url": url, "events": []}), "events"),
        (
            json!({"url": url, "events": ["epayments.payment.captured.v1", "epayments.payment.paid.v1"]}),
            "events[1]",
        ),
        (
            json!({"url": url, "events": "epayments.payment.captured.v1"}),
            "events",
        ),
        (
            json!({"url": url, "events": all_payment_events(), "secret": "mine"}),
            "secret",
        ),
    ];
    for (body, field) in cases {
        let res = Answer::of(sim.call(Method::POST, WEBHOOKS).json(&body)).await;
        assert_eq!(
            (res.status, res.fields()),
            (400, vec![field.to_owned()]),
            "{body}"
        );
        assert_eq!(res.body["instance"], WEBHOOKS);
    }
    let res = Answer::of(
        sim.call(Method::POST, WEBHOOKS)
            .header("content-type", "application/json")
            .body("{"),
    )
    .await;
    assert_eq!((res.status, res.fields()), (400, vec!["body".to_owned()]));
    let res = Answer::of(
        sim.call(Method::POST, WEBHOOKS)
            .header("Vipps-System-Name", "n".repeat(31))
            .json(&json!({"url": url, "events": all_payment_events()})),
    )
    .await;
    assert_eq!(
        (res.status, res.fields()),
        (400, vec!["Vipps-System-Name".to_owned()])
    );
    // Loopback may use plain http.
    for ok in [
        "http://127.0.0.1:9/x",
        "http://localhost:9/x",
        "http://[::1]:9/x",
    ] {
        sim.registered(ok, &["epayments.payment.created.v1"]).await;
    }
    // At most 5 per event: captured has 1, created has 3.
    sim.registered(url, &["epayments.payment.created.v1"]).await;
    sim.registered(url, &["epayments.payment.created.v1"]).await;
    let res = sim
        .register(
            url,
            &[
                "epayments.payment.created.v1",
                "epayments.payment.captured.v1",
            ],
        )
        .await;
    assert_eq!((res.status, res.fields()), (400, vec!["events".to_owned()]));

    // Delete.
    let del = |id: String| Answer::of(sim.call(Method::DELETE, &format!("{WEBHOOKS}/{id}")));
    assert_eq!(del(id.clone()).await.status, 204);
    assert_eq!(del(id.clone()).await.status, 404);
    let res = del("not-a-uuid".into()).await;
    assert_eq!((res.status, res.fields()), (400, vec!["id".to_owned()]));
    let list = sim.list().await;
    assert!(
        list.body["webhooks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["id"] != id.as_str())
    );
    assert_eq!(
        Answer::of(sim.call(Method::PUT, WEBHOOKS)).await.status,
        405
    );
    let unauthorised = format!("{}{WEBHOOKS}", sim.merchant.base);
    assert_eq!(
        Answer::of(sim.merchant.http.get(unauthorised)).await.status,
        401
    );

    // The control API lists every merchant's registrations, without secrets.
    let all = sim.control.get("/webhooks").await;
    let all = all.as_array().unwrap().clone();
    assert_eq!(all.len(), 5);
    assert!(
        all.iter()
            .all(|w| w.get("secret").is_none() && w["msn"] == "123456")
    );
}

#[actix_web::test]
async fn deliveries_are_signed_complete_and_in_order() {
    let sim = start(|_| {}).await;
    let rx = Receiver::start(0).await;
    let url = format!("{}/hooks/vipps?lane=1", rx.base);
    let (id, secret) = sim.registered(&url, &all_payment_events()).await;
    let captured_only = format!("{}/captured", rx.base);
    let (id2, secret2) = sim
        .registered(&captured_only, &["epayments.payment.captured.v1"])
        .await;

    sim.create("hook-00001", KARI).await;
    sim.advance(2_000).await;
    let amount = json!({"modificationAmount": {"currency": "NOK", "value": 1000}});
    sim.modify("hook-00001", "capture", "cap-1", amount).await;
    let amount = json!({"modificationAmount": {"currency": "NOK", "value": 100}});
    sim.modify("hook-00001", "refund", "ref-1", amount).await;

    let got = until("five deliveries", || async {
        let r = rx.ok();
        (r.len() >= 5).then_some(r)
    })
    .await;
    let mine: Vec<&Received> = got
        .iter()
        .filter(|r| r.path_and_query == "/hooks/vipps?lane=1")
        .collect();
    let names: Vec<String> = mine.iter().map(|r| r.name()).collect();
    assert_eq!(names, ["CREATED", "AUTHORIZED", "CAPTURED", "REFUNDED"]);
    for r in &mine {
        assert_eq!(r.verify(&secret), Ok(()), "{r:?}");
        // Signed with another registration's secret it does not verify.
        assert!(r.verify(&secret2).is_err());
        let date = r.header("x-ms-date").expect("x-ms-date");
        assert_eq!(
            signature::check_date(date, std::time::SystemTime::now(), Duration::from_secs(300)),
            Ok(())
        );
        assert_eq!(r.header("content-type"), Some("application/json"));
        let p = r.json();
        assert_eq!(p["msn"], "123456");
        assert_eq!(p["reference"], "hook-00001");
        assert_eq!(p["success"], true);
        assert!(p["pspReference"].is_string() && p["timestamp"].is_string());
    }
    assert_eq!(mine[0].json()["idempotencyKey"], "create-hook-00001");
    assert_eq!(mine[1].json()["idempotencyKey"], Value::Null);
    assert_eq!(
        mine[2].json()["amount"],
        json!({"currency": "NOK", "value": 1000})
    );
    assert_eq!(mine[3].json()["amount"]["value"], 100);

    let captured: Vec<&Received> = got
        .iter()
        .filter(|r| r.path_and_query == "/captured")
        .collect();
    assert_eq!(captured.len(), 1);
    assert_eq!(captured[0].name(), "CAPTURED");
    assert_eq!(captured[0].verify(&secret2), Ok(()));

    // The receiver answers before the simulator records the attempt.
    let log = until("four recorded attempts", || async {
        let log = sim.deliveries(&format!("?webhookId={id}")).await;
        (log.len() >= 4).then_some(log)
    })
    .await;
    let seen: Vec<(&str, u64, &str)> = log
        .iter()
        .map(|a| {
            (
                a["event"].as_str().unwrap(),
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("epayments.payment.created.v1", 1, "delivered"),
            ("epayments.payment.authorized.v1", 1, "delivered"),
            ("epayments.payment.captured.v1", 1, "delivered"),
            ("epayments.payment.refunded.v1", 1, "delivered"),
        ]
    );
    assert_eq!(log[0]["status"], 200);
    assert_eq!(log[0]["url"], url);
    let filtered = until("the captured-only attempt", || async {
        let log = sim
            .deliveries(&format!(
                "?webhookId={id2}&event=epayments.payment.captured.v1"
            ))
            .await;
        (!log.is_empty()).then_some(log)
    })
    .await;
    assert_eq!(filtered.len(), 1);
}

#[actix_web::test]
async fn a_failing_event_is_retried_and_holds_back_later_ones() {
    // Retries wait an hour of simulator time; the test moves the clock instead of waiting.
    let sim = start(|s| {
        s.webhook_retry_initial = Duration::from_secs(3600);
        s.webhook_retry_max = Duration::from_secs(7200);
    })
    .await;
    let rx = Receiver::start(2).await;
    let (id, secret) = sim
        .registered(&format!("{}/hook", rx.base), &all_payment_events())
        .await;
    sim.create("retry-0001", IVAR).await;
    sim.modify("retry-0001", "cancel", "cancel-1", json!({}))
        .await;

    // Move the clock only once the attempt is recorded: its retry time is fixed by then.
    let attempts = |n: usize| {
        let sim = &sim;
        let id = &id;
        move || async move {
            let log = sim.deliveries(&format!("?webhookId={id}")).await;
            (log.len() >= n).then_some(log)
        }
    };
    until("the first failed attempt", attempts(1)).await;
    // One hour later the second attempt (still failing), two hours after that the third.
    sim.advance(3_600_000).await;
    until("the second attempt", attempts(2)).await;
    assert_eq!(rx.ok().len(), 0, "the later event waits for the first");
    sim.advance(7_200_000).await;
    let log = until("four attempts", attempts(4)).await;
    let all = rx.requests();
    let order: Vec<(String, u16)> = all.iter().map(|r| (r.name(), r.answered)).collect();
    assert_eq!(
        order,
        [
            ("CREATED".to_owned(), 500),
            ("CREATED".to_owned(), 500),
            ("CREATED".to_owned(), 200),
            ("TERMINATED".to_owned(), 200),
        ]
    );
    for r in &all {
        assert_eq!(r.verify(&secret), Ok(()), "every attempt is signed");
    }
    // Retries are not re-dated: every attempt at the first event carries the first one's date.
    assert!(all[0].header("x-ms-date").is_some());
    assert_eq!(
        all[1].header("x-ms-date"),
        all[0].header("x-ms-date"),
        "a retry keeps its x-ms-date"
    );
    assert_eq!(
        all[2].header("x-ms-date"),
        all[0].header("x-ms-date"),
        "a retry keeps its x-ms-date"
    );
    let seen: Vec<(u64, &str, Option<u64>)> = log
        .iter()
        .map(|a| {
            (
                a["attempt"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap(),
                a["status"].as_u64(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "failed", Some(500)),
            (2, "failed", Some(500)),
            (3, "delivered", Some(200)),
            (1, "delivered", Some(200)),
        ]
    );
}

#[actix_web::test]
async fn unreachable_receivers_are_given_up_after_retry_for() {
    let sim = start(|s| {
        s.webhook_retry_initial = Duration::from_secs(3600);
        s.webhook_retry_max = Duration::from_secs(3600);
        s.webhook_retry_for = Duration::from_secs(1800);
    })
    .await;
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/gone", closed.local_addr().unwrap());
    drop(closed);
    let (id, _) = sim.registered(&url, &all_payment_events()).await;
    sim.create("gone-00001", IVAR).await;
    sim.modify("gone-00001", "cancel", "cancel-1", json!({}))
        .await;

    let mut log = vec![];
    for _ in 0..500 {
        log = sim.deliveries(&format!("?webhookId={id}")).await;
        if log.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The first retry would come after an hour, past the 30 minutes allowed: given up at once,
    // and the next event is tried.
    let seen: Vec<(&str, &str)> = log
        .iter()
        .map(|a| (a["event"].as_str().unwrap(), a["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(
        seen,
        [
            ("epayments.payment.created.v1", "gave_up"),
            ("epayments.payment.terminated.v1", "gave_up"),
        ]
    );
    assert!(log[0]["status"].is_null());
    assert!(!log[0]["error"].as_str().unwrap_or_default().is_empty());
    let gave_up = sim
        .deliveries("?outcome=gave_up&reference=gone-00001")
        .await;
    assert_eq!(gave_up.len(), 2);
}

#[actix_web::test]
async fn publish_serves_login_pings_and_deleted_registrations_get_nothing() {
    let sim = start(|_| {}).await;
    let rx = Receiver::start(0).await;
    let events = [
        "login.merchant-initiated.ping.v1",
        "epayments.payment.created.v1",
    ];
    let (kept, secret) = sim.registered(&format!("{}/kept", rx.base), &events).await;
    let (gone, _) = sim.registered(&format!("{}/gone", rx.base), &events).await;
    let deleted = Answer::of(sim.call(Method::DELETE, &format!("{WEBHOOKS}/{gone}"))).await;
    assert_eq!(deleted.status, 204);
    // The Login simulator publishes pings through the same path.
    sim.server.simulator.state().webhooks.publish(
        "123456",
        "login.merchant-initiated.ping.v1",
        json!({"auth_req_id": "req-1"}),
    );
    // Another merchant's events never reach this merchant's registrations.
    sim.server.simulator.state().webhooks.publish(
        OTHER_MSN,
        "login.merchant-initiated.ping.v1",
        json!({"auth_req_id": "not-yours"}),
    );
    sim.create("after-del-1", IVAR).await;
    let got = until("two deliveries", || async {
        let r = rx.ok();
        (r.len() >= 2).then_some(r)
    })
    .await;
    assert_eq!(got[0].json(), json!({"auth_req_id": "req-1"}));
    assert_eq!(got[0].verify(&secret), Ok(()));
    assert_eq!(got[1].name(), "CREATED");
    assert!(got.iter().all(|r| r.path_and_query == "/kept"));
    until("two recorded attempts", || async {
        let log = sim.deliveries(&format!("?webhookId={kept}")).await;
        (log.len() >= 2).then_some(())
    })
    .await;
    assert!(
        sim.deliveries(&format!("?webhookId={gone}"))
            .await
            .is_empty()
    );
}

// Conformance with the official Webhooks API file, when it can be found.

/// A schema of the Webhooks file; `None` where the files are absent outside CI.
fn validator(schema: &str) -> Option<jsonschema::Validator> {
    openapi::schema_validator(openapi::WEBHOOKS, schema, |_| {})
}

#[actix_web::test]
async fn answers_match_the_official_schemas() {
    let Some(register) = validator("RegisterResponse") else {
        return;
    };
    let query = validator("QueryResponse").unwrap();
    let problem = validator("ProblemDetails").unwrap();
    assert!(!query.is_valid(&json!({"webhooks": [{"id": "x"}]})));

    let sim = start(|_| {}).await;
    let res = sim
        .register("https://example.com/a", &all_payment_events())
        .await;
    assert!(register.is_valid(&res.body), "{}", res.body);
    let list = sim.list().await;
    assert!(query.is_valid(&list.body), "{}", list.body);
    let bad = sim
        .register("http://example.com/a", &all_payment_events())
        .await;
    let errors: Vec<String> = problem
        .iter_errors(&bad.body)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{}: {errors:?}", bad.body);
}
