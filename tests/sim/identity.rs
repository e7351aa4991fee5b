//! Black-box tests of the simulator's identity APIs over HTTP: QR exchange, check-in, and Login
//! from phone number (CIBA) with userinfo and discovery. Each test starts its own simulator on a
//! free port; time moves with the control API's clock, never with sleeps.

use lanehub::sim::SimServer;
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

use crate::common::sim::{SimControl, merchant_token, serve_simulator};

const KARI: &str = "4791234567"; // member, consents after 3 s
const OLA: &str = "4798765432"; // not a member, consents after 3 s
const NORA: &str = "4790000001"; // denies after 3 s
const IVAR: &str = "4790000002"; // ignores
const METTE: &str = "4512345678"; // MobilePay, tokenised QR only
const CIBA_GRANT: &str = "urn:openid:params:grant-type:ciba";

struct Sim {
    server: SimServer,
    http: Client,
    base: String,
    control: SimControl,
}

async fn start() -> Sim {
    let server = serve_simulator(|_| {});
    let base = server.base_url();
    Sim {
        control: SimControl::new(base.clone()),
        server,
        http: Client::new(),
        base,
    }
}

async fn json_of(res: Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
    (status, body)
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A merchant access token for the demo merchant.
    async fn token(&self) -> String {
        merchant_token(&self.http, &self.base).await
    }

    /// A merchant call with a raw body and content type.
    async fn merchant_post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("Ocp-Apim-Subscription-Key", "sim-subscription-key")
            .header("Merchant-Serial-Number", "123456")
            .header("Content-Type", content_type)
            .body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        json_of(req.send().await.expect("merchant call")).await
    }

    /// Asserts that `broken` JSON sent to `path` is refused naming the body in `list`.
    async fn assert_broken_json_refused(&self, path: &str, token: &str, broken: &str, list: &str) {
        let (status, body) = self
            .merchant_post(path, Some(token), "application/json", broken)
            .await;
        assert_refused_naming(status, &body, &json!(broken), list, "body");
    }

    async fn merchant_json(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.merchant_post(path, Some(token), "application/json", &body.to_string())
            .await
    }

    async fn control_get(&self, path: &str) -> (StatusCode, Value) {
        json_of(
            self.http
                .get(self.url(&format!("/sim/v1{path}")))
                .send()
                .await
                .expect("control call"),
        )
        .await
    }

    async fn control_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, self.url(&format!("/sim/v1{path}")));
        if let Some(b) = body {
            req = req.json(&b);
        }
        json_of(req.send().await.expect("control call")).await
    }

    async fn ciba_authenticate(&self, form: &[(&str, &str)]) -> Response {
        self.http
            .post(self.url("/vipps-login-ciba/api/backchannel/authentication"))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(form)
            .send()
            .await
            .expect("authentication call")
    }

    /// Starts a login with `form`, which must be accepted; the answer.
    async fn started(&self, form: &[(&str, &str)]) -> Value {
        let (status, body) = json_of(self.ciba_authenticate(form).await).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Starts a login to `phone` and returns its `auth_req_id`.
    async fn start_login(&self, phone: &str, scope: &str) -> String {
        let hint = format!("urn:msisdn:{phone}");
        let body = self
            .started(&[("login_hint", &hint), ("scope", scope)])
            .await;
        body["auth_req_id"]
            .as_str()
            .expect("auth_req_id")
            .to_owned()
    }

    async fn poll(&self, auth_req_id: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .post(self.url("/access-management-1.0/access/oauth2/token"))
            .basic_auth("sim-client", Some("sim-secret"))
            .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", auth_req_id)])
            .send()
            .await
            .expect("token call");
        json_of(res).await
    }

    /// Asserts that a poll of `auth_req_id` is refused with a 400 and `error`.
    async fn assert_poll_refused(&self, auth_req_id: &str, error: &str) {
        let (status, body) = self.poll(auth_req_id).await;
        assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, error);
    }

    async fn userinfo(&self, bearer: &str) -> (StatusCode, Value) {
        let res = self
            .http
            .get(self.url("/vipps-userinfo-api/userinfo"))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("userinfo call");
        json_of(res).await
    }

    async fn login_state(&self, auth_req_id: &str) -> String {
        let (status, body) = self.control_get(&format!("/logins/{auth_req_id}")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["state"].as_str().expect("state").to_owned()
    }
}

/// Asserts that `bad` got a 400 whose `list` (`extraDetails`, `invalidParams`) names `field`
/// first, with a reason.
fn assert_refused_naming(status: StatusCode, body: &Value, bad: &Value, list: &str, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad} -> {body}");
    assert_eq!(body[list][0]["name"], field, "{bad} -> {body}");
    assert!(body[list][0]["reason"].is_string(), "{body}");
}

fn assert_oauth_error(status: StatusCode, body: &Value, want_status: StatusCode, error: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"], error, "{body}");
    assert!(body["error_description"].is_string(), "{body}");
}

#[actix_web::test]
async fn qr_exchange_answers_clear_text_and_tokens_and_rejects_the_rest() {
    let sim = start().await;
    let token = sim.token().await;
    let exchange = "/qr/v1/exchange";

    let clear = format!("https://qr.vipps.no/28/2/01/031/{KARI}?v=1");
    let (status, body) = sim
        .merchant_json(exchange, &token, json!({"qrCode": clear}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"msisdn": KARI, "version": "1.0"}));

    let (_, mette) = sim.control_get(&format!("/customers/{METTE}")).await;
    let qr = mette["qrTokenUrl"].as_str().expect("token QR");
    assert!(qr.starts_with("https://qr.vipps.no/p/"), "{qr}");
    let body = json!({"qrCode": qr, "requestedData": ["MSISDN"]});
    let (status, body) = sim.merchant_json(exchange, &token, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["msisdn"], METTE);
    assert_eq!(body["version"], "2.0");
    let age = chrono::Utc::now().timestamp() - body["timestamp"].as_i64().expect("timestamp");
    assert!(age.abs() < 60, "{body}");

    for bad in [
        json!({"qrCode": "garbage"}),
        json!({"qrCode": "https://qr.vipps.no/p/0123456789abcdef"}),
        json!({"qrCode": format!("https://qr.vipps.no/28/2/01/031/{METTE}?v=1")}),
        json!({"qrCode": ""}),
        json!({}),
    ] {
        let (status, body) = sim.merchant_json(exchange, &token, bad.clone()).await;
        assert_refused_naming(status, &body, &bad, "extraDetails", "qrCode");
        assert_eq!(body["status"], 400, "{body}");
        assert!(
            body["title"].is_string() && body["detail"].is_string(),
            "{body}"
        );
    }

    sim.assert_broken_json_refused(exchange, &token, "{\"qrCode\": ", "extraDetails")
        .await;
    let (status, body) = sim
        .merchant_post(exchange, Some(&token), "text/plain", &clear)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body["detail"].is_string(), "{body}");

    // The gateway checks the token before anything looks at the body.
    let (status, _) = sim
        .merchant_post(exchange, None, "application/json", "{\"qrCode\": ")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = sim
        .merchant_json(exchange, "sim.not-issued", json!({"qrCode": clear}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    sim.server.stop().await;
}

#[actix_web::test]
async fn check_in_validates_and_records_what_the_app_showed() {
    let sim = start().await;
    let token = sim.token().await;
    let check_in = "/point-of-sale/v1/loyalty-check-in";

    for (phone, member) in [(KARI, true), (OLA, false)] {
        let body = json!({"phoneNumber": phone, "isMember": member});
        let (status, body) = sim.merchant_json(check_in, &token, body).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let id = body.as_str().expect("a bare GUID string");
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    }

    let invalid = [
        (
            json!({"phoneNumber": METTE, "isMember": true}),
            "phoneNumber",
        ),
        (json!({"phoneNumber": KARI}), "isMember"),
        (json!({"phoneNumber": KARI, "isMember": "yes"}), "isMember"),
    ];
    for (bad, field) in invalid {
        let (status, body) = sim.merchant_json(check_in, &token, bad.clone()).await;
        assert_refused_naming(status, &body, &bad, "invalidParams", field);
        for key in ["title", "detail", "instance"] {
            assert!(body[key].is_string(), "{key} in {body}");
        }
    }
    sim.assert_broken_json_refused(check_in, &token, "not json", "invalidParams")
        .await;
    let (status, _) = sim
        .merchant_post(check_in, None, "application/json", "{}")
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, all) = sim.control_get("/checkins").await;
    assert_eq!(status, StatusCode::OK, "{all}");
    let summary: Vec<(Value, Value, Value)> = all
        .as_array()
        .expect("a list")
        .iter()
        .map(|r| {
            (
                r["phoneNumber"].clone(),
                r["outcome"].clone(),
                r["shown"].clone(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (json!(KARI), json!("accepted"), json!("member_check_in")),
            (json!(OLA), json!("accepted"), json!("waiting_screen")),
            (json!(METTE), json!("rejected"), Value::Null),
            (json!(KARI), json!("rejected"), Value::Null),
            (json!(KARI), json!("rejected"), Value::Null),
            (Value::Null, json!("rejected"), Value::Null),
        ]
    );
    assert_eq!(all[0]["merchantSerialNumber"], "123456");
    assert_eq!(all[0]["isMember"], true);
    assert!(all[0]["id"].is_string() && all[0]["timestamp"].is_string());
    assert_eq!(all[3]["errors"][0]["name"], "isMember");

    let (_, ola) = sim
        .control_get(&format!("/checkins?phoneNumber={OLA}"))
        .await;
    assert_eq!(ola.as_array().map(Vec::len), Some(1), "{ola}");
    assert_eq!(ola[0]["isMember"], false);
    let (status, _) = sim.control_get("/checkins?phone=1").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    sim.server.stop().await;
}

#[actix_web::test]
async fn login_consent_gives_one_token_and_userinfo_with_consents() {
    let sim = start().await;
    let scope = "openid name phoneNumber email delegatedConsents";
    let hint = format!("urn:msisdn:{KARI}");
    let form = [
        ("login_hint", hint.as_str()),
        ("scope", scope),
        ("binding_message", "LANE-1"),
    ];
    let started = sim.started(&form).await;
    assert_eq!(started["expires_in"], 600);
    assert_eq!(started["interval"], 5);
    let id = started["auth_req_id"].as_str().expect("auth_req_id");

    // A second login to the same customer while the first waits.
    let res = sim
        .ciba_authenticate(&[("login_hint", &hint), ("scope", "openid")])
        .await;
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=600).contains(&retry_after), "{retry_after}");
    let (status, body) = json_of(res).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");

    sim.assert_poll_refused(id, "authorization_pending").await;
    sim.assert_poll_refused(id, "slow_down").await;
    assert_eq!(sim.login_state(id).await, "pending");

    let consents = json!({"emailMarketing": true, "smsMarketing": true});
    let path = format!("/customers/{KARI}/consents");
    let (status, body) = sim
        .control_send(reqwest::Method::PUT, &path, Some(consents.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Kari consents 3 s after the request; the next poll is one interval after the last.
    sim.control.advance(5_000).await;
    assert_eq!(sim.login_state(id).await, "consented");
    let (status, token) = sim.poll(id).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["expires_in"], 300);
    assert_eq!(token["scope"], scope);
    let id_token = token["id_token"].as_str().expect("id_token is a string");
    assert_eq!(id_token.split('.').count(), 3, "{id_token}");
    let access = token["access_token"].as_str().expect("access_token");

    sim.control.advance(5_000).await;
    sim.assert_poll_refused(id, "invalid_grant").await;
    assert_eq!(sim.login_state(id).await, "completed");

    let (status, info) = sim.userinfo(access).await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["name"], "Kari Nordmann");
    assert_eq!(info["given_name"], "Kari");
    assert_eq!(info["family_name"], "Nordmann");
    assert_eq!(info["phone_number"], KARI);
    assert_eq!(info["email"], "kari.nordmann@example.com");
    assert!(info["sub"].is_string());
    assert!(info.get("address").is_none(), "address was not asked for");
    let consents = info["delegatedConsents"]["consents"]
        .as_array()
        .expect("consents");
    let by_id = |id: &str| {
        consents
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("consent {id} in {info}"))
    };
    assert_eq!(by_id("email_marketing")["accepted"], true);
    assert_eq!(by_id("sms_marketing")["accepted"], true);
    assert_eq!(by_id("membership_terms")["required"], true);
    assert!(by_id("sms_marketing")["textDisplayedToUser"].is_string());

    let merchant_token = sim.token().await;
    for bad in [merchant_token.as_str(), "sim-login.unknown"] {
        let (status, body) = sim.userinfo(bad).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert!(body["detail"].is_string(), "{body}");
    }
    sim.control.advance(300_000).await;
    let (status, _) = sim.userinfo(access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "the Login token expired");
    sim.server.stop().await;
}

#[actix_web::test]
async fn login_denied_by_the_customer_or_the_control_api() {
    let sim = start().await;
    let nora = sim.start_login(NORA, "openid name").await;
    sim.control.advance(3_000).await;
    assert_eq!(sim.login_state(&nora).await, "denied");
    sim.assert_poll_refused(&nora, "access_denied").await;

    let ola = sim.start_login(OLA, "openid").await;
    let (status, body) = sim
        .control_send(reqwest::Method::POST, &format!("/logins/{ola}/deny"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "denied");
    sim.assert_poll_refused(&ola, "access_denied").await;
    let consent = format!("/logins/{ola}/consent");
    let (status, body) = sim
        .control_send(reqwest::Method::POST, &consent, None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    // Ivar ignores requests, so only the control API can consent for him.
    let ivar = sim.start_login(IVAR, "openid phoneNumber").await;
    let consent = format!("/logins/{ivar}/consent");
    let (status, body) = sim
        .control_send(reqwest::Method::POST, &consent, None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, token) = sim.poll(&ivar).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    let (status, info) = sim
        .userinfo(token["access_token"].as_str().unwrap_or(""))
        .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["phone_number"], IVAR);
    assert!(info.get("name").is_none(), "name was not asked for: {info}");

    let (status, body) = sim
        .control_send(reqwest::Method::POST, "/logins/nope/consent", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    sim.server.stop().await;
}

#[actix_web::test]
async fn an_ignored_login_expires() {
    let sim = start().await;
    let hint = format!("urn:msisdn:{IVAR}");
    let form = [
        ("login_hint", hint.as_str()),
        ("scope", "openid"),
        ("requested_expiry", "60"),
    ];
    let started = sim.started(&form).await;
    assert_eq!(started["expires_in"], 60);
    let id = started["auth_req_id"].as_str().expect("auth_req_id");
    sim.assert_poll_refused(id, "authorization_pending").await;

    sim.control.advance(59_000).await;
    assert_eq!(sim.login_state(id).await, "pending");
    sim.control.advance(1_000).await;
    assert_eq!(sim.login_state(id).await, "expired");
    sim.assert_poll_refused(id, "expired_token").await;
    let (_, expired) = sim.control_get("/logins?state=expired").await;
    assert_eq!(expired.as_array().map(Vec::len), Some(1), "{expired}");

    // The customer is free for a new login once the old one expired.
    sim.start_login(IVAR, "openid").await;
    sim.server.stop().await;
}

#[actix_web::test]
async fn login_requests_with_errors_are_refused_in_oauth_style() {
    let sim = start().await;
    let kari = format!("urn:msisdn:{KARI}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("login_hint", "urn:msisdn:4799999999"), ("scope", "openid")],
            "unknown_user_id",
        ),
        (
            vec![("login_hint", &kari), ("scope", "name")],
            "invalid_scope",
        ),
        (
            vec![("login_hint", &kari), ("scope", "openid shoeSize")],
            "invalid_scope",
        ),
        (vec![("scope", "openid")], "invalid_request"),
        (
            vec![
                ("login_hint", &kari),
                ("scope", "openid"),
                ("requested_expiry", "30"),
            ],
            "invalid_request",
        ),
        (
            vec![
                ("login_hint", &kari),
                ("scope", "openid"),
                ("binding_message", "x"),
            ],
            "invalid_binding_message",
        ),
    ];
    for (form, error) in cases {
        let (status, body) = json_of(sim.ciba_authenticate(&form).await).await;
        assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, error);
    }

    let auth_url = sim.url("/vipps-login-ciba/api/backchannel/authentication");
    let form = [("login_hint", kari.as_str()), ("scope", "openid")];
    let wrong_secret = sim
        .http
        .post(&auth_url)
        .basic_auth("sim-client", Some("wrong"))
        .form(&form)
        .send()
        .await
        .expect("call");
    assert!(wrong_secret.headers().contains_key("www-authenticate"));
    let (status, body) = json_of(wrong_secret).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let no_auth = sim
        .http
        .post(&auth_url)
        .form(&form)
        .send()
        .await
        .expect("call");
    let (status, body) = json_of(no_auth).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    let json_body = sim
        .http
        .post(&auth_url)
        .basic_auth("sim-client", Some("sim-secret"))
        .json(&json!({"login_hint": kari, "scope": "openid"}))
        .send()
        .await
        .expect("call");
    let (status, body) = json_of(json_body).await;
    assert_oauth_error(status, &body, StatusCode::BAD_REQUEST, "invalid_request");

    let token_url = sim.url("/access-management-1.0/access/oauth2/token");
    sim.assert_poll_refused("no-such-request", "invalid_grant")
        .await;
    let wrong_grant = sim
        .http
        .post(&token_url)
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("call");
    let (status, body) = json_of(wrong_grant).await;
    assert_oauth_error(
        status,
        &body,
        StatusCode::BAD_REQUEST,
        "unsupported_grant_type",
    );
    let wrong_client = sim
        .http
        .post(&token_url)
        .basic_auth("someone", Some("sim-secret"))
        .form(&[("grant_type", CIBA_GRANT), ("auth_req_id", "x")])
        .send()
        .await
        .expect("call");
    let (status, body) = json_of(wrong_client).await;
    assert_oauth_error(status, &body, StatusCode::UNAUTHORIZED, "invalid_client");
    sim.server.stop().await;
}

#[actix_web::test]
async fn discovery_points_at_the_simulator() {
    let sim = start().await;
    let res = sim
        .http
        .get(sim.url("/access-management-1.0/access/.well-known/openid-configuration"))
        .send()
        .await
        .expect("call");
    let (status, doc) = json_of(res).await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    let issuer = format!("{}/access-management-1.0/access/", sim.base);
    assert_eq!(doc["issuer"], issuer);
    for key in ["authorization_endpoint", "token_endpoint", "jwks_uri"] {
        let url = doc[key].as_str().unwrap_or_default();
        assert!(url.starts_with(&sim.base), "{key}: {url}");
    }
    let backchannel = doc["backchannel_authentication_endpoint"]
        .as_str()
        .expect("CIBA endpoint");
    let res = sim
        .http
        .post(backchannel)
        .basic_auth("sim-client", Some("sim-secret"))
        .form(&[
            ("login_hint", format!("urn:msisdn:{OLA}")),
            ("scope", "openid".into()),
        ])
        .send()
        .await
        .expect("call");
    assert_eq!(res.status(), StatusCode::OK);
    let (status, jwks) = json_of(
        sim.http
            .get(doc["jwks_uri"].as_str().unwrap_or_default())
            .send()
            .await
            .expect("call"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(jwks["keys"].is_array());
    sim.server.stop().await;
}
