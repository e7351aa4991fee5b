//! The webhook delivery faults observed by a real receiver: `webhookDuplicateNext` sends one
//! delivery twice, byte for byte, and `webhookOutOfOrderNext` holds one delivery back behind the
//! next; every sending is still correctly signed (`lanehub::vipps::signature::verify`). Faults are
//! set through `PUT /sim/v1/faults`; the only waiting is a bounded poll for deliveries, which run
//! on their own tasks.

use lanehub::sim::SimServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::receiver::{Received, Receiver};

use crate::common::sim::{merchant_token, serve_simulator};

const IVAR: &str = "4790000002"; // ignores payment requests: only the test moves a payment on
const EVENTS: [&str; 3] = [
    "epayments.payment.created.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.captured.v1",
];

struct Sim {
    server: SimServer,
    base: String,
    http: reqwest::Client,
    token: String,
}

impl Sim {
    async fn start() -> Sim {
        let server = serve_simulator(|_| {});
        let base = server.base_url();
        let http = reqwest::Client::new();
        let token = merchant_token(&http, &base).await;
        Sim {
            server,
            base,
            http,
            token,
        }
    }

    async fn call(&self, method: Method, path: &str, key: &str, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .header("Merchant-Serial-Number", "123456")
            .header("Idempotency-Key", key);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the simulator answers");
        let status = res.status();
        let body = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }

    /// Registers `url` for [`EVENTS`]; returns the secret.
    async fn register(&self, url: &str) -> String {
        let body = json!({"url": url, "events": EVENTS});
        let answer = self
            .call(Method::POST, "/webhooks/v1/webhooks", "-", Some(body))
            .await;
        answer["secret"].as_str().expect("a secret").to_owned()
    }

    async fn faults(&self, method: Method, body: Option<Value>) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}/sim/v1/faults", self.base));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("the control API answers");
        assert!(res.status().is_success());
        res.json().await.expect("the fault view")
    }

    async fn create(&self, reference: &str) {
        let body = json!({
            "amount": {"currency": "NOK", "value": 1000},
            "paymentMethod": {"type": "WALLET"},
            "customer": {"phoneNumber": IVAR},
            "reference": reference,
            "userFlow": "PUSH_MESSAGE",
            "customerInteraction": "CUSTOMER_PRESENT",
        });
        let key = format!("c-{reference}");
        self.call(Method::POST, "/epayment/v1/payments", &key, Some(body))
            .await;
    }

    async fn approve(&self, reference: &str) {
        let path = format!("/epayment/v1/test/payments/{reference}/approve");
        self.call(Method::POST, &path, "-", None).await;
    }

    async fn capture(&self, reference: &str) {
        let path = format!("/epayment/v1/payments/{reference}/capture");
        let body = json!({"modificationAmount": {"currency": "NOK", "value": 1000}});
        let key = format!("cap-{reference}");
        self.call(Method::POST, &path, &key, Some(body)).await;
    }

    async fn deliveries(&self) -> Vec<Value> {
        let url = format!("{}/sim/v1/webhooks/deliveries", self.base);
        let res = self.http.get(url).send().await.expect("the control API");
        res.json().await.expect("a list of attempts")
    }
}

fn events(got: &[Received]) -> Vec<(String, String)> {
    got.iter().map(Received::event).collect()
}

fn event(name: &str, reference: &str) -> (String, String) {
    (name.to_owned(), reference.to_owned())
}

#[actix_web::test]
async fn the_duplicate_fault_delivers_one_event_twice_signed() {
    let sim = Sim::start().await;
    let receiver = Receiver::start(0).await;
    let url = receiver.base.clone();
    let secret = sim.register(&format!("{url}/hooks/vipps?lane=1")).await;

    sim.faults(Method::PUT, Some(json!({"webhookDuplicateNext": 1})))
        .await;
    sim.create("dup-payment-1").await;
    let got = receiver.received(2).await;
    assert_eq!(
        events(&got),
        [
            event("CREATED", "dup-payment-1"),
            event("CREATED", "dup-payment-1")
        ]
    );
    // The same delivery, byte for byte, and each sending signed on its own.
    assert_eq!(got[0].body, got[1].body);
    for r in &got {
        assert_eq!(r.verify(&secret), Ok(()), "{r:?}");
        assert_eq!(r.path_and_query, "/hooks/vipps?lane=1");
    }

    // The count is spent: the next event is delivered once.
    sim.approve("dup-payment-1").await;
    let got = receiver.received(3).await;
    assert_eq!(events(&got[2..]), [event("AUTHORIZED", "dup-payment-1")]);
    assert_eq!(got[2].verify(&secret), Ok(()));

    let view = sim.faults(Method::GET, None).await;
    assert_eq!(view["injected"]["webhookDuplicate"], 1);
    assert_eq!(view["global"]["webhookDuplicateNext"], 0);
    // The simulator's own record marks the second sending as the duplicate.
    let attempts = sim.deliveries().await;
    let flags: Vec<bool> = attempts
        .iter()
        .filter(|a| a["event"] == EVENTS[0])
        .map(|a| a["duplicate"].as_bool().unwrap_or_default())
        .collect();
    assert_eq!(flags, [false, true]);
    // Nothing else was sent.
    assert_eq!(receiver.requests().len(), 3);
    sim.server.stop().await;
}

#[actix_web::test]
async fn the_out_of_order_fault_swaps_two_deliveries_signed() {
    let sim = Sim::start().await;
    let receiver = Receiver::start(0).await;
    let url = receiver.base.clone();
    let secret = sim.register(&format!("{url}/hooks")).await;

    sim.faults(Method::PUT, Some(json!({"webhookOutOfOrderNext": 1})))
        .await;
    // Two events in quick succession: the first is held back until the second has gone.
    sim.create("ooo-payment-1").await;
    sim.approve("ooo-payment-1").await;
    let got = receiver.received(2).await;
    assert_eq!(
        events(&got),
        [
            event("AUTHORIZED", "ooo-payment-1"),
            event("CREATED", "ooo-payment-1")
        ]
    );
    for r in &got {
        assert_eq!(r.verify(&secret), Ok(()), "{r:?}");
    }

    // Spent: later events keep their order.
    sim.capture("ooo-payment-1").await;
    let got = receiver.received(3).await;
    assert_eq!(events(&got[2..]), [event("CAPTURED", "ooo-payment-1")]);
    assert_eq!(got[2].verify(&secret), Ok(()));
    let view = sim.faults(Method::GET, None).await;
    assert_eq!(view["injected"]["webhookOutOfOrder"], 1);
    assert_eq!(view["global"]["webhookOutOfOrderNext"], 0);
    assert_eq!(receiver.requests().len(), 3);
    sim.server.stop().await;
}

#[actix_web::test]
async fn without_faults_deliveries_arrive_once_and_in_order() {
    let sim = Sim::start().await;
    let receiver = Receiver::start(0).await;
    let url = receiver.base.clone();
    let secret = sim.register(&format!("{url}/hooks")).await;
    sim.create("plain-payment-1").await;
    sim.approve("plain-payment-1").await;
    sim.capture("plain-payment-1").await;
    let got = receiver.received(3).await;
    assert_eq!(
        events(&got),
        [
            event("CREATED", "plain-payment-1"),
            event("AUTHORIZED", "plain-payment-1"),
            event("CAPTURED", "plain-payment-1")
        ]
    );
    assert!(got.iter().all(|r| r.verify(&secret).is_ok()));
    let view = sim.faults(Method::GET, None).await;
    assert_eq!(view["injected"]["webhookDuplicate"], 0);
    assert_eq!(view["injected"]["webhookOutOfOrder"], 0);
    sim.server.stop().await;
}
