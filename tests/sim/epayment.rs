//! Black-box tests of the simulator's ePayment API and its `/sim/v1/payments` control routes:
//! every state and modification path, idempotency, validation, rate limits, test amounts and
//! expiry, driven through HTTP with the simulator's clock moved by the control API (no sleeps).
//! Answers are also checked against the official OpenAPI schemas when the spec files are found.

use lanehub::config::SimSettings;
use lanehub::sim::SimServer;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::openapi;
use crate::common::sim::{
    Answer, Merchant, SimControl, serve_simulator, store_payment as payment_body,
};

const KARI: &str = "4791234567"; // approves after 2 s
const NORA: &str = "4790000001"; // declines after 2 s
const IVAR: &str = "4790000002"; // ignores

struct Sim {
    _server: SimServer,
    merchant: Merchant,
    control: SimControl,
}

async fn start(customize: impl FnOnce(&mut SimSettings)) -> Sim {
    let server = serve_simulator(|settings| {
        // Only the rate-limit tests want limits; the others make many calls per reference.
        settings.sim.rate_limits = false;
        customize(&mut settings.sim);
    });
    let merchant = Merchant::new(server.base_url()).await;
    Sim {
        control: SimControl::new(server.base_url()),
        _server: server,
        merchant,
    }
}

/// Asserts that `res` is a `status` naming `fields` (and nothing else).
fn assert_names(res: &Answer, status: u16, fields: &[&str]) {
    assert_eq!(
        (res.status, res.fields()),
        (status, fields.iter().map(|f| f.to_string()).collect()),
        "{}",
        res.body
    );
}

impl Sim {
    fn call(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.merchant
            .call(method, path)
            .header("Vipps-System-Name", "lanehub")
    }

    async fn create(&self, key: &str, body: &Value) -> Answer {
        let req = self
            .call(Method::POST, "/epayment/v1/payments")
            .header("Idempotency-Key", key)
            .json(body);
        Answer::of(req).await
    }

    /// Creates a payment that must be accepted.
    async fn created(&self, reference: &str, phone: &str, value: u64) {
        let key = format!("create-{reference}");
        let res = self
            .create(&key, &payment_body(reference, phone, value))
            .await;
        assert_eq!(res.status, 201, "{}", res.body);
    }

    /// Cancel, capture or refund.
    async fn modify(&self, reference: &str, op: &str, key: &str, body: Option<Value>) -> Answer {
        let mut req = self
            .call(
                Method::POST,
                &format!("/epayment/v1/payments/{reference}/{op}"),
            )
            .header("Idempotency-Key", key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        Answer::of(req).await
    }

    async fn capture(&self, reference: &str, key: &str, value: u64) -> Answer {
        let body = json!({"modificationAmount": {"currency": "NOK", "value": value}});
        self.modify(reference, "capture", key, Some(body)).await
    }

    async fn refund(&self, reference: &str, key: &str, value: u64) -> Answer {
        let body = json!({"modificationAmount": {"currency": "NOK", "value": value}});
        self.modify(reference, "refund", key, Some(body)).await
    }

    async fn get(&self, path: &str) -> Answer {
        Answer::of(self.call(Method::GET, path)).await
    }

    async fn payment(&self, reference: &str) -> Value {
        let res = self
            .get(&format!("/epayment/v1/payments/{reference}"))
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        res.body
    }

    async fn state(&self, reference: &str) -> String {
        self.payment(reference).await["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The event log as (name, amount, success).
    async fn events(&self, reference: &str) -> Vec<(String, u64, bool)> {
        let res = self
            .get(&format!("/epayment/v1/payments/{reference}/events"))
            .await;
        assert_eq!(res.status, 200, "{}", res.body);
        res.body
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| {
                (
                    e["name"].as_str().unwrap_or_default().to_owned(),
                    e["amount"]["value"].as_u64().unwrap_or_default(),
                    e["success"].as_bool().unwrap_or_default(),
                )
            })
            .collect()
    }

    async fn advance(&self, ms: u64) {
        self.control.advance(ms).await;
    }

    /// A control API call whose answer the test checks (it may be refused).
    async fn control(&self, method: Method, path: &str) -> Answer {
        let url = format!("{}/sim/v1{path}", self.merchant.base);
        Answer::of(self.merchant.http.request(method, url)).await
    }
}

fn ev(name: &str, value: u64, success: bool) -> (String, u64, bool) {
    (name.to_owned(), value, success)
}

fn aggregate(p: &Value) -> [u64; 4] {
    let a = &p["aggregate"];
    [
        "authorizedAmount",
        "capturedAmount",
        "refundedAmount",
        "cancelledAmount",
    ]
    .map(|k| a[k]["value"].as_u64().expect("aggregate amount"))
}

#[actix_web::test]
async fn approved_payment_is_captured_refunded_and_cancelled_while_staying_authorized() {
    let sim = start(|_| {}).await;
    let r = "lane1-0001";
    let res = sim.create("k-create", &payment_body(r, KARI, 1000)).await;
    assert_eq!(res.status, 201);
    // PUSH_MESSAGE answers with the reference only.
    assert_eq!(res.body, json!({"reference": r}));

    let p = sim.payment(r).await;
    assert_eq!(p["state"], "CREATED");
    assert_eq!(aggregate(&p), [0, 0, 0, 0]);
    assert_eq!(p["amount"], json!({"currency": "NOK", "value": 1000}));
    assert_eq!(p["paymentMethod"]["type"], "WALLET");

    // Kari approves after 2 s of simulator time (real time passes too: keep a margin).
    sim.advance(1_000).await;
    assert_eq!(sim.state(r).await, "CREATED");
    sim.advance(1_000).await;
    let p = sim.payment(r).await;
    assert_eq!(p["state"], "AUTHORIZED");
    assert_eq!(aggregate(&p), [1000, 0, 0, 0]);
    assert_eq!(p["paymentMethod"]["cardBin"], "540185");

    let res = sim.capture(r, "k-cap", 600).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert!(res.content_type().starts_with("application/json"));
    assert_eq!(res.body["state"], "AUTHORIZED");
    assert_eq!(aggregate(&res.body), [1000, 600, 0, 0]);
    assert_eq!(res.body["reference"], r);
    assert_eq!(res.body["amount"]["value"], 1000);

    let res = sim.refund(r, "k-ref", 200).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(aggregate(&res.body), [1000, 600, 200, 0]);

    // Cancel releases what was neither captured nor cancelled.
    let res = sim.modify(r, "cancel", "k-can", None).await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["state"], "AUTHORIZED");
    assert_eq!(aggregate(&res.body), [1000, 600, 200, 400]);

    assert_eq!(
        sim.events(r).await,
        [
            ev("CREATED", 1000, true),
            ev("AUTHORIZED", 1000, true),
            ev("CAPTURED", 600, true),
            ev("REFUNDED", 200, true),
            ev("CANCELLED", 400, true),
        ]
    );
    let log = sim
        .get(&format!("/epayment/v1/payments/{r}/events"))
        .await
        .body;
    assert_eq!(log[0]["idempotencyKey"], "k-create");
    assert_eq!(log[1]["idempotencyKey"], Value::Null);
    assert_eq!(log[2]["idempotencyKey"], "k-cap");
    let psps: std::collections::HashSet<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pspReference"].as_str().unwrap())
        .collect();
    assert_eq!(psps.len(), 5, "every event has its own pspReference");
    assert_eq!(sim.state(r).await, "AUTHORIZED");
}

#[actix_web::test]
async fn customers_decline_ignore_and_payments_expire() {
    let sim = start(|_| {}).await;
    sim.created("declined-01", NORA, 1000).await;
    sim.created("ignored-001", IVAR, 1000).await;
    sim.advance(2_000).await;
    assert_eq!(sim.state("declined-01").await, "ABORTED");
    assert_eq!(
        sim.events("declined-01").await,
        [ev("CREATED", 1000, true), ev("ABORTED", 1000, true)]
    );
    // Ivar does nothing: the payment expires after 10 minutes, not before.
    sim.advance(590_000).await;
    assert_eq!(sim.state("ignored-001").await, "CREATED");
    sim.advance(10_000).await;
    assert_eq!(sim.state("ignored-001").await, "EXPIRED");
    assert_eq!(
        sim.events("ignored-001").await,
        [ev("CREATED", 1000, true), ev("EXPIRED", 1000, true)]
    );
    // Final states refuse modifications with numbered errors.
    let res = sim.capture("ignored-001", "c1", 1000).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6200")));
    let res = sim.modify("declined-01", "cancel", "x1", None).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6050")));
    let res = sim.refund("declined-01", "r1", 10).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6020")));
}

#[actix_web::test]
async fn payment_expiry_follows_the_setting() {
    let sim = start(|s| s.payment_expiry = std::time::Duration::from_secs(30)).await;
    sim.created("short-exp-1", IVAR, 1000).await;
    sim.advance(25_000).await;
    assert_eq!(sim.state("short-exp-1").await, "CREATED");
    sim.advance(5_000).await;
    assert_eq!(sim.state("short-exp-1").await, "EXPIRED");
}

#[actix_web::test]
async fn cancel_rules_before_during_and_after_authorisation() {
    let sim = start(|_| {}).await;
    // Not yet authorised: TERMINATED, and a second cancel changes nothing.
    sim.created("cancel-0001", IVAR, 1000).await;
    let only = Some(json!({"cancelTransactionOnly": true}));
    let res = sim
        .modify("cancel-0001", "cancel", "x1", only.clone())
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["state"], "TERMINATED");
    assert_eq!(aggregate(&res.body), [0, 0, 0, 0]);
    let res = sim.modify("cancel-0001", "cancel", "x2", None).await;
    assert_eq!(
        (res.status, res.body["state"].as_str()),
        (200, Some("TERMINATED"))
    );
    assert_eq!(
        sim.events("cancel-0001").await,
        [ev("CREATED", 1000, true), ev("TERMINATED", 1000, true)]
    );
    // Customers never act on a terminated payment.
    sim.advance(700_000).await;
    assert_eq!(sim.state("cancel-0001").await, "TERMINATED");

    // The customer is pressing pay (the last second before the 2 s approval): 6250.
    sim.created("cancel-0002", KARI, 1000).await;
    sim.advance(1_100).await;
    let res = sim
        .modify("cancel-0002", "cancel", "x3", only.clone())
        .await;
    assert_eq!((res.status, res.error_code()), (400, Some("6250")));
    assert!(res.content_type().starts_with("application/problem+json"));
    sim.advance(900).await;
    assert_eq!(sim.state("cancel-0002").await, "AUTHORIZED");

    // Authorised: cancelTransactionOnly refuses; a plain cancel releases the amount.
    let res = sim.modify("cancel-0002", "cancel", "x4", only).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6060")));
    let res = sim
        .modify(
            "cancel-0002",
            "cancel",
            "x5",
            Some(json!({"cancelTransactionOnly": false})),
        )
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["state"], "AUTHORIZED");
    assert_eq!(aggregate(&res.body), [1000, 0, 0, 1000]);
    let res = sim.capture("cancel-0002", "c1", 1).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6070")));

    // Fully captured: nothing to cancel.
    sim.created("cancel-0003", KARI, 1000).await;
    sim.advance(2_000).await;
    assert_eq!(sim.capture("cancel-0003", "c2", 1000).await.status, 200);
    let res = sim.modify("cancel-0003", "cancel", "x6", None).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6040")));
}

#[actix_web::test]
async fn capture_and_refund_limits() {
    let sim = start(|_| {}).await;
    sim.created("limits-0001", KARI, 1000).await;
    let res = sim.capture("limits-0001", "c1", 100).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6080")));
    assert_eq!(res.body["title"], "Cannot capture before reservation");
    let res = sim.refund("limits-0001", "r1", 100).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6020")));
    sim.advance(2_000).await;

    let res = sim.capture("limits-0001", "c2", 1001).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6090")));
    let res = sim.refund("limits-0001", "r2", 1).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6150")));
    assert_eq!(sim.capture("limits-0001", "c3", 700).await.status, 200);
    assert_eq!(sim.capture("limits-0001", "c4", 300).await.status, 200);
    let res = sim.capture("limits-0001", "c5", 1).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6090")));
    assert_eq!(sim.refund("limits-0001", "r3", 1000).await.status, 200);
    let res = sim.refund("limits-0001", "r4", 1).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6150")));

    // A modification in another currency, or of nothing.
    let eur = json!({"modificationAmount": {"currency": "EUR", "value": 1}});
    let res = sim.modify("limits-0001", "refund", "r5", Some(eur)).await;
    assert_eq!((res.status, res.error_code()), (400, Some("4040")));
    let res = sim.capture("limits-0001", "c6", 0).await;
    assert_eq!((res.status, res.error_code()), (400, Some("4040")));
    let p = sim.payment("limits-0001").await;
    assert_eq!(aggregate(&p), [1000, 1000, 1000, 0]);
    assert_eq!(p["state"], "AUTHORIZED");
}

#[actix_web::test]
async fn idempotency_keys_replay_conflict_and_keep_4xx() {
    let sim = start(|_| {}).await;
    let body = payment_body("idem-00001", KARI, 1000);
    let first = sim.create("same-key", &body).await;
    assert_eq!(first.status, 201);
    // Same key and body: the same answer, and still one payment.
    let again = sim.create("same-key", &body).await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert_eq!(sim.events("idem-00001").await.len(), 1);
    // Same key, another body: 409.
    let other = sim
        .create("same-key", &payment_body("idem-00002", KARI, 1000))
        .await;
    assert_eq!((other.status, other.error_code()), (409, Some("4020")));
    // Same reference with another key: 409.
    let dup = sim.create("other-key", &body).await;
    assert_eq!((dup.status, dup.error_code()), (409, Some("4150")));

    // A 4xx stays that 4xx for its key, even after the payment is authorised.
    let early = sim.capture("idem-00001", "cap-1", 500).await;
    assert_eq!(early.error_code(), Some("6080"));
    sim.advance(2_000).await;
    let retried = sim.capture("idem-00001", "cap-1", 500).await;
    assert_eq!((retried.status, &retried.body), (400, &early.body));

    // A capture retried with its key is applied once and answered the same.
    let c = sim.capture("idem-00001", "cap-2", 500).await;
    assert_eq!(c.status, 200);
    let c2 = sim.capture("idem-00001", "cap-2", 500).await;
    assert_eq!((c2.status, &c2.body), (200, &c.body));
    assert_eq!(aggregate(&sim.payment("idem-00001").await)[1], 500);
    let conflict = sim.capture("idem-00001", "cap-2", 400).await;
    assert_eq!(
        (conflict.status, conflict.error_code()),
        (409, Some("4010"))
    );
    let r = sim.refund("idem-00001", "ref-1", 100).await;
    let conflict = sim.refund("idem-00001", "ref-1", 200).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (conflict.status, conflict.error_code()),
        (409, Some("4150"))
    );
    // Keys are per operation and reference: the capture key works for a cancel.
    assert_eq!(
        sim.modify("idem-00001", "cancel", "cap-2", None)
            .await
            .status,
        200
    );
}

#[actix_web::test]
async fn bad_requests_get_problems_naming_what_is_wrong() {
    let sim = start(|_| {}).await;
    let post = || sim.call(Method::POST, "/epayment/v1/payments");
    let body = |reference: &str| payment_body(reference, KARI, 1000);

    // Headers and bodies: each refused with the status and, where given, the fields named.
    let no_msn = sim
        .merchant
        .http
        .post(format!("{}/epayment/v1/payments", sim.merchant.base))
        .bearer_auth(&sim.merchant.token)
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key");
    let anonymous = format!("{}/epayment/v1/payments/hdr-000001", sim.merchant.base);
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, Option<&[&str]>)> = vec![
        (
            "no Idempotency-Key",
            post().json(&body("hdr-000001")),
            400,
            Some(&["Idempotency-Key"]),
        ),
        (
            "Idempotency-Key of 51 characters",
            post()
                .header("Idempotency-Key", "k".repeat(51))
                .json(&body("hdr-000001")),
            400,
            Some(&["Idempotency-Key"]),
        ),
        (
            "no Merchant-Serial-Number",
            no_msn
                .header("Idempotency-Key", "k")
                .json(&body("hdr-000002")),
            400,
            Some(&["Merchant-Serial-Number"]),
        ),
        (
            "plugin name of 31 characters",
            post()
                .header("Idempotency-Key", "k")
                .header("Vipps-System-Plugin-Name", "p".repeat(31))
                .json(&body("hdr-000003")),
            400,
            Some(&["Vipps-System-Plugin-Name"]),
        ),
        (
            "no credentials",
            sim.merchant.http.get(anonymous),
            401,
            None,
        ),
        (
            "text/plain",
            post()
                .header("Idempotency-Key", "text")
                .header("content-type", "text/plain")
                .body("hello"),
            415,
            None,
        ),
    ];
    for (what, req, status, fields) in cases {
        let res = Answer::of(req).await;
        assert_eq!(res.status, status, "{what}: {}", res.body);
        if let Some(fields) = fields {
            assert_names(&res, status, fields);
        }
    }
    let malformed = post()
        .header("Idempotency-Key", "malformed")
        .header("content-type", "application/json")
        .body("{\"amount\": ");
    let res = Answer::of(malformed).await;
    assert_names(&res, 400, &["body"]);
    assert!(res.content_type().starts_with("application/problem+json"));
    assert!(
        res.body["extraDetails"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("not valid JSON")
    );
    let mut float = payment_body("float-0001", KARI, 1000);
    float["amount"]["value"] = json!(10.5);
    let res = sim.create("float", &float).await;
    assert_eq!(
        (res.status, res.error_code(), res.fields()),
        (400, Some("4040"), vec!["amount.value".into()])
    );
    let res = sim
        .create("unknown", &payment_body("unknown-01", "4799999999", 1000))
        .await;
    assert_eq!((res.status, res.error_code()), (400, Some("7010")));
    let res = sim
        .create("too-small", &payment_body("small-0001", KARI, 99))
        .await;
    assert_eq!(res.error_code(), Some("6010"));
    let mut no_customer = payment_body("nocust-001", KARI, 1000);
    no_customer.as_object_mut().unwrap().remove("customer");
    let res = sim.create("no-customer", &no_customer).await;
    assert_eq!(
        (res.status, res.error_code(), res.fields()),
        (400, Some("4140"), vec!["customer".into()])
    );
    let long_ref = "r".repeat(64);
    assert_eq!(
        sim.create("long-ref", &payment_body(&long_ref, KARI, 1000))
            .await
            .status,
        201,
        "the live API allows 64 characters"
    );

    // Paths and methods.
    let res = sim.get("/epayment/v1/payments/no-such-payment").await;
    assert_eq!((res.status, res.error_code()), (404, Some("5090")));
    let res = sim.get("/epayment/v1/payments/bad%20ref!").await;
    assert_names(&res, 400, &["reference"]);
    let res = sim.get("/epayment/v1/payments").await;
    assert_eq!(res.status, 405);
    assert!(res.content_type().starts_with("application/problem+json"));
    let res = sim.get("/epayment/v1/nothing-here").await;
    assert_eq!(res.status, 404);
    let res = sim
        .modify(&long_ref, "capture", "bad-body", Some(json!({"amount": 5})))
        .await;
    assert_names(&res, 400, &["modificationAmount"]);
    let res = sim
        .modify(
            &long_ref,
            "cancel",
            "bad-cancel",
            Some(json!({"cancelTransactionOnly": "yes"})),
        )
        .await;
    assert_names(&res, 400, &["cancelTransactionOnly"]);
}

#[actix_web::test]
async fn personal_qr_and_customer_token_name_the_customer() {
    let sim = start(|_| {}).await;
    let mut clear = payment_body("qr-clear-01", KARI, 1000);
    clear["customer"] = json!({"personalQr": "https://qr.vipps.no/28/2/01/031/4790000001?v=1"});
    assert_eq!(sim.create("q1", &clear).await.status, 201);
    let customers = sim.control(Method::GET, "/customers/4790000001").await.body;
    let token_url = customers["qrTokenUrl"]
        .as_str()
        .expect("qrTokenUrl")
        .to_owned();
    let mut tokenised = payment_body("qr-token-01", KARI, 1000);
    tokenised["customer"] = json!({"personalQr": token_url});
    assert_eq!(sim.create("q2", &tokenised).await.status, 201);
    let mut by_token = payment_body("qr-ctok-001", KARI, 1000);
    by_token["customer"] = json!({"customerToken": token_url.rsplit('/').next().unwrap()});
    assert_eq!(sim.create("q3", &by_token).await.status, 201);
    // All three are Nora, who declines.
    sim.advance(2_000).await;
    for r in ["qr-clear-01", "qr-token-01", "qr-ctok-001"] {
        assert_eq!(sim.state(r).await, "ABORTED", "{r}");
        let view = sim
            .control(Method::GET, &format!("/payments/{r}"))
            .await
            .body;
        assert_eq!(view["customer"], NORA);
    }
    let mut bad = payment_body("qr-bad-0001", KARI, 1000);
    bad["customer"] = json!({"personalQr": "https://example.com/not-a-qr"});
    assert_eq!(sim.create("q4", &bad).await.error_code(), Some("4060"));
    bad["customer"] = json!({"personalQr": "https://qr.vipps.no/28/2/01/031/4711111111?v=1"});
    assert_eq!(sim.create("q5", &bad).await.error_code(), Some("7010"));
    bad["customer"] = json!({"customerToken": "nope"});
    assert_eq!(sim.create("q6", &bad).await.error_code(), Some("4050"));
}

#[actix_web::test]
async fn test_amounts_fail_on_purpose() {
    let sim = start(|_| {}).await;
    for (i, value) in [151u64, 182, 183, 186].into_iter().enumerate() {
        sim.created(&format!("card-fail-{i}"), KARI, value).await;
    }
    sim.advance(2_000).await;
    for (i, value) in [151u64, 182, 183, 186].into_iter().enumerate() {
        let r = format!("card-fail-{i}");
        assert_eq!(sim.state(&r).await, "ABORTED", "{value}");
        assert_eq!(
            sim.events(&r).await,
            [
                ev("CREATED", value, true),
                ev("AUTHORIZED", value, false),
                ev("ABORTED", value, true)
            ]
        );
    }
    // Force approve of a failing amount answers the failure.
    sim.created("card-fail-x", IVAR, 186).await;
    let res = Answer::of(sim.call(
        Method::POST,
        "/epayment/v1/test/payments/card-fail-x/approve",
    ))
    .await;
    assert_eq!((res.status, res.error_code()), (400, Some("10010")));
    assert_eq!(sim.state("card-fail-x").await, "ABORTED");

    // Refunds of 123 and 124 fail with an error and a failed event.
    sim.created("refund-fail", KARI, 1000).await;
    sim.advance(2_000).await;
    assert_eq!(sim.capture("refund-fail", "c", 1000).await.status, 200);
    let res = sim.refund("refund-fail", "r1", 123).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6210")));
    let res = sim.refund("refund-fail", "r2", 124).await;
    assert_eq!((res.status, res.error_code()), (400, Some("6220")));
    assert_eq!(sim.refund("refund-fail", "r3", 125).await.status, 200);
    assert_eq!(
        sim.events("refund-fail").await[3..],
        [
            ev("REFUNDED", 123, false),
            ev("REFUNDED", 124, false),
            ev("REFUNDED", 125, true)
        ]
    );
    assert_eq!(aggregate(&sim.payment("refund-fail").await)[2], 125);
}

#[actix_web::test]
async fn force_approve_acts_for_the_customer() {
    let sim = start(|_| {}).await;
    let approve = |r: &str, body: Option<Value>| {
        let mut req = sim.call(
            Method::POST,
            &format!("/epayment/v1/test/payments/{r}/approve"),
        );
        if let Some(b) = body {
            req = req.json(&b);
        }
        Answer::of(req)
    };
    // Nora would decline; force approve wins.
    sim.created("force-0001", NORA, 1000).await;
    let res = approve("force-0001", None).await;
    assert_eq!((res.status, res.body.clone()), (200, Value::Null));
    assert_eq!(sim.state("force-0001").await, "AUTHORIZED");
    sim.advance(5_000).await;
    assert_eq!(sim.state("force-0001").await, "AUTHORIZED");
    let res = approve("force-0001", None).await;
    assert_eq!((res.status, res.error_code()), (400, Some("10020")));
    // Another customer cannot approve someone else's payment.
    sim.created("force-0002", IVAR, 1000).await;
    let res = approve(
        "force-0002",
        Some(json!({"customer": {"phoneNumber": KARI}})),
    )
    .await;
    assert_eq!((res.status, res.error_code()), (400, Some("10020")));
    // A web-redirect payment is approved with its token by whoever is named.
    let mut web = payment_body("force-0003", KARI, 1000);
    web.as_object_mut().unwrap().remove("customer");
    web["userFlow"] = json!("WEB_REDIRECT");
    web["returnUrl"] = json!("https://example.com/back");
    web["profile"] = json!({"scope": "name phoneNumber"});
    let res = sim.create("w1", &web).await;
    assert_eq!(res.status, 201, "{}", res.body);
    let url = res.body["redirectUrl"]
        .as_str()
        .expect("redirectUrl")
        .to_owned();
    let token = url.split("token=").nth(1).expect("a token").to_owned();
    let res = approve("force-0003", Some(json!({"token": "wrong"}))).await;
    assert_eq!(res.status, 400);
    let res = approve(
        "force-0003",
        Some(json!({"token": token, "customer": {"phoneNumber": KARI}})),
    )
    .await;
    assert_eq!(res.status, 200, "{}", res.body);
    let p = sim.payment("force-0003").await;
    assert_eq!(p["state"], "AUTHORIZED");
    assert_eq!(p["redirectUrl"], url);
    assert!(p["profile"]["sub"].is_string(), "scope asked for: {p}");
    let res = approve("no-such-ref", None).await;
    assert_eq!(res.status, 404);
}

#[actix_web::test]
async fn rate_limits_per_reference_with_retry_after_and_recovery() {
    let sim = start(|s| s.rate_limits = true).await;
    let body = payment_body("limited-01", IVAR, 1000);
    for i in 0..5 {
        let res = sim.create("create-key", &body).await;
        assert_eq!(res.status, 201, "create #{i}");
    }
    let res = sim.create("create-key", &body).await;
    assert_eq!(res.status, 429);
    let retry: u64 = res.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    // Another reference is not affected.
    sim.created("limited-02", IVAR, 1000).await;

    // Reads: 120 per minute per reference.
    for _ in 0..120 {
        assert_eq!(
            sim.get("/epayment/v1/payments/limited-01").await.status,
            200
        );
    }
    let res = sim.get("/epayment/v1/payments/limited-01").await;
    assert_eq!(res.status, 429);
    assert!(res.headers.contains_key("retry-after"));
    // Events are counted on their own.
    assert_eq!(
        sim.get("/epayment/v1/payments/limited-01/events")
            .await
            .status,
        200
    );

    sim.advance(retry * 1000).await;
    assert_eq!(sim.create("create-key", &body).await.status, 201);
    assert_eq!(
        sim.get("/epayment/v1/payments/limited-01").await.status,
        200
    );

    // Captures too: 5 per minute for one reference, whatever the keys.
    for i in 0..5 {
        let res = sim.capture("limited-02", &format!("c{i}"), 1).await;
        assert_eq!(res.status, 400, "capture #{i} reaches the API (6080)");
    }
    assert_eq!(sim.capture("limited-02", "c5", 1).await.status, 429);
}

#[actix_web::test]
async fn control_api_lists_filters_and_acts_as_the_customer() {
    let sim = start(|_| {}).await;
    sim.created("ctl-000001", IVAR, 1000).await;
    sim.created("ctl-000002", IVAR, 2000).await;
    sim.created("ctl-000003", IVAR, 3000).await;

    let res = sim
        .control(Method::POST, "/payments/ctl-000001/approve")
        .await;
    assert_eq!(res.status, 200, "{}", res.body);
    assert_eq!(res.body["state"], "AUTHORIZED");
    let res = sim
        .control(Method::POST, "/payments/ctl-000002/decline")
        .await;
    assert_eq!(res.body["state"], "ABORTED");
    let res = sim
        .control(Method::POST, "/payments/ctl-000002/approve")
        .await;
    assert_eq!(res.status, 409);

    let all = sim.control(Method::GET, "/payments").await.body;
    let refs: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["reference"].as_str().unwrap())
        .collect();
    assert_eq!(refs, ["ctl-000001", "ctl-000002", "ctl-000003"]);
    assert_eq!(all[0]["aggregate"]["authorizedAmount"]["value"], 1000);
    assert_eq!(all[0]["msn"], "123456");
    let authorized = sim
        .control(Method::GET, "/payments?state=AUTHORIZED")
        .await
        .body;
    assert_eq!(authorized.as_array().unwrap().len(), 1);
    let res = sim.control(Method::GET, "/payments?state=PAID").await;
    assert_eq!(res.status, 400);

    let one = sim.control(Method::GET, "/payments/ctl-000003").await.body;
    assert_eq!(one["state"], "CREATED");
    assert_eq!(one["customer"], IVAR);
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    assert_eq!(
        sim.control(Method::GET, "/payments/ctl-999999")
            .await
            .status,
        404
    );
    assert_eq!(sim.control(Method::GET, "/payments/bad").await.status, 400);
}

// Conformance with the official OpenAPI files, when they can be found.

/// A schema of the ePayment file; `None` where the files are absent outside CI.
fn validator(schema: &str, patch: impl FnOnce(&mut Value)) -> Option<jsonschema::Validator> {
    openapi::schema_validator(openapi::EPAYMENT, schema, |components| {
        // The receipt is referenced remotely; nothing validated here reaches it.
        components["schemas"]["CreatePaymentRequest"]["properties"]["receipt"] = json!({});
        patch(components);
    })
}

fn assert_valid(v: &jsonschema::Validator, instance: &Value, what: &str) {
    let errors: Vec<String> = v.iter_errors(instance).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{what} {instance}: {errors:?}");
}

#[actix_web::test]
async fn answers_match_the_official_schemas() {
    let Some(get) = validator("GetPaymentResponse", |_| {}) else {
        return;
    };
    let create = validator("CreatePaymentResponse", |_| {}).unwrap();
    let modification = validator("ModificationResponse", |_| {}).unwrap();
    let problem = validator("Problem", |_| {}).unwrap();
    // The spec requires `paymentAction`, which no PaymentEvent has: the live API sends `name`.
    let event = validator("PaymentEvent", |c| {
        c["schemas"]["PaymentEvent"]["required"] = json!([
            "reference",
            "pspReference",
            "name",
            "amount",
            "timestamp",
            "success"
        ]);
    })
    .unwrap();
    let webhook = validator("WebhookEvent", |_| {}).unwrap();

    // The validators are not vacuous.
    assert!(!get.is_valid(&json!({"state": "PAID"})));
    assert!(!event.is_valid(&json!({"reference": "schema-001"})));

    let sim = start(|_| {}).await;
    let mut body = payment_body("schema-001", KARI, 1000);
    body["metadata"] = json!({"lane": "1"});
    let res = sim.create("s1", &body).await;
    assert_valid(&create, &res.body, "create");
    assert_valid(&get, &sim.payment("schema-001").await, "get (created)");
    sim.advance(2_000).await;
    let p = sim.payment("schema-001").await;
    assert_eq!(p["metadata"], json!({"lane": "1"}));
    assert_valid(&get, &p, "get (authorized)");
    let res = sim.capture("schema-001", "c", 1000).await;
    assert_valid(&modification, &res.body, "capture");
    let res = sim.capture("schema-001", "c2", 1).await;
    assert_valid(&problem, &res.body, "problem");
    let log = sim
        .get("/epayment/v1/payments/schema-001/events")
        .await
        .body;
    for e in log.as_array().unwrap() {
        assert_valid(&event, e, "event");
        let mut w = e.clone();
        w["msn"] = json!("123456");
        assert_valid(&webhook, &w, "webhook payload");
    }
}
