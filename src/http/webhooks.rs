//! `POST /vipps/webhooks`: Vipps' ePayment events and the Login ping. Each delivery is checked
//! (HMAC over the raw body in constant time), de-duplicated, answered at once, and routed to the
//! lane that owns the payment as a signal to read the payment back. A correctly signed delivery
//! is accepted whatever its `x-ms-date`: Vipps retries failed deliveries (in order, for days)
//! and nothing says a retry is signed afresh, so refusing an old date would block the
//! registration's queue; a replay only causes a read-back. Late ones are counted.
//!
//! The registration that gives the receiver its secret lives in `vipps::registration`.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::ErrorKind;
use crate::domain::PaymentReference;
use crate::lane::Lanes;
use crate::metrics as m;
use crate::session::Event;
use crate::store::Store;
use crate::vipps::models::{PaymentEventName, PaymentWebhookEvent};
use crate::vipps::signature;

/// Largest delivery accepted; Vipps' payloads are well under 2 KB.
pub const MAX_WEBHOOK_BYTES: usize = 64 * 1024;
/// Deliveries remembered for de-duplication.
pub const DEDUP_WINDOW: usize = 4096;

/// Body digests seen recently: a set for lookups, a queue for eviction order.
type Seen = (HashSet<[u8; 32]>, VecDeque<[u8; 32]>);

/// What the receiver needs: the registered URL's parts (what Vipps signed) and the secret.
pub struct WebhookReceiver {
    host: String,
    path_and_query: String,
    secret: RwLock<Option<SecretString>>,
    tolerance: Duration,
    seen: Mutex<Seen>,
}

impl WebhookReceiver {
    /// A receiver for deliveries to `url` (e.g. `https://store.example/vipps/webhooks`); `None`
    /// when it is not an http(s) URL (configuration validation refuses those first).
    pub fn new(url: &str, tolerance: Duration) -> Option<Self> {
        let (host, path_and_query) = signature::signed_target(url).ok()?;
        Some(WebhookReceiver {
            host,
            path_and_query,
            secret: RwLock::new(None),
            tolerance,
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        })
    }

    pub fn set_secret(&self, secret: SecretString) {
        *self.secret.write().expect("secret lock") = Some(secret);
    }

    pub fn has_secret(&self) -> bool {
        self.secret.read().expect("secret lock").is_some()
    }

    /// True the first time a body is seen.
    fn first_time(&self, body: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(body).into();
        let mut seen = self.seen.lock().expect("dedup lock");
        if !seen.0.insert(digest) {
            return false;
        }
        seen.1.push_back(digest);
        if seen.1.len() > DEDUP_WINDOW
            && let Some(old) = seen.1.pop_front()
        {
            seen.0.remove(&old);
        }
        true
    }
}

fn verdict(event: &str, verdict: m::WebhookVerdict) {
    m::webhook_received(m::WebhookEvent::from_vipps_name(event), verdict);
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/vipps/webhooks", web::post().to(receive));
}

async fn receive(
    req: HttpRequest,
    body: web::Bytes,
    receiver: Option<web::Data<WebhookReceiver>>,
    lanes: web::Data<Lanes>,
    store: web::Data<Store>,
) -> HttpResponse {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let Some(receiver) = receiver else {
        return HttpResponse::NotFound().finish();
    };
    if body.len() > MAX_WEBHOOK_BYTES {
        verdict("unknown", m::WebhookVerdict::Malformed);
        return HttpResponse::PayloadTooLarge().finish();
    }
    let secret = receiver.secret.read().expect("secret lock").clone();
    let Some(secret) = secret else {
        // Not registered yet: Vipps retries, and polling follows the payment meanwhile.
        return HttpResponse::ServiceUnavailable().finish();
    };
    if let Err(e) = signature::verify(
        secret.expose_secret(),
        &receiver.path_and_query,
        &receiver.host,
        header("x-ms-date"),
        header("x-ms-content-sha256"),
        header("authorization"),
        &body,
    ) {
        tracing::warn!(reason = e.kind(), "webhook refused: bad signature");
        verdict("unknown", m::WebhookVerdict::BadSignature);
        return HttpResponse::Unauthorized().finish();
    }
    let date = header("x-ms-date").unwrap_or_default();
    if signature::check_date(date, SystemTime::now(), receiver.tolerance).is_err() {
        // Signed, so Vipps sent it: most likely a retry of an earlier delivery.
        tracing::info!(
            date,
            "webhook accepted with an x-ms-date outside the tolerance"
        );
        m::webhook_late();
    }
    let json: serde_json::Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => {
            verdict("unknown", m::WebhookVerdict::Malformed);
            return HttpResponse::BadRequest().finish();
        }
    };
    if !receiver.first_time(&body) {
        let name = PaymentEventName::deserialize(&json["name"])
            .map_or("", PaymentEventName::webhook_event);
        verdict(name, m::WebhookVerdict::Duplicate);
        return HttpResponse::Ok().finish();
    }
    if let Some(auth_req_id) = json["auth_req_id"].as_str() {
        // A Login ping names no lane; only the lane waiting for it reacts.
        for lane in lanes.all() {
            lane.signal(Event::LoginPinged {
                auth_req_id: auth_req_id.to_owned(),
            });
        }
        verdict(
            "login.merchant-initiated.ping.v1",
            m::WebhookVerdict::Accepted,
        );
        return HttpResponse::Ok().finish();
    }
    let event: PaymentWebhookEvent = match serde_json::from_value(json) {
        Ok(e) => e,
        Err(_) => {
            verdict("unknown", m::WebhookVerdict::Malformed);
            return HttpResponse::BadRequest().finish();
        }
    };
    let name = event.name.webhook_event();
    match route(&event.reference, &lanes, &store).await {
        true => verdict(name, m::WebhookVerdict::Accepted),
        false => verdict(name, m::WebhookVerdict::UnknownReference),
    }
    HttpResponse::Ok().finish()
}

/// Signals the lane that owns `reference`; false if no lane does.
async fn route(reference: &PaymentReference, lanes: &Lanes, store: &Store) -> bool {
    let Ok(Some(payment)) = store.payment(reference).await else {
        return false;
    };
    let Some(lane) = lanes.get(&payment.lane) else {
        return false;
    };
    // A full mailbox or a lane being rebuilt is fine: polling finds the change.
    lane.signal(Event::WebhookReceived {
        reference: reference.clone(),
    });
    true
}
