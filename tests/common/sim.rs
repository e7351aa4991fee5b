//! The simulator's control API (`/sim/v1`): virtual customers, their QR codes and behaviour, the
//! payments Vipps holds, faults. Works for the embedded simulator and for `lanehub sim`.

use lanehub::config::Settings;
use lanehub::sim::{SimServer, Simulator};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{PATIENCE, POLL};

/// The built-in simulator on its own, on a free port, with the defaults changed by `adjust`.
pub fn serve_simulator(adjust: impl FnOnce(&mut Settings)) -> SimServer {
    lanehub::install_crypto_provider();
    let mut settings = Settings::load(None, Vec::new()).expect("built-in defaults load");
    adjust(&mut settings);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    Simulator::new(settings.sim)
        .serve(listener)
        .expect("the simulator starts")
}

/// An access-token request of the default merchant to the simulator at `base`.
pub fn token_request(http: &reqwest::Client, base: &str) -> reqwest::RequestBuilder {
    http.post(format!("{base}/accesstoken/get"))
        .header("client_id", "sim-client")
        .header("client_secret", "sim-secret")
        .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
        .header("Merchant-Serial-Number", "123456")
}

/// The default merchant's access token from the simulator at `base`.
pub async fn merchant_token(http: &reqwest::Client, base: &str) -> String {
    let res = token_request(http, base)
        .send()
        .await
        .expect("the token call");
    let status = res.status();
    let body: Value = res.json().await.expect("a token answer");
    assert!(status.is_success(), "token: {status} {body}");
    body["access_token"]
        .as_str()
        .expect("an access_token")
        .to_owned()
}

/// An in-store ePayment request as lanehub sends it, with a receipt of one order line.
pub fn store_payment(reference: &str, phone: &str, value: u64) -> Value {
    let mut body = minimal_payment(reference, phone, value);
    let net = value * 100 / 115;
    body["customerInteraction"] = json!("CUSTOMER_PRESENT");
    body["paymentDescription"] = json!("Groceries, lane 1");
    body["receipt"] = json!({
        "orderLines": [{
            "name": "Milk", "id": "7038010009457", "totalAmount": value,
            "totalAmountExcludingTax": net, "totalTaxAmount": value - net,
            "taxPercentage": 15,
            "unitInfo": {"unitPrice": value, "quantity": "1", "quantityUnit": "PCS"}
        }],
        "bottomLine": {"currency": "NOK", "posId": "lane-1", "receiptNumber": "1001"}
    });
    body
}

/// The smallest ePayment request the spec allows: no receipt, no description.
pub fn minimal_payment(reference: &str, phone: &str, value: u64) -> Value {
    json!({
        "amount": {"currency": "NOK", "value": value},
        "paymentMethod": {"type": "WALLET"},
        "customer": {"phoneNumber": phone},
        "reference": reference,
        "userFlow": "PUSH_MESSAGE",
    })
}

/// `body` with `value` at the JSON pointer `at`: a field set or added, or an array item replaced
/// (the pointer's parent must exist).
pub fn with_field(body: &Value, at: &str, value: Value) -> Value {
    let mut body = body.clone();
    let (parent, last) = parent_mut(&mut body, at);
    match parent {
        Value::Object(map) => {
            map.insert(last.to_owned(), value);
        }
        Value::Array(items) => {
            let i: usize = last.parse().expect("an index");
            items[i] = value;
        }
        other => panic!("cannot set {at} in {other}"),
    }
    body
}

/// `body` without the field at the JSON pointer `at`.
pub fn without_field(body: &Value, at: &str) -> Value {
    let mut body = body.clone();
    let (parent, last) = parent_mut(&mut body, at);
    parent.as_object_mut().expect("an object").remove(last);
    body
}

/// The value that holds the place `at` points to, and the place's last token.
fn parent_mut<'v, 'p>(body: &'v mut Value, at: &'p str) -> (&'v mut Value, &'p str) {
    let (parent, last) = at.rsplit_once('/').expect("a pointer");
    let slot = if parent.is_empty() {
        Some(body)
    } else {
        body.pointer_mut(parent)
    };
    (slot.expect("the parent exists"), last)
}

/// What the simulator answered, split into what the tests look at.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    /// `Null` when empty, a string when not JSON.
    pub body: Value,
}

impl Answer {
    /// Sends `req` and reads the whole answer.
    pub async fn of(req: reqwest::RequestBuilder) -> Answer {
        let res = req.send().await.expect("the simulator answers");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("the body is readable");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The content type, empty if there is none.
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or_default()
    }

    /// The `name`s in `extraDetails` (ePayment, webhooks, QR) or `invalidParams` (check-in),
    /// without ePayment's `ErrorCode`.
    pub fn fields(&self) -> Vec<String> {
        // QR and check-in answers carry both lists with the same entries.
        let list = ["extraDetails", "invalidParams"]
            .iter()
            .find_map(|k| self.body[k].as_array());
        list.into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str().map(str::to_owned))
            .filter(|name| name != "ErrorCode")
            .collect()
    }

    /// The ePayment `ErrorCode` in `extraDetails`, if any.
    pub fn error_code(&self) -> Option<&str> {
        self.body["extraDetails"]
            .as_array()?
            .iter()
            .find(|d| d["name"] == "ErrorCode")?["reason"]
            .as_str()
    }
}

/// The default merchant as a client of the simulator's official APIs.
pub struct Merchant {
    /// The simulator's base URL.
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Merchant {
    /// The default merchant with a fresh access token from the simulator at `base`.
    pub async fn new(base: String) -> Merchant {
        let http = reqwest::Client::new();
        let token = merchant_token(&http, &base).await;
        Merchant { base, http, token }
    }

    /// `method path` with the merchant's token, subscription key and serial number.
    pub fn call(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .header("Merchant-Serial-Number", "123456")
    }
}

fn fault_path(operation: &str) -> String {
    match operation {
        "" => "/faults".to_owned(),
        op => format!("/faults/{op}"),
    }
}

/// The simulator's control API.
#[derive(Clone)]
pub struct SimControl {
    /// The simulator's base URL, e.g. `http://127.0.0.1:41235`.
    pub url: String,
    http: reqwest::Client,
}

impl SimControl {
    pub fn new(url: String) -> SimControl {
        SimControl::with_client(url, super::http_client())
    }

    pub fn with_client(url: String, http: reqwest::Client) -> SimControl {
        SimControl { url, http }
    }

    /// `method /sim/v1<path>`, which must succeed; the body as JSON (null if it is none).
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/sim/v1{path}", self.url);
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{url}: {e}"));
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{url}: {status} {body}");
        body
    }

    pub async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// The customer's personal QR: tokenised (exchanged at Vipps) or clear text.
    pub async fn qr(&self, phone: &str, clear_text: bool) -> String {
        let customer = self.get(&format!("/customers/{phone}")).await;
        let key = if clear_text {
            "qrClearTextUrl"
        } else {
            "qrTokenUrl"
        };
        customer[key]
            .as_str()
            .expect("customer has a QR")
            .to_owned()
    }

    /// How the customer answers payments (`approve`, `decline`, `ignore`) and Login requests
    /// (`consent`, `deny`, `ignore`); Login answers come after 150 ms.
    pub async fn behave(&self, phone: &str, payment: &str, payment_delay: u64, login: &str) {
        let body = json!({"payment": payment, "paymentDelay": payment_delay, "login": login, "loginDelay": 150});
        let path = format!("/customers/{phone}/behaviour");
        self.call(reqwest::Method::PUT, &path, Some(body)).await;
    }

    /// POST `path` without a body (an action: approve, decline, consent, …).
    pub async fn post(&self, path: &str) -> Value {
        self.call(reqwest::Method::POST, path, None).await
    }

    /// Sets faults for one operation (`payment_create`, `login_token`, …), or for all with "".
    pub async fn faults(&self, operation: &str, faults: Value) -> Value {
        let path = fault_path(operation);
        self.call(reqwest::Method::PUT, &path, Some(faults)).await
    }

    /// Clears the faults of one operation, or all with "".
    pub async fn clear_faults(&self, operation: &str) -> Value {
        let path = fault_path(operation);
        self.call(reqwest::Method::DELETE, &path, None).await
    }

    /// Moves the simulator's clock forward; whatever became due happens before this returns.
    pub async fn advance(&self, ms: u64) {
        let body = json!({"ms": ms});
        self.call(reqwest::Method::POST, "/clock/advance", Some(body))
            .await;
    }

    /// Approves the payment for the customer (who ignores it).
    pub async fn approve(&self, reference: &str) {
        let path = format!("/payments/{reference}/approve");
        self.call(reqwest::Method::POST, &path, None).await;
    }

    /// Waits until lanehub has registered its webhook at the simulator.
    pub async fn wait_webhook_registered(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self
            .get("/webhooks")
            .await
            .as_array()
            .is_none_or(Vec::is_empty)
        {
            assert!(
                Instant::now() < deadline,
                "lanehub never registered its webhook"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Every payment the simulator holds.
    pub async fn payments(&self) -> Vec<Value> {
        let list = self.get("/payments").await;
        list.as_array().expect("a list of payments").clone()
    }

    /// The one payment Vipps holds; fails if there is none or more than one.
    pub async fn only_payment(&self) -> Value {
        let payments = self.payments().await;
        assert_eq!(
            payments.len(),
            1,
            "exactly one payment at Vipps: {payments:?}"
        );
        payments[0].clone()
    }

    /// The one payment Vipps holds for `reference`, asserting it is the only one with it.
    pub async fn payment(&self, reference: &str) -> Value {
        let list = self.payments().await;
        let same: Vec<&Value> = list
            .iter()
            .filter(|p| p["reference"] == reference)
            .collect();
        assert_eq!(
            same.len(),
            1,
            "exactly one payment {reference} at Vipps: {list:?}"
        );
        same[0].clone()
    }

    /// Polls the simulator's payments until `done` holds for the list.
    pub async fn wait_payments(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let list = self.payments().await;
            if done(&list) {
                return list;
            }
            assert!(Instant::now() < deadline, "Vipps never {what}: {list:?}");
            tokio::time::sleep(POLL).await;
        }
    }
}
