//! A webhook receiver for the simulator's deliveries: it records every request with what its
//! signature covers, and answers 500 to the first few if told to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use lanehub::vipps::signature;
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub path_and_query: String,
    /// Every header, names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }

    /// `CREATED`, `AUTHORIZED`, … and the payment's reference.
    pub fn event(&self) -> (String, String) {
        let v = self.json();
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        (s("name"), s("reference"))
    }

    pub fn name(&self) -> String {
        self.json()["name"].as_str().unwrap_or_default().to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        let mut matching = self.headers.iter().filter(|(k, _)| k == name);
        matching.next().map(|(_, v)| v.as_str())
    }

    pub fn verify(&self, secret: &str) -> Result<(), signature::SignatureError> {
        signature::verify(
            secret,
            &self.path_and_query,
            self.header("host").unwrap_or_default(),
            self.header("x-ms-date"),
            self.header("x-ms-content-sha256"),
            self.header("authorization"),
            &self.body,
        )
    }
}

#[derive(Default)]
struct Log {
    requests: Vec<Received>,
    fail_first: usize,
}

/// A webhook receiver on 127.0.0.1 that answers 500 to its first `fail_first` requests.
#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    log: Arc<Mutex<Log>>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Receiver {
        let log = Arc::new(Mutex::new(Log {
            requests: vec![],
            fail_first,
        }));
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let data = web::Data::from(log.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(receive))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .expect("listen")
        .run();
        actix_web::rt::spawn(server);
        Receiver { base, log }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.log.lock().unwrap().requests.clone()
    }

    /// Waits until the receiver holds `n` requests (polling every 10 ms, for at most 5 s), then
    /// returns them.
    pub async fn received(&self, n: usize) -> Vec<Received> {
        for _ in 0..500 {
            let got = self.requests();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!(
            "timed out waiting for {n} deliveries; got {:?}",
            self.requests()
                .iter()
                .map(Received::event)
                .collect::<Vec<_>>()
        );
    }

    pub fn ok(&self) -> Vec<Received> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered == 200)
            .collect()
    }
}

async fn receive(req: HttpRequest, body: web::Bytes, log: web::Data<Mutex<Log>>) -> HttpResponse {
    let mut log = log.lock().unwrap();
    let answered = if log.requests.len() < log.fail_first {
        500
    } else {
        200
    };
    log.requests.push(Received {
        path_and_query: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_default(),
        // actix's header names are lower case.
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
            .collect(),
        body: body.to_vec(),
        answered,
    });
    if answered == 200 {
        HttpResponse::Ok().finish()
    } else {
        HttpResponse::InternalServerError().finish()
    }
}
