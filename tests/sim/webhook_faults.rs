//! The webhook delivery faults observed by a real receiver: `webhookDuplicateNext` sends one
//! delivery twice, byte for byte, and `webhookOutOfOrderNext` holds one delivery back behind the
//! next; every sending is still correctly signed (`lanehub::vipps::signature::verify`). Faults are
//! set through `PUT /sim/v1/faults`; the only waiting is a bounded poll for deliveries, which run
//! on their own tasks.

use lanehub::sim::SimServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::receiver::{Received, Receiver};

use crate::common::sim::{Answer, Merchant, SimControl, serve_simulator, store_payment};

const IVAR: &str = "4790000002"; // ignores payment requests: only the test moves a payment on
const EVENTS: [&str; 3] = [
    "epayments.payment.created.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.captured.v1",
];

struct Sim {
    server: SimServer,
    merchant: Merchant,
    control: SimControl,
    receiver: Receiver,
    /// The secret of the receiver's registration.
    secret: String,
}

impl Sim {
    /// A simulator whose deliveries of [`EVENTS`] go to a new receiver at `path`; with a
    /// `fault` (`webhookDuplicate`, `webhookOutOfOrder`), that fault for the next delivery.
    async fn start(path: &str, fault: Option<&str>) -> Sim {
        let server = serve_simulator(|_| {});
        let merchant = Merchant::new(server.base_url()).await;
        let control = SimControl::new(server.base_url());
        let receiver = Receiver::start(0).await;
        let url = format!("{}{path}", receiver.base);
        let body = json!({"url": url, "events": EVENTS});
        let registered = call(&merchant, "/webhooks/v1/webhooks", "-", Some(body)).await;
        let secret = registered["secret"].as_str().expect("a secret").to_owned();
        if let Some(fault) = fault {
            control
                .faults("", json!({ format!("{fault}Next"): 1 }))
                .await;
        }
        Sim {
            server,
            merchant,
            control,
            receiver,
            secret,
        }
    }

    async fn create(&self, reference: &str) {
        let body = store_payment(reference, IVAR, 1000);
        let key = format!("c-{reference}");
        call(&self.merchant, "/epayment/v1/payments", &key, Some(body)).await;
    }

    async fn approve(&self, reference: &str) {
        let path = format!("/epayment/v1/test/payments/{reference}/approve");
        call(&self.merchant, &path, "-", None).await;
    }

    async fn capture(&self, reference: &str) {
        let path = format!("/epayment/v1/payments/{reference}/capture");
        let body = json!({"modificationAmount": {"currency": "NOK", "value": 1000}});
        let key = format!("cap-{reference}");
        call(&self.merchant, &path, &key, Some(body)).await;
    }

    /// Waits for the receiver's first `n` deliveries and asserts that those from the `from`th
    /// on are `expected` (name, reference), each signed with the registration's secret.
    async fn assert_received(
        &self,
        n: usize,
        from: usize,
        expected: &[(&str, &str)],
    ) -> Vec<Received> {
        let got = self.receiver.received(n).await;
        let events: Vec<(String, String)> = got[from..].iter().map(Received::event).collect();
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(name, reference)| (name.to_string(), reference.to_string()))
            .collect();
        assert_eq!(events, expected);
        for r in &got[from..] {
            assert_eq!(r.verify(&self.secret), Ok(()), "{r:?}");
        }
        got
    }

    /// Once the `fault` of one delivery is spent: the `third` event arrives once and in order,
    /// and the fault view counts one injection, with the fault's count for the next back at 0.
    async fn assert_spent(&self, third: (&str, &str), fault: &str) {
        self.assert_received(3, 2, &[third]).await;
        let view = self.control.get("/faults").await;
        assert_eq!(view["injected"][fault], 1);
        assert_eq!(view["global"][format!("{fault}Next")], 0);
        // Nothing else was sent.
        assert_eq!(self.receiver.requests().len(), 3);
    }
}

/// A POST of the default merchant with an idempotency key, which must succeed; its answer.
async fn call(merchant: &Merchant, path: &str, key: &str, body: Option<Value>) -> Value {
    let mut req = merchant
        .call(Method::POST, path)
        .header("Idempotency-Key", key);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let answer = Answer::of(req).await;
    let ok = (200..300).contains(&answer.status);
    assert!(ok, "{path}: {} {}", answer.status, answer.body);
    answer.body
}

#[actix_web::test]
async fn the_duplicate_fault_delivers_one_event_twice_signed() {
    let sim = Sim::start("/hooks/vipps?lane=1", Some("webhookDuplicate")).await;
    sim.create("dup-payment-1").await;
    let created = ("CREATED", "dup-payment-1");
    let got = sim.assert_received(2, 0, &[created, created]).await;
    // The same delivery, byte for byte, and each sending signed on its own.
    assert_eq!(got[0].body, got[1].body);
    assert!(
        got.iter()
            .all(|r| r.path_and_query == "/hooks/vipps?lane=1")
    );

    // The count is spent: the next event is delivered once.
    sim.approve("dup-payment-1").await;
    let authorized = ("AUTHORIZED", "dup-payment-1");
    sim.assert_spent(authorized, "webhookDuplicate").await;
    // The simulator's own record marks the second sending as the duplicate.
    let attempts = sim.control.get("/webhooks/deliveries").await;
    let flags: Vec<bool> = attempts
        .as_array()
        .expect("a list of attempts")
        .iter()
        .filter(|a| a["event"] == EVENTS[0])
        .map(|a| a["duplicate"].as_bool().unwrap_or_default())
        .collect();
    assert_eq!(flags, [false, true]);
    sim.server.stop().await;
}

#[actix_web::test]
async fn the_out_of_order_fault_swaps_two_deliveries_signed() {
    let sim = Sim::start("/hooks", Some("webhookOutOfOrder")).await;
    // Two events in quick succession: the first is held back until the second has gone.
    sim.create("ooo-payment-1").await;
    sim.approve("ooo-payment-1").await;
    let swapped = [
        ("AUTHORIZED", "ooo-payment-1"),
        ("CREATED", "ooo-payment-1"),
    ];
    sim.assert_received(2, 0, &swapped).await;

    // Spent: later events keep their order.
    sim.capture("ooo-payment-1").await;
    let captured = ("CAPTURED", "ooo-payment-1");
    sim.assert_spent(captured, "webhookOutOfOrder").await;
    sim.server.stop().await;
}

#[actix_web::test]
async fn without_faults_deliveries_arrive_once_and_in_order() {
    let sim = Sim::start("/hooks", None).await;
    sim.create("plain-payment-1").await;
    sim.approve("plain-payment-1").await;
    sim.capture("plain-payment-1").await;
    let in_order = [
        ("CREATED", "plain-payment-1"),
        ("AUTHORIZED", "plain-payment-1"),
        ("CAPTURED", "plain-payment-1"),
    ];
    sim.assert_received(3, 0, &in_order).await;
    let view = sim.control.get("/faults").await;
    assert_eq!(view["injected"]["webhookDuplicate"], 0);
    assert_eq!(view["injected"]["webhookOutOfOrder"], 0);
    sim.server.stop().await;
}
