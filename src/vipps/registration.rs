//! lanehub's webhook registration at Vipps: one registration for lanehub's URL and
//! [`SUBSCRIBED_WEBHOOK_EVENTS`] whose secret it holds, found again at every start; orphans and
//! registrations for other events are deleted, and nothing is registered twice after a lost
//! answer (Vipps cannot de-duplicate a registration).

use secrecy::SecretString;

use crate::backoff::Backoff;
use crate::shutdown::{Phase, Shutdown};
use crate::store::{Store, StoreError};
use crate::vipps::SUBSCRIBED_WEBHOOK_EVENTS;
use crate::vipps::actor::VippsHandle;
use crate::vipps::models::RegisterWebhookRequest;

const SECRET_KEY: &str = "webhook.secret";
const ID_KEY: &str = "webhook.id";
const URL_KEY: &str = "webhook.url";

/// Registers lanehub's webhook for `url` (or reuses the registration whose secret is stored),
/// trying again with capped backoff until it succeeds or lanehub starts shutting down. Until then
/// the receiver answers 503 and polling alone follows payments. `None` when lanehub began
/// shutting down first.
pub async fn register(
    vipps: &VippsHandle,
    store: &Store,
    url: &str,
    backoff: Backoff,
    shutdown: &Shutdown,
) -> Option<SecretString> {
    let mut failures = 0u32;
    loop {
        let attempt = tokio::select! {
            result = ensure_registered(vipps, store, url) => result,
            // A registration cut short is replaced at the next start (its secret was not kept).
            () = shutdown.reached(Phase::Draining) => return None,
        };
        match attempt {
            Ok(secret) => {
                tracing::info!(url, failures, "webhook registered");
                return Some(secret);
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
                    () = shutdown.reached(Phase::Draining) => return None,
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

/// Reuses the registration for `url` whose id and secret are stored when it asks for exactly
/// [`SUBSCRIBED_WEBHOOK_EVENTS`], or registers anew. Every other registration for `url` is
/// deleted: an orphan (a registration whose answer was lost, or whose secret was) because lanehub
/// cannot verify its deliveries, which would fail for days; one for other events (an older
/// lanehub's) because Vipps cannot change a registration's events. Runs from the listing each
/// time, so a registration whose answer was lost is found and removed before the next one, never
/// registered beside it.
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
            && subscribed(&w.events);
        if reusable && let Some(secret) = stored_secret.take() {
            kept = Some(secret);
            continue;
        }
        if stored_id.as_deref() == Some(w.id.as_str()) && !subscribed(&w.events) {
            tracing::info!(url, id = %w.id, events = ?w.events, "replacing lanehub's webhook registration: it asks for other events");
        } else {
            tracing::warn!(url, id = %w.id, "deleting a webhook registration for lanehub's URL whose secret lanehub does not hold");
        }
        vipps.delete_webhook(&w.id).await?;
    }
    if let Some(secret) = kept {
        return Ok(secret);
    }
    let registered = vipps
        .register_webhook(&RegisterWebhookRequest {
            url: url.to_owned(),
            events: SUBSCRIBED_WEBHOOK_EVENTS
                .iter()
                .map(|e| (*e).to_owned())
                .collect(),
        })
        .await?;
    store
        .put_secret_setting(SECRET_KEY, &registered.secret)
        .await?;
    store.put_setting(ID_KEY, &registered.id).await?;
    store.put_setting(URL_KEY, url).await?;
    Ok(registered.secret)
}

/// Whether a registration asks for exactly the events lanehub subscribes to, in any order.
fn subscribed(events: &[String]) -> bool {
    let mut theirs: Vec<&str> = events.iter().map(String::as_str).collect();
    theirs.sort_unstable();
    theirs.dedup();
    let mut ours = SUBSCRIBED_WEBHOOK_EVENTS;
    ours.sort_unstable();
    theirs == ours
}

#[cfg(test)]
mod tests {
    use super::{Backoff, SUBSCRIBED_WEBHOOK_EVENTS, subscribed};
    use std::time::Duration;

    #[test]
    fn only_the_subscribed_events_exactly_are_reused() {
        let mut events: Vec<String> = SUBSCRIBED_WEBHOOK_EVENTS
            .iter()
            .rev()
            .map(|e| (*e).to_owned())
            .collect();
        assert!(subscribed(&events), "in any order");
        events.push("epayments.payment.captured.v1".into());
        assert!(!subscribed(&events), "more events");
        events.truncate(2);
        assert!(!subscribed(&events), "fewer events");
    }

    #[test]
    fn registration_backoff_doubles_up_to_its_cap() {
        let b = Backoff {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(300),
        };
        let waits: Vec<u64> = (1..=9).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(b.after(u32::MAX), Duration::from_secs(300));
    }
}
