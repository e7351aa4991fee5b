//! The simulator against the official OpenAPI files: every call in these tests is validated,
//! request and response, by the harness in tests/support/openapi.rs, and any violation fails
//! the test.
//!
//! To cover another endpoint, add a test that starts [`Conformance`], obtains what it needs
//! (`conf.token().await`, `conf.merchant_headers(&token)`) and makes its calls with
//! [`Conformance::call`]; then assert on the returned status and body.

mod support;

use lanehub::sim::{SimServer, Simulator};
use serde_json::Value;
use support::openapi::{self, Specs};

/// The simulator's default merchant (see config defaults and src/sim/auth.rs).
const CLIENT_ID: &str = "sim-client";
const CLIENT_SECRET: &str = "sim-secret";
const SUBSCRIPTION_KEY: &str = "sim-subscription-key";
const MSN: &str = "123456";

/// A running simulator and an HTTP client whose every call is checked against the files.
struct Conformance {
    specs: &'static Specs,
    base: String,
    http: reqwest::Client,
    sim: SimServer,
}

impl Conformance {
    /// Starts a simulator with the default settings; `None` when the files are absent (the
    /// harness has already warned, or failed the test under CI).
    async fn start() -> Option<Conformance> {
        let specs = openapi::specs()?;
        lanehub::install_crypto_provider();
        let settings = lanehub::config::Settings::load(None, Vec::new())
            .expect("the default settings are valid");
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").expect("a free local port is available");
        let sim = Simulator::new(settings.sim)
            .serve(listener)
            .expect("the simulator starts");
        Some(Conformance {
            specs,
            base: sim.base_url(),
            http: reqwest::Client::new(),
            sim,
        })
    }

    async fn stop(self) {
        self.sim.stop().await;
    }

    /// Sends one call, failing the test if the request or the response violates the files.
    /// A JSON body gets `Content-Type: application/json` unless `headers` say otherwise; with
    /// `application/x-www-form-urlencoded` the body (an object of strings) is sent as a form.
    /// Returns the status and the body (`Null` when empty, a string when not JSON).
    async fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut headers: Vec<(&str, &str)> = headers.to_vec();
        let has_content_type = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        if body.is_some() && !has_content_type {
            headers.push(("Content-Type", "application/json"));
        }
        if let Err(violations) = self
            .specs
            .validate_request(method, path, &headers, body.as_ref())
        {
            panic!(
                "request {method} {path} violates the OpenAPI files:\n  {}",
                violations.join("\n  ")
            );
        }

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
                let fields: Vec<(String, String)> = body
                    .as_object()
                    .expect("a form body is a JSON object")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().map_or(v.to_string(), str::to_owned)))
                    .collect();
                req.form(&fields)
            } else {
                req.body(body.to_string())
            };
        }
        let res = req.send().await.expect("the simulator answers");
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = res.bytes().await.expect("the body is readable");
        let body: Option<Value> =
            if bytes.is_empty() {
                None
            } else {
                Some(serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    Value::String(String::from_utf8_lossy(&bytes).into_owned())
                }))
            };
        if let Err(violations) = self.specs.validate_response(
            method,
            path,
            status,
            content_type.as_deref(),
            body.as_ref(),
        ) {
            panic!(
                "response to {method} {path} violates the OpenAPI files:\n  {}\nbody: {}",
                violations.join("\n  "),
                body.unwrap_or(Value::Null)
            );
        }
        (status, body.unwrap_or(Value::Null))
    }

    /// Fetches an access token for the default merchant (itself a validated call).
    async fn token(&self) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/accesstoken/get",
                &token_headers(CLIENT_SECRET),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"]
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

#[actix_web::test]
async fn access_token_conforms() {
    let Some(conf) = Conformance::start().await else {
        return;
    };
    let (status, body) = conf
        .call(
            "POST",
            "/accesstoken/get",
            &token_headers(CLIENT_SECRET),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap_or_default();
    assert!(!token.is_empty(), "{body}");
    // The Vipps answer carries every number as a string.
    assert!(body["expires_in"].is_string(), "{body}");

    let (status, _) = conf
        .call(
            "POST",
            "/accesstoken/get",
            &token_headers("wrong-secret"),
            None,
        )
        .await;
    assert_eq!(status, 401);

    // The helpers used by the other endpoints' tests work.
    let token = conf.token().await;
    let bearer = format!("Bearer {token}");
    assert!(
        conf.merchant_headers(&bearer)
            .contains(&("Authorization", bearer.as_str()))
    );
    conf.stop().await;
}
