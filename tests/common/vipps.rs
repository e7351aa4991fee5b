//! Shared by the Vipps client and actor tests: start the built-in simulator, drive its control
//! API, and a scripted stand-in server for answers the simulator cannot be asked for.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use lanehub::config::{Settings, VippsSettings};
use lanehub::domain::{IdempotencyKey, Msisdn, PaymentReference};
use lanehub::sim::SimServer;

/// A running simulator and client settings pointed at it.
pub struct Sim {
    pub server: SimServer,
    pub vipps: VippsSettings,
    pub http: reqwest::Client,
}

impl Sim {
    /// Starts the simulator with the default configuration, changed by `adjust`.
    pub fn start(adjust: impl FnOnce(&mut Settings)) -> Sim {
        let mut vipps = None;
        let server = super::sim::serve_simulator(|settings| {
            adjust(settings);
            vipps = Some(settings.vipps.clone());
        });
        let mut vipps = vipps.expect("adjusted");
        vipps.base_url = server.base_url();
        Sim {
            server,
            vipps,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.base_url())
    }

    /// Moves the simulator's clock forward.
    pub async fn advance(&self, by: Duration) {
        let res = self
            .http
            .post(self.url("/sim/v1/clock/advance"))
            .json(&serde_json::json!({"ms": by.as_millis() as u64}))
            .send()
            .await
            .expect("the control API answers");
        assert!(res.status().is_success(), "clock advance: {}", res.status());
    }

    /// GET on the control API, as JSON.
    pub async fn control_get(&self, path: &str) -> serde_json::Value {
        let res = self
            .http
            .get(self.url(path))
            .send()
            .await
            .expect("the control API answers");
        assert!(res.status().is_success(), "GET {path}: {}", res.status());
        res.json().await.expect("the control API answers JSON")
    }

    /// Sets the simulator's faults for `operation`.
    pub async fn faults(&self, operation: &str, faults: serde_json::Value) {
        let path = format!("/sim/v1/faults/{operation}");
        let status = self.control_put(&path, faults).await;
        assert!(status.is_success(), "PUT {path}: {status}");
    }

    /// PUT on the control API.
    pub async fn control_put(&self, path: &str, body: serde_json::Value) -> reqwest::StatusCode {
        self.http
            .put(self.url(path))
            .json(&body)
            .send()
            .await
            .expect("the control API answers")
            .status()
    }
}

/// What the scripted server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, extra headers, body.
    Answer(u16, Vec<(&'static str, String)>, String),
    /// Never answers (until the client gives up).
    Hang,
    /// Answers after a delay.
    Slow(Duration, Box<Reply>),
}

type Script = dyn Fn(&Seen) -> Reply + Send + Sync;

/// A stand-in Vipps that records every request and answers from a script, or from a queue of
/// replies pushed by the test (taken first).
#[derive(Clone)]
pub struct Scripted {
    pub base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    queue: Arc<Mutex<VecDeque<Reply>>>,
    server: actix_web::dev::ServerHandle,
}

impl Scripted {
    pub fn start(script: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Scripted {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let queue: Arc<Mutex<VecDeque<Reply>>> = Arc::default();
        let script: Arc<Script> = Arc::new(script);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        let base_url = format!("http://{}", listener.local_addr().expect("bound"));
        let (s, q) = (seen.clone(), queue.clone());
        let server = HttpServer::new(move || {
            let (s, q, script) = (s.clone(), q.clone(), script.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (s, q, script) = (s.clone(), q.clone(), script.clone());
                async move {
                    let seen = Seen {
                        method: req.method().to_string(),
                        path: req.path().to_owned(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|(k, v)| {
                                (k.to_string(), v.to_str().unwrap_or_default().to_owned())
                            })
                            .collect(),
                        body: String::from_utf8_lossy(&body).into_owned(),
                    };
                    let reply = q
                        .lock()
                        .unwrap()
                        .pop_front()
                        .unwrap_or_else(|| script(&seen));
                    s.lock().unwrap().push(seen);
                    answer(reply).await
                }
            }))
        })
        .workers(2)
        .disable_signals()
        .listen(listener)
        .expect("listens")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Scripted {
            base_url,
            seen,
            queue,
            server: handle,
        }
    }

    /// Queues replies used, in order, before the script.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.queue.lock().unwrap().extend(replies);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self, path: &str) -> usize {
        self.seen().iter().filter(|s| s.path == path).count()
    }

    pub async fn stop(self) {
        self.server.stop(false).await;
    }
}

async fn answer(reply: Reply) -> Result<HttpResponse, actix_web::Error> {
    let reply = match reply {
        Reply::Slow(delay, reply) => {
            actix_web::rt::time::sleep(delay).await;
            *reply
        }
        other => other,
    };
    match reply {
        Reply::Answer(status, headers, body) => {
            let mut res = HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status).expect("a valid status"),
            );
            res.content_type("application/json");
            for (k, v) in headers {
                res.insert_header((k, v));
            }
            Ok(res.body(body))
        }
        Reply::Hang => {
            std::future::pending::<()>().await;
            unreachable!("pending never resolves")
        }
        Reply::Slow(..) => Ok(HttpResponse::InternalServerError().finish()),
    }
}

/// A server that reads each request and closes the connection without answering.
pub async fn dropping_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port");
    let base_url = format!("http://{}", listener.local_addr().expect("bound"));
    actix_web::rt::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            // Wait for the request to arrive, then hang up on it.
            let _ = socket.readable().await;
            let mut buf = [0u8; 4096];
            let _ = socket.try_read(&mut buf);
            drop(socket);
        }
    });
    base_url
}

/// Client settings pointed at `base_url`, from the default configuration.
pub fn vipps_settings(base_url: &str) -> VippsSettings {
    let mut vipps = Settings::load(None, Vec::new())
        .expect("the defaults load")
        .vipps;
    vipps.base_url = base_url.to_owned();
    vipps
}

/// A JSON reply.
pub fn ok(status: u16, body: serde_json::Value) -> Reply {
    Reply::Answer(status, vec![], body.to_string())
}

/// The access-token answer, lifetime in seconds as a string.
pub fn token_reply(token: &str, expires_in: u64) -> Reply {
    ok(
        200,
        serde_json::json!({"token_type": "Bearer", "expires_in": expires_in.to_string(),
            "ext_expires_in": "0", "expires_on": "0", "not_before": "0",
            "resource": "x", "access_token": token}),
    )
}

/// A GetPayment/modification answer in state `state` with `captured` minor units captured.
pub fn payment_json(reference: &str, state: &str, value: u64, captured: u64) -> serde_json::Value {
    let amount = |v: u64| serde_json::json!({"currency": "NOK", "value": v});
    serde_json::json!({
        "reference": reference, "state": state, "amount": amount(value),
        "aggregate": {"authorizedAmount": amount(value), "cancelledAmount": amount(0),
            "capturedAmount": amount(captured), "refundedAmount": amount(0)},
        "pspReference": "psp-1", "paymentMethod": {"type": "WALLET"}
    })
}

/// A Login request for `phone` with `scopes`, no binding message, expiring in a minute.
pub fn login_request(phone: &str, scopes: &[&str]) -> lanehub::vipps::models::LoginRequest {
    lanehub::vipps::models::LoginRequest {
        phone_number: self::phone(phone),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        binding_message: None,
        requested_expiry: Some(Duration::from_secs(60)),
    }
}

/// An in-store payment request for `reference`: `øre` NOK from `phone`, for `description`.
pub fn payment_request(
    reference: &PaymentReference,
    øre: u64,
    phone: &str,
    description: &str,
) -> lanehub::vipps::models::CreatePaymentRequest {
    let amount = lanehub::domain::Amount::nok(øre);
    let phone = self::phone(phone);
    lanehub::vipps::models::CreatePaymentRequest::in_store(
        reference.clone(),
        amount,
        phone,
        description,
    )
}

pub fn key(s: &str) -> IdempotencyKey {
    s.parse().expect("a valid key")
}

pub fn reference(s: &str) -> PaymentReference {
    s.parse().expect("a valid reference")
}

pub fn phone(s: &str) -> Msisdn {
    s.parse().expect("a valid phone number")
}
