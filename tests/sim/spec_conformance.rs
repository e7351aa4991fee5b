//! The simulator against the official OpenAPI files: every call to an official endpoint in these
//! tests is validated, request and response, by the harness in tests/common/openapi.rs, and any
//! violation fails the test. Valid requests go through [`Conformance::call`]; requests that are
//! meant to break the contract go through [`Conformance::call_invalid`], which first checks that
//! the harness really rejects them and then validates the simulator's answer.
//!
//! Covered: access token, QR exchange, check-in, the Login token endpoint (CIBA grant), userinfo,
//! OpenID discovery and its key set, every ePayment operation (with the order-management
//! `Receipt`), and the Webhooks API. CIBA authentication is in no file; its answers are checked
//! against VIPPS.md by hand.
//!
//! To cover another endpoint, add a test that starts [`Conformance`] (which fetches a merchant
//! token), takes the headers it needs (`conf.headers(None)`, or `conf.merchant_headers(bearer)`
//! for another token) and makes its calls with [`Conformance::call`]; then assert on the
//! returned status and body.

use crate::common::openapi::{self, Specs};
use crate::common::sim::{
    self as common_sim, Answer, SimControl, minimal_payment, serve_simulator, with_field,
    without_field,
};
use base64::Engine as _;
use lanehub::sim::SimServer;
use serde_json::{Value, json};

/// The simulator's default merchant (see config defaults and src/sim/auth.rs).
const CLIENT_ID: &str = "sim-client";
const CLIENT_SECRET: &str = "sim-secret";
const SUBSCRIPTION_KEY: &str = "sim-subscription-key";
const MSN: &str = "123456";

/// Virtual customers (docs/simulator.md).
const KARI: &str = "4791234567"; // member
const OLA: &str = "4798765432"; // not a member
const IVAR: &str = "4790000002"; // ignores
const METTE: &str = "4512345678"; // MobilePay, token QR only

const CIBA_PATH: &str = "/vipps-login-ciba/api/backchannel/authentication";
const TOKEN_PATH: &str = "/access-management-1.0/access/oauth2/token";
const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";
const PAYMENTS: &str = "/epayment/v1/payments";
const QR_EXCHANGE: &str = "/qr/v1/exchange";
const WEBHOOKS: &str = "/webhooks/v1/webhooks";

/// Whether a request is meant to satisfy the files or to break them.
#[derive(Clone, Copy)]
enum Meant {
    Valid,
    Invalid,
}

/// A running simulator and an HTTP client whose every call is checked against the files.
struct Conformance {
    specs: &'static Specs,
    base: String,
    http: reqwest::Client,
    sim: SimServer,
    /// The simulator's control API, which no file describes.
    control: SimControl,
    /// `Bearer` and the default merchant's access token.
    bearer: String,
}

impl Conformance {
    /// Starts a simulator with the default settings (rate limits on) and fetches a merchant
    /// token; `None` when the files are absent (the harness has already warned, or failed the
    /// test under CI).
    async fn start() -> Option<Conformance> {
        let specs = openapi::specs()?;
        let sim = serve_simulator(|_| {});
        let mut conf = Conformance {
            specs,
            base: sim.base_url(),
            http: reqwest::Client::new(),
            control: SimControl::new(sim.base_url()),
            sim,
            bearer: String::new(),
        };
        conf.bearer = format!("Bearer {}", conf.token().await);
        Some(conf)
    }

    async fn stop(self) {
        self.sim.stop().await;
    }

    /// Sends one call, failing the test if the request or the response violates the files.
    /// A JSON body gets `Content-Type: application/json` unless `headers` say otherwise; with
    /// `application/x-www-form-urlencoded` the body (an object of strings) is sent as a form.
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Answer {
        self.send(Meant::Valid, method, path, headers, body).await.0
    }

    /// Sends a call that must break the files (the test fails if the harness accepts it, so a
    /// "bad request" test cannot silently send a good one), and validates the answer. Returns
    /// the answer and the harness's complaints about the request.
    async fn call_invalid(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (Answer, Vec<String>) {
        self.send(Meant::Invalid, method, path, headers, body).await
    }

    /// Checks the request as `meant`, sends it and checks the answer; the answer and the
    /// harness's complaints about the request.
    async fn send(
        &self,
        meant: Meant,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (Answer, Vec<String>) {
        let headers = with_content_type(headers, body.as_ref());
        let verdict = self
            .specs
            .validate_request(method, path, &headers, body.as_ref());
        let violations = match (meant, verdict) {
            (Meant::Valid, Ok(())) => vec![],
            (Meant::Valid, Err(violations)) => panic!(
                "request {method} {path} violates the OpenAPI files:\n  {}",
                violations.join("\n  ")
            ),
            (Meant::Invalid, verdict) => {
                verdict.expect_err("the request was meant to violate the OpenAPI files")
            }
        };
        let method_value =
            reqwest::Method::from_bytes(method.as_bytes()).expect("the method is a valid token");
        let mut req = self
            .http
            .request(method_value, format!("{}{path}", self.base));
        let is_form = headers.iter().any(|(k, v)| {
            k.eq_ignore_ascii_case("content-type")
                && v.starts_with("application/x-www-form-urlencoded")
        });
        for (k, v) in &headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = &body {
            req = if is_form {
                req.body(form_encode(body))
            } else {
                req.body(body.to_string())
            };
        }
        let answer = Answer::of(req).await;
        let body = (!answer.body.is_null()).then_some(&answer.body);
        let content_type = answer.header("content-type");
        if let Err(violations) =
            self.specs
                .validate_response(method, path, answer.status, content_type, body)
        {
            panic!(
                "response to {method} {path} violates the OpenAPI files:\n  {}\nbody: {}",
                violations.join("\n  "),
                answer.body
            );
        }
        (answer, violations)
    }

    /// An access-token call of the default merchant with `secret`.
    async fn token_call(&self, secret: &str) -> Answer {
        let headers = token_headers(secret);
        self.call("POST", "/accesstoken/get", &headers, None).await
    }

    /// Fetches an access token for the default merchant (itself a validated call).
    async fn token(&self) -> String {
        let r = self.token_call(CLIENT_SECRET).await;
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"]
            .as_str()
            .expect("the token answer has access_token")
            .to_owned()
    }

    /// The headers of an authorised merchant call; add `Idempotency-Key` where required.
    fn merchant_headers<'a>(&self, bearer: &'a str) -> Vec<(&'a str, &'a str)> {
        let mut h = vec![("Authorization", bearer)];
        h.extend(system_headers());
        h.push(("Ocp-Apim-Subscription-Key", SUBSCRIPTION_KEY));
        h.push(("Merchant-Serial-Number", MSN));
        h
    }
}

fn with_content_type<'a>(
    headers: &[(&'a str, &'a str)],
    body: Option<&Value>,
) -> Vec<(&'a str, &'a str)> {
    let mut headers = headers.to_vec();
    let has_content_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if body.is_some() && !has_content_type {
        headers.push(("Content-Type", "application/json"));
    }
    headers
}

/// A JSON object of strings as `application/x-www-form-urlencoded`.
fn form_encode(body: &Value) -> String {
    let fields = body.as_object().expect("a form body is a JSON object");
    let mut out = reqwest::Url::parse("http://form.invalid/").expect("a valid URL");
    {
        let mut pairs = out.query_pairs_mut();
        for (k, v) in fields {
            pairs.append_pair(k, v.as_str().unwrap_or(&v.to_string()));
        }
    }
    out.query().unwrap_or_default().to_owned()
}

fn system_headers() -> [(&'static str, &'static str); 4] {
    [
        ("Vipps-System-Name", "lanehub"),
        ("Vipps-System-Version", "0.1.0"),
        ("Vipps-System-Plugin-Name", "lanehub"),
        ("Vipps-System-Plugin-Version", "0.1.0"),
    ]
}

fn token_headers(secret: &str) -> Vec<(&str, &str)> {
    let mut h = vec![
        ("client_id", CLIENT_ID),
        ("client_secret", secret),
        ("Ocp-Apim-Subscription-Key", SUBSCRIPTION_KEY),
        ("Merchant-Serial-Number", MSN),
    ];
    h.extend(system_headers());
    h
}

/// The names of the events in an events answer.
fn event_names(r: &Answer) -> Vec<&str> {
    let events = r.body.as_array().expect("a list of events");
    events.iter().filter_map(|e| e["name"].as_str()).collect()
}

/// Asserts that `r` is an OAuth error answer: `status` with `error`.
fn assert_oauth_error(r: &Answer, status: u16, error: &str) {
    let got = (r.status, r.body["error"].as_str());
    assert_eq!(got, (status, Some(error)), "{}", r.body);
}

fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{id}:{secret}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[actix_web::test]
async fn access_token_conforms() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    let r = conf.token_call(CLIENT_SECRET).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    let token = r.body["access_token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{}", r.body);
    // The Vipps answer carries every number as a string.
    assert!(r.body["expires_in"].is_string(), "{}", r.body);

    let r = conf.token_call("wrong-secret").await;
    assert_eq!(r.status, 401);

    let without_secret: Vec<(&str, &str)> = token_headers(CLIENT_SECRET)
        .into_iter()
        .filter(|(k, _)| *k != "client_secret")
        .collect();
    let (r, violations) = conf
        .call_invalid("POST", "/accesstoken/get", &without_secret, None)
        .await;
    assert!(violations.iter().any(|v| v.contains("client_secret")));
    assert_eq!(r.status, 400, "{}", r.body);

    // The helpers used by the other endpoints' tests work.
    let token = conf.token().await;
    let bearer = format!("Bearer {token}");
    assert!(
        conf.merchant_headers(&bearer)
            .contains(&("Authorization", bearer.as_str()))
    );
    conf.stop().await;
}

#[actix_web::test]
async fn qr_exchange_conforms() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    let headers = conf.headers(None);
    let exchange = |qr: Value| conf.call("POST", QR_EXCHANGE, &headers, Some(qr));

    let clear = format!("https://qr.vipps.no/28/2/01/031/{KARI}?v=1");
    let r = exchange(json!({"qrCode": clear})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["msisdn"], KARI);
    assert_eq!(r.body["version"], "1.0");

    let mette = conf.control.get(&format!("/customers/{METTE}")).await;
    let token_qr = mette["qrTokenUrl"].as_str().expect("a token QR").to_owned();
    let r = exchange(json!({"qrCode": token_qr, "requestedData": ["MSISDN"]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["msisdn"], METTE);
    assert_eq!(r.body["version"], "2.0");
    assert!(r.body["timestamp"].is_i64(), "{}", r.body);

    for garbage in ["garbage", "https://qr.vipps.no/p/no-such-token", ""] {
        let r = exchange(json!({ "qrCode": garbage })).await;
        assert_eq!(r.status, 400, "{garbage}: {}", r.body);
        assert_eq!(r.fields(), ["qrCode"], "{garbage}");
    }

    let (r, _) = conf
        .call_invalid("POST", QR_EXCHANGE, &headers, Some(json!({})))
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.fields(), ["qrCode"]);

    // A wrong token passes the files, no token breaks them: both are refused with 401.
    let bad = conf.merchant_headers("Bearer not-a-token");
    let anonymous: Vec<(&str, &str)> = headers
        .iter()
        .filter(|(k, _)| *k != "Authorization")
        .copied()
        .collect();
    let body = json!({"qrCode": clear});
    let r = conf
        .call("POST", QR_EXCHANGE, &bad, Some(body.clone()))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let (r, _) = conf
        .call_invalid("POST", QR_EXCHANGE, &anonymous, Some(body))
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    conf.stop().await;
}

#[actix_web::test]
async fn check_in_conforms() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    let headers = conf.headers(None);
    let path = "/point-of-sale/v1/loyalty-check-in";

    for (phone, member) in [(KARI, true), (OLA, false)] {
        let body = json!({"phoneNumber": phone, "isMember": member});
        let r = conf.call("POST", path, &headers, Some(body)).await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert!(r.body.is_string(), "a GUID: {}", r.body);
    }

    let cases = [
        (
            json!({"phoneNumber": METTE, "isMember": true}),
            vec!["phoneNumber"],
        ),
        (
            json!({"phoneNumber": "+4791234567", "isMember": true}),
            vec!["phoneNumber"],
        ),
        (json!({"phoneNumber": KARI}), vec!["isMember"]),
        (
            json!({"phoneNumber": KARI, "isMember": "yes"}),
            vec!["isMember"],
        ),
        (json!({}), vec!["phoneNumber", "isMember"]),
    ];
    for (body, fields) in cases {
        let (r, _) = conf
            .call_invalid("POST", path, &headers, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.fields(), fields, "{body}");
    }

    let bad = conf.merchant_headers("Bearer not-a-token");
    let body = json!({"phoneNumber": KARI, "isMember": true});
    let r = conf.call("POST", path, &bad, Some(body)).await;
    assert_eq!(r.status, 401, "{}", r.body);

    let recorded = conf.control.get("/checkins").await;
    let outcomes: Vec<&str> = recorded
        .as_array()
        .expect("a list")
        .iter()
        .filter_map(|c| c["outcome"].as_str())
        .collect();
    assert_eq!(outcomes.iter().filter(|o| **o == "accepted").count(), 2);
    assert_eq!(outcomes.iter().filter(|o| **o == "rejected").count(), 5);
    conf.stop().await;
}

/// Starts a CIBA authentication for `phone` (no file describes it) and checks its answer
/// against VIPPS.md: `{auth_req_id, expires_in, interval}`.
async fn ciba(conf: &Conformance, phone: &str) -> String {
    assert!(
        conf.specs.operation("POST", CIBA_PATH).is_none(),
        "CIBA authentication is in a file now; validate it with Conformance::call"
    );
    let res = conf
        .http
        .post(format!("{}{CIBA_PATH}", conf.base))
        .header("Authorization", basic(CLIENT_ID, CLIENT_SECRET))
        .form(&[
            ("login_hint", format!("urn:msisdn:{phone}")),
            (
                "scope",
                "openid name phoneNumber email delegatedConsents".into(),
            ),
            ("binding_message", "LANE-01".into()),
        ])
        .send()
        .await
        .expect("the simulator answers");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("a JSON answer");
    let fields: Vec<&String> = body.as_object().expect("an object").keys().collect();
    assert_eq!(fields, ["auth_req_id", "expires_in", "interval"], "{body}");
    assert!(
        body["auth_req_id"].as_str().is_some_and(|s| !s.is_empty()),
        "{body}"
    );
    assert!(
        body["expires_in"]
            .as_u64()
            .is_some_and(|s| (60..=900).contains(&s)),
        "{body}"
    );
    assert!(body["interval"].as_u64().is_some_and(|s| s >= 1), "{body}");
    body["auth_req_id"].as_str().unwrap_or_default().to_owned()
}

#[actix_web::test]
async fn ciba_authentication_errors_have_the_oauth_shape() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    let post = |auth: String, form: Vec<(&'static str, String)>| {
        conf.http
            .post(format!("{}{CIBA_PATH}", conf.base))
            .header("Authorization", auth)
            .form(&form)
            .send()
    };
    let hint = |p: &str| ("login_hint", format!("urn:msisdn:{p}"));
    let scope = ("scope", "openid name".to_owned());
    let cases = [
        (
            basic(CLIENT_ID, "wrong"),
            vec![hint(KARI), scope.clone()],
            401,
            "invalid_client",
        ),
        (
            basic(CLIENT_ID, CLIENT_SECRET),
            vec![hint("4799999999"), scope.clone()],
            400,
            "unknown_user_id",
        ),
        (
            basic(CLIENT_ID, CLIENT_SECRET),
            vec![hint(KARI), ("scope", "name".into())],
            400,
            "invalid_scope",
        ),
        (
            basic(CLIENT_ID, CLIENT_SECRET),
            vec![scope.clone()],
            400,
            "invalid_request",
        ),
    ];
    for (auth, form, status, error) in cases {
        let res = post(auth, form.clone()).await.expect("an answer");
        assert_eq!(res.status(), status, "{form:?}");
        let body: Value = res.json().await.expect("JSON");
        assert_eq!(body["error"], error, "{form:?}: {body}");
    }
    // Two logins to the same customer overlap: 429 with Retry-After.
    ciba(&conf, KARI).await;
    let res = post(basic(CLIENT_ID, CLIENT_SECRET), vec![hint(KARI), scope])
        .await
        .expect("an answer");
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    let body: Value = res.json().await.expect("JSON");
    assert!(body["error"].is_string(), "{body}");
    conf.stop().await;
}

#[actix_web::test]
async fn login_token_userinfo_and_discovery_conform() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    // The customers answer only when told to, so every poll below sees a known state.
    for phone in [KARI, OLA, IVAR] {
        conf.control.call(reqwest::Method::PUT,
            &format!("/customers/{phone}/behaviour"),
            Some(
                json!({"payment": "ignore", "paymentDelay": 0, "login": "ignore", "loginDelay": 0}),
            ),
        )
        .await;
    }
    let auth = basic(CLIENT_ID, CLIENT_SECRET);
    let form_headers: Vec<(&str, &str)> = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let poll = |id: &str| {
        let body = json!({"grant_type": CIBA_GRANT, "auth_req_id": id});
        conf.call("POST", TOKEN_PATH, &form_headers, Some(body))
    };

    let kari = ciba(&conf, KARI).await;
    let r = poll(&kari).await;
    assert_oauth_error(&r, 400, "authorization_pending");
    let r = poll(&kari).await;
    assert_oauth_error(&r, 400, "slow_down");
    conf.control.post(&format!("/logins/{kari}/consent")).await;
    conf.control.advance(5_000).await;
    let r = poll(&kari).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["token_type"], "Bearer");
    let access_token = r.body["access_token"].as_str().expect("a token").to_owned();
    assert!(r.body["id_token"].is_string());
    // Userinfo with the Login access token only (no subscription key), as VIPPS.md says; the
    // token lives 5 minutes, so before the clock moves far.
    let login_bearer = format!("Bearer {access_token}");
    let userinfo = "/vipps-userinfo-api/userinfo";
    let r = conf
        .call(
            "GET",
            userinfo,
            &[("Authorization", login_bearer.as_str())],
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["phone_number"], KARI);
    assert!(r.body["sub"].is_string());
    let consents = r.body["delegatedConsents"]["consents"]
        .as_array()
        .expect("consents were asked for");
    assert!(consents.iter().all(|c| c["accepted"].is_boolean()));
    let r = conf
        .call(
            "GET",
            userinfo,
            &[("Authorization", "Bearer not-a-login-token")],
            None,
        )
        .await;
    assert_eq!(r.status, 401, "{}", r.body);
    let (r, _) = conf.call_invalid("GET", userinfo, &[], None).await;
    assert_eq!(r.status, 401, "{}", r.body);

    conf.control.advance(5_000).await;
    let r = poll(&kari).await;
    // A token is issued once.
    assert_oauth_error(&r, 400, "invalid_grant");

    let ola = ciba(&conf, OLA).await;
    conf.control.post(&format!("/logins/{ola}/deny")).await;
    let r = poll(&ola).await;
    assert_oauth_error(&r, 400, "access_denied");

    let ivar = ciba(&conf, IVAR).await;
    conf.control.advance(901_000).await;
    let r = poll(&ivar).await;
    assert_oauth_error(&r, 400, "expired_token");

    let r = poll("no-such-request").await;
    assert_oauth_error(&r, 400, "invalid_grant");
    let body = json!({"grant_type": "authorization_code", "auth_req_id": "x"});
    let r = conf
        .call("POST", TOKEN_PATH, &form_headers, Some(body))
        .await;
    assert_oauth_error(&r, 400, "unsupported_grant_type");
    let wrong = basic(CLIENT_ID, "wrong");
    let wrong_headers = [
        ("Authorization", wrong.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let body = json!({"grant_type": CIBA_GRANT, "auth_req_id": kari});
    let r = conf
        .call("POST", TOKEN_PATH, &wrong_headers, Some(body))
        .await;
    assert_oauth_error(&r, 401, "invalid_client");
    let (r, _) = conf
        .call_invalid(
            "POST",
            TOKEN_PATH,
            &form_headers,
            Some(json!({"auth_req_id": kari})),
        )
        .await;
    assert_oauth_error(&r, 400, "invalid_request");

    let r = conf
        .call(
            "GET",
            "/access-management-1.0/access/.well-known/openid-configuration",
            &system_headers(),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token_endpoint = r.body["token_endpoint"].as_str().expect("token_endpoint");
    assert_eq!(token_endpoint, format!("{}{TOKEN_PATH}", conf.base));
    let jwks = r.body["jwks_uri"].as_str().expect("jwks_uri");
    let jwks_path = jwks
        .strip_prefix(&conf.base)
        .expect("served here")
        .to_owned();
    let r = conf.call("GET", &jwks_path, &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    conf.stop().await;
}

/// An in-store payment as lanehub sends it, with every optional field of the order-management
/// receipt.
fn store_payment(reference: &str, phone: &str, value: u64) -> Value {
    let mut body = common_sim::store_payment(reference, phone, value);
    let line = &mut body["receipt"]["orderLines"][0];
    line["discount"] = json!(0);
    line["isReturn"] = json!(false);
    line["isShipping"] = json!(false);
    let bottom_line = &mut body["receipt"]["bottomLine"];
    bottom_line["tipAmount"] = json!(0);
    bottom_line["terminalId"] = json!("T1");
    body
}

/// Merchant calls with the token fetched at the start.
impl Conformance {
    /// The merchant headers, plus an Idempotency-Key when given.
    fn headers<'k>(&'k self, key: Option<&'k str>) -> Vec<(&'k str, &'k str)> {
        let mut h = self.merchant_headers(&self.bearer);
        if let Some(key) = key {
            h.push(("Idempotency-Key", key));
        }
        h
    }

    async fn create(&self, key: &str, body: Value) -> Answer {
        self.call("POST", PAYMENTS, &self.headers(Some(key)), Some(body))
            .await
    }

    async fn get(&self, reference: &str) -> Answer {
        let path = format!("{PAYMENTS}/{reference}");
        self.call("GET", &path, &self.headers(None), None).await
    }

    async fn events(&self, reference: &str) -> Answer {
        let path = format!("{PAYMENTS}/{reference}/events");
        self.call("GET", &path, &self.headers(None), None).await
    }

    async fn modify(&self, reference: &str, op: &str, key: &str, body: Option<Value>) -> Answer {
        let path = format!("{PAYMENTS}/{reference}/{op}");
        self.call("POST", &path, &self.headers(Some(key)), body)
            .await
    }

    async fn amount(&self, reference: &str, op: &str, key: &str, value: u64) -> Answer {
        let body = json!({"modificationAmount": {"currency": "NOK", "value": value}});
        self.modify(reference, op, key, Some(body)).await
    }

    async fn approve(&self, reference: &str, body: Option<Value>) -> Answer {
        let path = format!("/epayment/v1/test/payments/{reference}/approve");
        self.call("POST", &path, &self.headers(None), body).await
    }

    /// A payment to a customer who ignores it, created with the key `c-<reference>`.
    async fn created(&self, reference: &str, value: u64) {
        let body = store_payment(reference, IVAR, value);
        let r = self.create(&format!("c-{reference}"), body).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }

    /// A payment created and force-approved.
    async fn authorized(&self, reference: &str, value: u64) {
        self.created(reference, value).await;
        let r = self.approve(reference, None).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
}

#[actix_web::test]
async fn epayment_create_get_and_events_conform() {
    let Some(conf) = Conformance::start().await else {
        return;
    };

    let r = conf
        .create("k-minimal", minimal_payment("conf-minimal-1", IVAR, 1000))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["reference"], "conf-minimal-1");
    let r = conf
        .create("k-receipt", store_payment("conf-receipt-1", IVAR, 24900))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    // The same key and body again is a replay of the first answer.
    let r = conf
        .create("k-receipt", store_payment("conf-receipt-1", IVAR, 24900))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);

    let r = conf.get("conf-receipt-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "CREATED");
    assert_eq!(r.body["amount"]["value"], 24900);
    let r = conf.events("conf-receipt-1").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(event_names(&r), ["CREATED"]);

    // A customer lanehub does not know passes the schema but is refused (7010).
    let r = conf
        .create(
            "k-unknown",
            minimal_payment("conf-unknown-1", "4799999999", 1000),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), Some("7010"));

    // 409: the key again with another body, and a reference used by another payment.
    let r = conf
        .create("k-receipt", store_payment("conf-receipt-1", IVAR, 25000))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(
        r.fields().first().map(String::as_str),
        Some("Idempotency-Key")
    );
    let r = conf
        .create("k-other", minimal_payment("conf-receipt-1", IVAR, 1000))
        .await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert_eq!(r.fields().first().map(String::as_str), Some("reference"));

    // 404 for an unknown reference (a documented deviation for get and events).
    for r in [
        conf.get("conf-nothing-here").await,
        conf.events("conf-nothing-here").await,
    ] {
        assert_eq!(r.status, 404, "{}", r.body);
        assert_eq!(r.fields().first().map(String::as_str), Some("reference"));
    }

    // Another merchant's serial number with this merchant's token: 403 from the API.
    let mut headers = conf.headers(Some("k-msn"));
    headers.retain(|(k, _)| *k != "Merchant-Serial-Number");
    headers.push(("Merchant-Serial-Number", "999999"));
    let body = minimal_payment("conf-msn-1", IVAR, 1000);
    let r = conf.call("POST", PAYMENTS, &headers, Some(body)).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(r.fields(), ["Merchant-Serial-Number"]);

    // Bad or missing credentials: the gateway answers 401.
    let mut bad = conf.merchant_headers("Bearer not-a-token");
    let path = format!("{PAYMENTS}/conf-receipt-1");
    assert_eq!(conf.call("GET", &path, &bad, None).await.status, 401);
    bad.push(("Idempotency-Key", "k-x"));
    let body = minimal_payment("conf-bad-1", IVAR, 1000);
    let r = conf.call("POST", PAYMENTS, &bad, Some(body)).await;
    assert_eq!(r.status, 401);
    conf.stop().await;
}

#[actix_web::test]
async fn epayment_validation_errors_conform() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    // Each case has its own reference: the rate limit counts refused creates too.
    let valid = || store_payment("conf-invalid-0", IVAR, 24900);
    let with = |at: &str, value: Value| with_field(&valid(), at, value);
    let without = |at: &str| without_field(&valid(), at);
    // Each body breaks the files in one place; the answer is a 400 naming that place.
    let cases: Vec<(Value, &str)> = vec![
        (without("/reference"), "reference"),
        (without("/amount"), "amount"),
        (without("/amount/value"), "amount.value"),
        (with("/amount/value", json!("249.00")), "amount.value"),
        (with("/amount/value", json!(249.5)), "amount.value"),
        (with("/amount/value", json!(-1)), "amount.value"),
        (with("/amount/value", json!(65_000_001)), "amount.value"),
        (with("/amount/currency", json!("USD")), "amount.currency"),
        (with("/reference", json!("bad reference!")), "reference"),
        (with("/reference", json!("short")), "reference"),
        (with("/userFlow", json!("TELEPATHY")), "userFlow"),
        (
            with("/paymentMethod/type", json!("CASH")),
            "paymentMethod.type",
        ),
        (
            with(
                "/customer",
                json!({"phoneNumber": KARI, "personalQr": "https://qr.vipps.no/p/x"}),
            ),
            "customer",
        ),
        (with("/customer", json!({})), "customer"),
        (
            with("/paymentDescription", json!("x")),
            "paymentDescription",
        ),
        (
            with("/customerInteraction", json!("ROBOT")),
            "customerInteraction",
        ),
        // The order-management Receipt, reached through the remote $ref.
        (
            without("/receipt/orderLines/0/totalAmount"),
            "receipt.orderLines[0].totalAmount",
        ),
        (
            with("/receipt/orderLines/0/taxPercentage", json!("15")),
            "receipt.orderLines[0].taxPercentage",
        ),
        (
            with(
                "/receipt/orderLines/0/unitInfo/quantityUnit",
                json!("BUCKET"),
            ),
            "receipt.orderLines[0].unitInfo.quantityUnit",
        ),
        (without("/receipt/bottomLine"), "receipt.bottomLine"),
        (
            with("/receipt/bottomLine/currency", json!("SEK")),
            "receipt.bottomLine.currency",
        ),
        (json!([]), "body"),
    ];
    for (i, (mut body, field)) in cases.into_iter().enumerate() {
        if body["reference"] == "conf-invalid-0" {
            body["reference"] = json!(format!("conf-invalid-{i}"));
        }
        let key = format!("k-invalid-{i}");
        let headers = conf.headers(Some(&key));
        let (r, violations) = conf
            .call_invalid("POST", PAYMENTS, &headers, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.fields().iter().any(|f| f == field),
            "{body}: the answer names {:?}, not {field} ({violations:?})",
            r.fields()
        );
    }

    // Headers: no Idempotency-Key, and one longer than 50 characters.
    let long = "k".repeat(51);
    for (key, reference) in [
        (None, "conf-nokey-1"),
        (Some(long.as_str()), "conf-longkey-1"),
    ] {
        let body = store_payment(reference, IVAR, 100);
        let (r, _) = conf
            .call_invalid("POST", PAYMENTS, &conf.headers(key), Some(body))
            .await;
        let first = r.fields().first().cloned();
        assert_eq!(
            (r.status, first.as_deref()),
            (400, Some("Idempotency-Key")),
            "{reference}"
        );
    }
    // Nothing was created by any of them.
    for reference in ["conf-invalid-1", "conf-nokey-1", "conf-longkey-1"] {
        let r = conf.get(reference).await;
        assert_eq!(r.status, 404, "{reference}: {}", r.body);
    }
    conf.stop().await;
}

#[actix_web::test]
async fn epayment_modifications_conform() {
    let Some(conf) = Conformance::start().await else {
        return;
    };

    // Capture, then refund, of an authorised payment.
    conf.authorized("conf-capture-1", 24900).await;
    let r = conf
        .amount("conf-capture-1", "capture", "cap-1", 24900)
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "AUTHORIZED");
    assert_eq!(r.body["aggregate"]["capturedAmount"]["value"], 24900);
    let r = conf.amount("conf-capture-1", "capture", "cap-2", 100).await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = conf.amount("conf-capture-1", "refund", "ref-1", 900).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["aggregate"]["refundedAmount"]["value"], 900);
    let r = conf
        .amount("conf-capture-1", "refund", "ref-2", 30000)
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), Some("6150"));
    // The same key with another amount is a conflict; with the same amount, a replay.
    let r = conf.amount("conf-capture-1", "refund", "ref-1", 800).await;
    assert_eq!(r.status, 409, "{}", r.body);
    let r = conf.amount("conf-capture-1", "refund", "ref-1", 900).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = conf.events("conf-capture-1").await;
    let names = event_names(&events);
    assert_eq!(names, ["CREATED", "AUTHORIZED", "CAPTURED", "REFUNDED"]);

    // Cancel without a body cancels an authorised payment; cancelTransactionOnly refuses to.
    conf.authorized("conf-cancel-1", 5000).await;
    let only = Some(json!({"cancelTransactionOnly": true}));
    let r = conf
        .modify("conf-cancel-1", "cancel", "can-1", only.clone())
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), Some("6060"));
    let r = conf.modify("conf-cancel-1", "cancel", "can-2", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["aggregate"]["cancelledAmount"]["value"], 5000);
    // cancelTransactionOnly on a payment not yet authorised terminates it.
    conf.created("conf-cancel-2", 5000).await;
    let r = conf
        .modify("conf-cancel-2", "cancel", "can-3", only.clone())
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["state"], "TERMINATED");
    let r = conf.amount("conf-cancel-2", "capture", "cap-3", 5000).await;
    assert_eq!(r.status, 400, "{}", r.body);

    // Force approve: with the customer named, and refused once the payment is final.
    conf.created("conf-approve-1", 5000).await;
    let r = conf
        .approve(
            "conf-approve-1",
            Some(json!({"customer": {"phoneNumber": IVAR}})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(conf.get("conf-approve-1").await.body["state"], "AUTHORIZED");
    let r = conf.approve("conf-approve-1", None).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.error_code(), Some("10020"));

    // 404 for an unknown reference, on every modification.
    let missing = "conf-nothing-here";
    let amount = || Some(json!({"modificationAmount": {"currency": "NOK", "value": 100}}));
    for (op, body) in [
        ("cancel", None),
        ("capture", amount()),
        ("refund", amount()),
    ] {
        let r = conf
            .modify(missing, op, &format!("{op}-missing"), body)
            .await;
        assert_eq!(r.status, 404, "{op}: {}", r.body);
    }
    assert_eq!(conf.approve(missing, None).await.status, 404);

    // Broken modification bodies and paths, each on its own reference (rate limits).
    let headers = conf.headers(Some("cap-bad"));
    for (i, body) in [
        json!({}),
        json!({"modificationAmount": {"currency": "NOK", "value": "100"}}),
        json!({"modificationAmount": {"currency": "XXX", "value": 100}}),
        json!({"modificationAmount": {"currency": "NOK", "value": -5}}),
    ]
    .into_iter()
    .enumerate()
    {
        let capture = format!("{PAYMENTS}/conf-badbody-{i}/capture");
        let (r, _) = conf
            .call_invalid("POST", &capture, &headers, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert!(
            r.fields()
                .iter()
                .any(|f| f.starts_with("modificationAmount")),
            "{body}: {}",
            r.body
        );
    }
    let headers = conf.headers(Some("cap-bad-path"));
    let bad_path = format!("{PAYMENTS}/bad!ref/capture");
    let (r, _) = conf
        .call_invalid("POST", &bad_path, &headers, amount())
        .await;
    assert_eq!(
        (r.status, r.fields().first().map(String::as_str)),
        (400, Some("reference"))
    );
    let headers = conf.headers(None);
    let (r, _) = conf
        .call_invalid(
            "GET",
            &format!("{PAYMENTS}/{}", "r".repeat(65)),
            &headers,
            None,
        )
        .await;
    assert_eq!(
        (r.status, r.fields().first().map(String::as_str)),
        (400, Some("reference"))
    );
    conf.stop().await;
}

#[actix_web::test]
async fn epayment_rate_limits_answer_429() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    conf.authorized("conf-limit-1", 10000).await;
    // Five captures a minute per reference; the sixth is throttled.
    for i in 0..5 {
        let r = conf
            .amount("conf-limit-1", "capture", &format!("lim-{i}"), 100)
            .await;
        assert_eq!(r.status, 200, "{i}: {}", r.body);
    }
    let r = conf.amount("conf-limit-1", "capture", "lim-5", 100).await;
    assert_eq!(r.status, 429, "{}", r.body);
    let retry_after: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Reads have their own, larger budget, and the window passes with the clock.
    assert_eq!(conf.get("conf-limit-1").await.status, 200);
    conf.control.advance(retry_after * 1000).await;
    let r = conf.amount("conf-limit-1", "capture", "lim-5", 100).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["aggregate"]["capturedAmount"]["value"], 600);
    conf.stop().await;
}

#[actix_web::test]
async fn webhooks_api_conforms() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    let headers = conf.headers(None);
    let register = |body: Value| conf.call("POST", WEBHOOKS, &headers, Some(body));

    let r = register(json!({
        "url": "https://example.com/hooks/vipps?lane=1",
        "events": ["epayments.payment.authorized.v1", "epayments.payment.captured.v1"]
    }))
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().expect("an id").to_owned();
    assert!(r.body["secret"].as_str().is_some_and(|s| !s.is_empty()));

    let r = conf.call("GET", WEBHOOKS, &headers, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let listed = r.body["webhooks"].as_array().expect("a list");
    assert!(listed.iter().any(|w| w["id"] == id.as_str()), "{}", r.body);

    for (body, field) in [
        (
            json!({"url": "https://example.com/x", "events": ["no.such.event"]}),
            "events[0]",
        ),
        (
            json!({"url": "http://example.com/x", "events": ["epayments.payment.created.v1"]}),
            "url",
        ),
        (
            json!({"url": "not a url", "events": ["epayments.payment.created.v1"]}),
            "url",
        ),
        (
            json!({"url": "https://example.com/x", "events": []}),
            "events",
        ),
    ] {
        let r = register(body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.fields(), [field], "{body}");
    }
    for (body, field) in [
        (json!({"events": ["epayments.payment.created.v1"]}), "url"),
        (json!({"url": "https://example.com/x"}), "events"),
        (
            json!({"url": "https://example.com/x", "events": "epayments.payment.created.v1"}),
            "events",
        ),
        (
            json!({"url": "https://example.com/x", "events": [], "extra": 1}),
            "extra",
        ),
    ] {
        let (r, _) = conf
            .call_invalid("POST", WEBHOOKS, &headers, Some(body.clone()))
            .await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        assert_eq!(r.fields(), [field], "{body}");
    }

    let path = format!("{WEBHOOKS}/{id}");
    let r = conf.call("DELETE", &path, &headers, None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    // Deleting it again: 404 (a documented deviation).
    let r = conf.call("DELETE", &path, &headers, None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = conf
        .call("DELETE", &format!("{WEBHOOKS}/not-a-uuid"), &headers, None)
        .await;
    assert_eq!((r.status, r.fields()), (400, vec!["id".to_owned()]));
    let r = conf.call("GET", WEBHOOKS, &headers, None).await;
    assert_eq!(r.body["webhooks"], json!([]));

    let bad = conf.merchant_headers("Bearer not-a-token");
    assert_eq!(conf.call("GET", WEBHOOKS, &bad, None).await.status, 401);
    conf.stop().await;
}
