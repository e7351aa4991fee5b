//! One registration's delivery task: it takes events from its queue one at a time, signs
//! each POST as Vipps does ([`crate::vipps::signature::sign`]), and retries a failure with
//! exponential backoff until it succeeds or `webhook_retry_for` has passed, so a failing event
//! holds back every later event of that registration.
//!
//! Backoff waits are measured on the simulator's clock and woken by [`super::tick`], so moving
//! the clock with the control API also hurries retries along. The task holds no lock across an
//! `.await`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::queue::Queue;
use crate::sim::SimState;
use crate::vipps::signature;

/// How long a receiver has to answer a delivery.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the out-of-order fault waits for a later event to swap with.
pub const OUT_OF_ORDER_WAIT: Duration = Duration::from_millis(500);

/// One event queued for one registration.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: u64,
    pub event: String,
    pub payload: Value,
}

/// Where and how a registration's deliveries are sent and signed.
#[derive(Debug, Clone)]
pub struct Target {
    pub webhook_id: String,
    pub url: reqwest::Url,
    pub secret: String,
    /// `host[:port]` exactly as sent in the `Host` header (the port only when not the default).
    pub host: String,
    /// The registered URL's path and query, as signed.
    pub path_and_query: String,
}

impl Target {
    pub fn new(webhook_id: String, url: reqwest::Url, secret: String) -> Self {
        // The same normalised host and path lanehub's receiver verifies with.
        let (host, path_and_query) = signature::signed_target(url.as_str()).unwrap_or_default();
        Target {
            webhook_id,
            url,
            secret,
            host,
            path_and_query,
        }
    }
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The receiver answered 2xx.
    Delivered,
    /// Non-2xx or no answer; it will be retried.
    Failed,
    /// Failed, and `webhook_retry_for` has run out: no more attempts.
    GaveUp,
    /// A forged sending the receiver refused, as it should; never retried.
    Refused,
}

/// A record of one delivery attempt, for the control API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub delivery_id: u64,
    pub webhook_id: String,
    pub event: String,
    pub url: String,
    pub attempt: u32,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub outcome: Outcome,
    /// A second sending of the same delivery, injected by the duplicate fault.
    pub duplicate: bool,
    /// A false payload with a wrong signature, injected by the forged fault.
    pub forged: bool,
    /// When, on the simulator's clock.
    pub at: String,
    pub payload: Value,
}

/// The wait before retry number `attempt` (1 after the first failure): `initial` doubling up to
/// `max`.
pub fn backoff(attempt: u32, initial: Duration, max: Duration) -> Duration {
    crate::backoff::Backoff::new(initial, max).after(attempt)
}

/// The task behind one registration. Ends when the registration is deleted (its queue closes or
/// the task is aborted).
pub async fn run(state: Arc<SimState>, target: Target, queue: Arc<Queue>, wake: Arc<Notify>) {
    let mut held: Option<Delivery> = None;
    loop {
        let delivery = match held.take() {
            Some(d) => d,
            None => match queue.recv().await {
                Some(d) => d,
                None => return,
            },
        };
        let delivery = if state.faults.roll_webhook_out_of_order() {
            let next = match queue.try_recv() {
                Some(d) => Some(d),
                None => tokio::time::timeout(OUT_OF_ORDER_WAIT, queue.recv())
                    .await
                    .ok()
                    .flatten(),
            };
            match next {
                Some(next) => {
                    held = Some(delivery);
                    next
                }
                None => delivery,
            }
        } else {
            delivery
        };
        if state.faults.roll_webhook_forged() {
            forge(&state, &target, &delivery).await;
        }
        let twice = state.faults.roll_webhook_duplicate();
        deliver(&state, &target, &wake, &delivery, false).await;
        if twice {
            deliver(&state, &target, &wake, &delivery, true).await;
        }
    }
}

/// Sends one delivery until it succeeds or retrying runs out.
async fn deliver(state: &SimState, target: &Target, wake: &Notify, d: &Delivery, duplicate: bool) {
    // Serialising a `Value` cannot fail.
    let body = serde_json::to_vec(&d.payload).unwrap_or_default();
    let settings = &state.settings;
    let first = state.clock.now();
    // Retries are not signed afresh: every attempt carries the first one's x-ms-date, which
    // Vipps' documentation allows, so a receiver must not refuse a delivery for its age.
    let date = httpdate::fmt_http_date(SystemTime::now());
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let result = match state.webhooks.client() {
            Ok(client) => send(&client, target, &date, &body).await,
            Err(e) => Err(e),
        };
        let delivered = matches!(result, Ok(status) if (200..300).contains(&status));
        let wait = backoff(
            attempt,
            settings.webhook_retry_initial,
            settings.webhook_retry_max,
        );
        let retry_at = state.clock.now() + wait;
        let outcome = if delivered {
            Outcome::Delivered
        } else if retry_at.duration_since(first) > settings.webhook_retry_for {
            Outcome::GaveUp
        } else {
            Outcome::Failed
        };
        let (status, error) = match result {
            Ok(s) => (Some(s), None),
            Err(e) => (None, Some(e)),
        };
        if outcome != Outcome::Delivered {
            tracing::debug!(
                webhook = %target.webhook_id,
                event = %d.event,
                attempt,
                ?status,
                error = error.as_deref().unwrap_or(""),
                "webhook delivery failed"
            );
        }
        state.webhooks.record(Attempt {
            delivery_id: d.id,
            webhook_id: target.webhook_id.clone(),
            event: d.event.clone(),
            url: target.url.to_string(),
            attempt,
            status,
            error,
            outcome,
            duplicate,
            forged: false,
            at: state
                .clock
                .wall()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            payload: d.payload.clone(),
        });
        if outcome != Outcome::Failed {
            return;
        }
        wait_until(state, wake, retry_at).await;
    }
}

/// Sends, once, what an attacker who knows the URL but not the secret would: this delivery's
/// payload changed to say the payment was captured, signed with a wrong secret. A receiver must
/// refuse it (non-2xx) and change nothing.
async fn forge(state: &SimState, target: &Target, d: &Delivery) {
    let mut payload = d.payload.clone();
    payload["name"] = Value::from("CAPTURED");
    payload["success"] = Value::from(true);
    let body = serde_json::to_vec(&payload).unwrap_or_default();
    let forger = Target {
        secret: format!("forged-{}", target.secret),
        ..target.clone()
    };
    let date = httpdate::fmt_http_date(SystemTime::now());
    let result = match state.webhooks.client() {
        Ok(client) => send(&client, &forger, &date, &body).await,
        Err(e) => Err(e),
    };
    let (status, error) = match result {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e)),
    };
    let outcome = match status {
        Some(s) if (200..300).contains(&s) => Outcome::Delivered,
        Some(_) => Outcome::Refused,
        None => Outcome::Failed,
    };
    state.webhooks.record(Attempt {
        delivery_id: d.id,
        webhook_id: target.webhook_id.clone(),
        event: "epayments.payment.captured.v1".to_owned(),
        url: target.url.to_string(),
        attempt: 1,
        status,
        error,
        outcome,
        duplicate: false,
        forged: true,
        at: state
            .clock
            .wall()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        payload,
    });
}

/// Sleeps until `deadline` on the simulator's clock, waking early to re-check when the clock is
/// moved.
async fn wait_until(state: &SimState, wake: &Notify, deadline: Instant) {
    loop {
        let notified = wake.notified();
        tokio::pin!(notified);
        // Registered before the clock is read, so a move in between is not missed.
        notified.as_mut().enable();
        let now = state.clock.now();
        if now >= deadline {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(deadline - now) => {}
            _ = &mut notified => {}
        }
    }
}

/// One POST signed at `date` (RFC 1123). Dates are real time, not the simulator's, so a fresh
/// delivery looks fresh to a receiver even after the control API moved the simulator's clock.
async fn send(
    client: &reqwest::Client,
    target: &Target,
    date: &str,
    body: &[u8],
) -> Result<u16, String> {
    let signed = signature::sign(
        &target.secret,
        &target.path_and_query,
        &target.host,
        date,
        body,
    );
    client
        .post(target.url.clone())
        .header("host", &target.host)
        .header("content-type", "application/json")
        .header("x-ms-date", signed.date)
        .header("x-ms-content-sha256", signed.content_sha256)
        .header("authorization", signed.authorization)
        .body(body.to_vec())
        .send()
        .await
        .map(|res| res.status().as_u16())
        .map_err(|e| error_chain(&e))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let s = Duration::from_secs;
        let got: Vec<Duration> = (1..=8).map(|a| backoff(a, s(1), s(60))).collect();
        assert_eq!(got, [s(1), s(2), s(4), s(8), s(16), s(32), s(60), s(60)]);
        assert_eq!(backoff(u32::MAX, s(1), s(60)), s(60));
    }

    #[test]
    fn target_signs_what_reqwest_sends() {
        let t = |u: &str| Target::new("id".into(), u.parse().unwrap(), "s".into());
        let a = t("https://example.com/hooks/vipps?lane=1");
        assert_eq!(a.host, "example.com");
        assert_eq!(a.path_and_query, "/hooks/vipps?lane=1");
        let b = t("http://127.0.0.1:8080/x");
        assert_eq!(b.host, "127.0.0.1:8080");
        assert_eq!(b.path_and_query, "/x");
        let c = t("https://example.com:443");
        assert_eq!(c.host, "example.com");
        assert_eq!(c.path_and_query, "/");
        let d = t("http://[::1]:9000/v");
        assert_eq!(d.host, "[::1]:9000");
    }
}
