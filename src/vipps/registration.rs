//! lanehub's webhook registration at Vipps: one registration for lanehub's URL whose secret it
//! holds, found again at every start, orphans deleted, never registered twice after a lost answer
//! (Vipps cannot de-duplicate a registration).

use secrecy::SecretString;

use crate::backoff::Backoff;
use crate::shutdown::{Phase, Shutdown};
use crate::store::{Store, StoreError};
use crate::vipps::actor::VippsHandle;
use crate::vipps::models::RegisterWebhookRequest;

/// The events lanehub subscribes to.
pub const EVENTS: &[&str] = &crate::vipps::WEBHOOK_EVENTS;
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
    use super::Backoff;
    use std::time::Duration;

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
