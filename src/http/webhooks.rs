//! `POST /vipps/webhooks`: Vipps' ePayment events and the Login ping. Each delivery is checked
//! (HMAC over the raw body in constant time), de-duplicated, answered at once, and routed to the
//! lane that owns the payment as a signal to read the payment back. A correctly signed delivery
//! is accepted whatever its `x-ms-date`: Vipps retries failed deliveries (in order, for days)
//! and nothing says a retry is signed afresh, so refusing an old date would block the
//! registration's queue; a replay only causes a read-back. Late ones are counted.
//!
//! Also registers (or reuses) lanehub's webhook at start, in the background and again after
//! failures with capped backoff, and keeps its secret in the store. A registration is never sent
//! twice blindly: each attempt lists the registrations first and deletes those for lanehub's URL
//! whose secret lanehub does not hold.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use actix_web::{HttpRequest, HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use crate::domain::PaymentReference;
use crate::lane::Lanes;
use crate::metrics as m;
use crate::session::Event;
use crate::shutdown::{Phase, Shutdown};
use crate::store::{Store, StoreError};
use crate::vipps::actor::VippsHandle;
use crate::vipps::models::{PaymentWebhookEvent, RegisterWebhookRequest};
use crate::vipps::signature;

/// Largest delivery accepted; Vipps' payloads are well under 2 KB.
pub const MAX_WEBHOOK_BYTES: usize = 64 * 1024;
/// Deliveries remembered for de-duplication.
pub const DEDUP_WINDOW: usize = 4096;
/// The events lanehub subscribes to.
pub const EVENTS: &[&str] = &[
    "epayments.payment.created.v1",
    "epayments.payment.authorized.v1",
    "epayments.payment.aborted.v1",
    "epayments.payment.expired.v1",
    "epayments.payment.cancelled.v1",
    "epayments.payment.captured.v1",
    "epayments.payment.refunded.v1",
    "epayments.payment.terminated.v1",
    "login.merchant-initiated.ping.v1",
];
const SECRET_KEY: &str = "webhook.secret";
const ID_KEY: &str = "webhook.id";
const URL_KEY: &str = "webhook.url";

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
        let name = json["name"]
            .as_str()
            .map(epayment_event)
            .unwrap_or_default();
        verdict(&name, m::WebhookVerdict::Duplicate);
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
    let name = epayment_event(&format!("{:?}", event.name));
    match route(&event.reference, &lanes, &store).await {
        true => verdict(&name, m::WebhookVerdict::Accepted),
        false => verdict(&name, m::WebhookVerdict::UnknownReference),
    }
    HttpResponse::Ok().finish()
}

/// `AUTHORIZED` → `epayments.payment.authorized.v1`.
fn epayment_event(name: &str) -> String {
    format!("epayments.payment.{}.v1", name.to_lowercase())
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

/// How long to wait after a failed registration: `initial`, doubling per failure up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationBackoff {
    pub initial: Duration,
    pub max: Duration,
}

impl RegistrationBackoff {
    /// The wait after `failures` failed attempts (1 or more).
    pub fn after(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// Registers lanehub's webhook for `url` (or reuses the registration whose secret is stored),
/// trying again with capped backoff until it succeeds or lanehub starts shutting down. Until then
/// the receiver answers 503 and polling alone follows payments.
pub async fn register(
    vipps: &VippsHandle,
    store: &Store,
    url: &str,
    receiver: Arc<WebhookReceiver>,
    backoff: RegistrationBackoff,
    shutdown: &Shutdown,
) {
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            result = ensure_registered(vipps, store, url) => result,
            // A registration cut short is replaced at the next start (its secret was not kept).
            () = shutdown.reached(Phase::Draining) => return,
        };
        match attempt {
            Ok(secret) => {
                receiver.set_secret(secret);
                tracing::info!(url, failures, "webhook registered");
                return;
            }
            Err(e) => {
                failures += 1;
                let wait = backoff.after(failures);
                let next = chrono::Duration::from_std(wait)
                    .ok()
                    .and_then(|d| chrono::Utc::now().checked_add_signed(d))
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default();
                tracing::warn!(url, error = %e, failures, retry_in_secs = wait.as_secs_f64(),
                    next_attempt = %next,
                    "webhook registration failed; payments are followed by polling until it succeeds");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.reached(Phase::Draining) => return,
                }
            }
        }
    }
}

/// The id of the registration for `url` whose secret lanehub holds, if any.
pub async fn held_registration(store: &Store, url: &str) -> Result<Option<String>, StoreError> {
    let held = store.secret_setting(SECRET_KEY).await?.is_some();
    let stored_url = store.setting(URL_KEY).await?;
    let id = store.setting(ID_KEY).await?;
    Ok(id.filter(|_| held && stored_url.as_deref() == Some(url)))
}

/// Reuses the registration for `url` whose id and secret are stored, or registers anew. Every
/// other registration for `url` is an orphan (a registration whose answer was lost, or whose
/// secret was): lanehub cannot verify its deliveries, which would fail for days, so it is
/// deleted. Runs from the listing each time, so a registration whose answer was lost is found and
/// removed before the next one, never registered beside it.
async fn ensure_registered(
    vipps: &VippsHandle,
    store: &Store,
    url: &str,
) -> anyhow::Result<SecretString> {
    let stored_url = store.setting(URL_KEY).await?;
    let stored_id = store.setting(ID_KEY).await?;
    let mut stored_secret = store.secret_setting(SECRET_KEY).await?;
    let existing = vipps.list_webhooks().await?;
    let mut kept = None;
    for w in existing.iter().filter(|w| w.url == url) {
        let reusable = kept.is_none()
            && stored_id.as_deref() == Some(w.id.as_str())
            && stored_url.as_deref() == Some(url)
            && EVENTS.iter().all(|e| w.events.iter().any(|x| x == e));
        if reusable && let Some(secret) = stored_secret.take() {
            kept = Some(secret);
            continue;
        }
        tracing::warn!(url, id = %w.id, "deleting a webhook registration for lanehub's URL whose secret lanehub does not hold");
        vipps.delete_webhook(&w.id).await?;
    }
    if let Some(secret) = kept {
        return Ok(secret);
    }
    let registered = vipps
        .register_webhook(&RegisterWebhookRequest {
            url: url.to_owned(),
            events: EVENTS.iter().map(|e| (*e).to_owned()).collect(),
        })
        .await?;
    store
        .put_secret_setting(SECRET_KEY, &registered.secret)
        .await?;
    store.put_setting(ID_KEY, &registered.id).await?;
    store.put_setting(URL_KEY, url).await?;
    Ok(registered.secret)
}

#[cfg(test)]
mod tests {
    use super::RegistrationBackoff;
    use std::time::Duration;

    #[test]
    fn registration_backoff_doubles_up_to_its_cap() {
        let b = RegistrationBackoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
        };
        let waits: Vec<u64> = (1..=9).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.after(u32::MAX), Duration::from_secs(300));
    }
}
