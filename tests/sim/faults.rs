//! Fault injection observed from outside: a reqwest client against a running simulator, with
//! faults configured through `/sim/v1/faults`.

use std::time::Duration;

use lanehub::sim::SimServer;

use crate::common::sim::{serve_simulator, token_request};
use serde_json::{Value, json};

struct Sim {
    server: SimServer,
    base: String,
    http: reqwest::Client,
}

async fn start() -> Sim {
    let server = serve_simulator(|_| {});
    Sim {
        base: server.base_url(),
        server,
        http: reqwest::Client::new(),
    }
}

/// A simulator with `faults` set at `path` (`/faults` or `/faults/<operation>`).
async fn start_faulted(path: &str, faults: Value) -> Sim {
    let sim = start().await;
    sim.put(path, faults).await;
    sim
}

/// An answer's `Retry-After`.
fn retry_after(res: &reqwest::Response) -> Option<&str> {
    res.headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
}

impl Sim {
    /// Sends a fault configuration and returns the status and the answer.
    async fn control(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}/sim/v1{path}", self.base));
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        let res = req.send().await.expect("the control API answers");
        let status = res.status().as_u16();
        (
            status,
            res.json().await.expect("the control API answers JSON"),
        )
    }

    async fn put(&self, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .control(reqwest::Method::PUT, path, Some(&body.to_string()))
            .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    async fn faults(&self) -> Value {
        self.control(reqwest::Method::GET, "/faults", None).await.1
    }

    /// Asserts that the faults of `kind` were injected `n` times so far.
    async fn assert_injected(&self, kind: &str, n: u64) {
        let view = self.faults().await;
        assert_eq!(view["injected"][kind], n, "{view}");
    }

    fn token_request(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        token_request(client, &self.base)
    }

    /// The answer to one access-token request.
    async fn token_answer(&self) -> reqwest::Response {
        self.token_request(&self.http)
            .send()
            .await
            .expect("the simulator answers")
    }

    /// The status of one access-token request.
    async fn token_status(&self) -> u16 {
        self.token_answer().await.status().as_u16()
    }

    async fn payment_create_status(&self) -> u16 {
        self.http
            .post(format!("{}/epayment/v1/payments", self.base))
            .json(&json!({}))
            .send()
            .await
            .expect("the simulator answers")
            .status()
            .as_u16()
    }
}

#[actix_web::test]
async fn latency_delays_the_answer() {
    let sim = start_faulted("/faults", json!({"latencyMs": 300, "jitterMs": 50})).await;
    let started = tokio::time::Instant::now();
    assert_eq!(sim.token_status().await, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    sim.assert_injected("latency", 1).await;
    sim.server.stop().await;
}

#[actix_web::test]
async fn a_hung_request_never_answers_and_the_client_times_out() {
    let sim = start_faulted("/faults/access_token", json!({"hangNext": 1})).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("the client builds");
    let err = sim
        .token_request(&client)
        .send()
        .await
        .expect_err("a hung request gets no answer");
    assert!(err.is_timeout(), "{err:?}");
    // The hang was spent; the next request is answered, while the first is still held open.
    assert_eq!(sim.token_status().await, 200);
    let faults = sim.faults().await;
    assert_eq!(faults["injected"]["hang"], 1);
    assert_eq!(faults["injectedByOperation"]["access_token"]["hang"], 1);
    // No graceful stop: it would wait for the held request.
}

#[actix_web::test]
async fn a_dropped_connection_is_an_error_for_the_client() {
    let sim = start_faulted("/faults/access_token", json!({"dropRate": 1.0})).await;
    for _ in 0..3 {
        // The connection closes before the answer's head: hyper reports an incomplete message.
        let err = sim
            .token_request(&sim.http)
            .send()
            .await
            .expect_err("a dropped connection is an error");
        assert!(err.is_request() && !err.is_timeout(), "{err:?}");
    }
    sim.assert_injected("drop", 3).await;
    sim.server.stop().await;
}

#[actix_web::test]
async fn a_burst_of_429_ends_after_n_requests() {
    let sim = start_faulted(
        "/faults/access_token",
        json!({"tooManyRequestsNext": 3, "retryAfterSecs": 7}),
    )
    .await;
    for _ in 0..3 {
        let res = sim.token_answer().await;
        assert_eq!(res.status(), 429);
        assert_eq!(retry_after(&res), Some("7"));
    }
    assert_eq!(sim.token_status().await, 200);
    assert_eq!(sim.token_status().await, 200);
    let faults = sim.faults().await;
    assert_eq!(
        faults["operations"]["access_token"]["tooManyRequestsNext"],
        0
    );
    assert_eq!(faults["injected"]["tooManyRequests"], 3);
    sim.server.stop().await;
}

#[actix_web::test]
async fn a_server_error_share_of_one_always_fails_with_problem_json() {
    let sim = start_faulted("/faults", json!({"serverErrorRate": 1.0})).await;
    for _ in 0..10 {
        let res = sim.token_answer().await;
        let status = res.status().as_u16();
        assert!([500, 502, 503].contains(&status), "{status}");
        assert_eq!(
            res.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
        let body: Value = res.json().await.expect("a problem body");
        assert_eq!(body["status"], status);
    }
    sim.put(
        "/faults",
        json!({"serverErrorRate": 1.0, "serverErrorStatus": 502}),
    )
    .await;
    assert_eq!(sim.token_status().await, 502);
    // The control API itself is never faulted.
    sim.assert_injected("serverError", 11).await;
    sim.server.stop().await;
}

#[actix_web::test]
async fn a_locked_share_of_one_answers_423_with_retry_after() {
    let sim = start_faulted("/faults", json!({"lockedRate": 1.0, "retryAfterSecs": 2})).await;
    let res = sim.token_answer().await;
    assert_eq!(res.status(), 423);
    assert_eq!(retry_after(&res), Some("2"));
    sim.server.stop().await;
}

#[actix_web::test]
async fn operation_faults_leave_other_operations_alone() {
    let sim = start_faulted(
        "/faults/payment_create",
        json!({"serverErrorRate": 1.0, "serverErrorStatus": 503}),
    )
    .await;
    assert_eq!(sim.payment_create_status().await, 503);
    assert_eq!(sim.token_status().await, 200);
    let faults = sim.faults().await;
    assert_eq!(
        faults["injectedByOperation"]["payment_create"]["serverError"],
        1
    );
    assert!(faults["injectedByOperation"].get("access_token").is_none());
    sim.server.stop().await;
}

#[actix_web::test]
async fn clearing_restores_normal_answers() {
    let sim = start_faulted("/faults", json!({"serverErrorRate": 1.0})).await;
    sim.put("/faults/access_token", json!({"lockedNext": 5}))
        .await;
    assert_ne!(sim.token_status().await, 200);
    let (status, cleared) = sim.control(reqwest::Method::DELETE, "/faults", None).await;
    assert_eq!(status, 200);
    assert_eq!(cleared["global"]["serverErrorRate"], 0.0);
    assert_eq!(cleared["operations"], json!({}));
    assert_eq!(cleared["injected"]["locked"], 0);
    assert_eq!(sim.token_status().await, 200);
    let status = sim.payment_create_status().await;
    assert!(status < 500 && status != 423 && status != 429, "{status}");
    sim.server.stop().await;
}

#[actix_web::test]
async fn bad_configurations_are_refused_naming_what_is_wrong() {
    let sim = start().await;
    let cases = [
        ("/faults", "{not json", "body"),
        ("/faults", r#"{"latency": 5}"#, "latency"),
        ("/faults", r#"{"hangRate": "often"}"#, "hangRate"),
        ("/faults", r#"{"dropRate": 2.0}"#, "dropRate"),
        (
            "/faults",
            r#"{"serverErrorStatus": 404}"#,
            "serverErrorStatus",
        ),
        ("/faults/teleport", r#"{}"#, "teleport"),
        ("/faults/payment_get", r#"{"seed": 1}"#, "seed"),
    ];
    for (path, body, named) in cases {
        let (status, answer) = sim.control(reqwest::Method::PUT, path, Some(body)).await;
        assert_eq!(status, 400, "{path} {body}: {answer}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(named), "{path} {body}: {answer}");
    }
    // Nothing was changed by the refused requests.
    assert_eq!(sim.faults().await["global"]["dropRate"], 0.0);
    sim.server.stop().await;
}

#[actix_web::test]
async fn webhook_faults_are_rolled_through_the_simulator_state() {
    let sim = start_faulted(
        "/faults",
        json!({"webhookDuplicateNext": 1, "webhookOutOfOrderRate": 1.0}),
    )
    .await;
    let faults = &sim.server.simulator.state().faults;
    assert!(faults.roll_webhook_duplicate());
    assert!(!faults.roll_webhook_duplicate());
    assert!(faults.roll_webhook_out_of_order());
    let view = sim.faults().await;
    assert_eq!(view["injected"]["webhookDuplicate"], 1);
    assert_eq!(view["injected"]["webhookOutOfOrder"], 1);
    sim.server.stop().await;
}
