//! The merchant's CRM as the loyalty club, over HTTP, with lanehub as the client
//! (`members.provider = "http"`; the contract is docs/crm-api.md).
//!
//! Lookups go to the CRM at once and never wait longer than `members.http_timeout`: anything
//! but `200` or `404` in time is an error, which the lane treats as "membership unknown" (the
//! customer is checked in as a non-member and the payment goes on).
//!
//! Enrollments never wait for the CRM: `upsert_member` writes them to the outbox in the local
//! SQLite (`store::outbox`) and returns once that is on disk. One delivery task sends the
//! outbox oldest first, each entry until the CRM accepts it, with exponential backoff (and
//! `Retry-After`) between attempts. A `4xx` other than `408` and `429` is a refusal for good:
//! the entry is kept, marked refused, logged and counted, until the operator retries it.
//! A lookup of a customer whose enrollment still waits in the outbox answers "member" without
//! asking the CRM, which does not know yet.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::domain::{LaneId, Msisdn};
use crate::metrics::OutboxDelivery;
use crate::store::{
    Consent, Member, MemberSource, MembershipStore, OutboxEntry, Store, StoreError, StoreFuture,
    Undelivered, Upserted,
};

/// How long the delivery task waits with nothing due before it looks again, so a retry the
/// operator asked for from the command line is picked up.
pub const OUTBOX_IDLE_POLL: Duration = Duration::from_secs(15);

pub use crate::backoff::Backoff;

/// Waits between delivery attempts of one entry: 1 s doubling up to 5 minutes.
pub const DELIVERY_BACKOFF: Backoff =
    Backoff::new(Duration::from_secs(1), Duration::from_secs(300));

/// The wait after `attempts` failed attempts, with jitter so a chain's stores do not all come
/// back at the same moment after an outage.
fn delivery_wait(backoff: &Backoff, attempts: u32) -> Duration {
    backoff.half_jittered(attempts.saturating_add(1))
}

/// A member as the CRM sends and receives it (docs/crm-api.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CrmMember {
    pub phone_number: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub consents: Vec<Consent>,
    pub enrolled_at: DateTime<Utc>,
    /// Only in enrollments lanehub sends; a CRM may return it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_lane: Option<String>,
    /// This store's `store.name`; only in enrollments lanehub sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_store: Option<String>,
}

impl CrmMember {
    pub(crate) fn from_member(m: &Member, store_name: &str) -> Self {
        CrmMember {
            phone_number: m.phone_number.as_str().to_owned(),
            name: m.name.clone(),
            email: m.email.clone(),
            consents: m.consents.clone(),
            enrolled_at: m.enrolled_at,
            enrolled_lane: m.enrolled_lane.as_ref().map(|l| l.as_str().to_owned()),
            enrolled_store: Some(store_name.to_owned()),
        }
    }

    /// The member this record describes; `phone` is the one asked for.
    fn into_member(self, phone: &Msisdn, source: MemberSource) -> Result<Member, StoreError> {
        let member = Member {
            phone_number: phone.clone(),
            name: self.name,
            email: self.email,
            consents: self.consents,
            enrolled_at: self.enrolled_at,
            // A lane id of another store may not be one of ours; it is informative only.
            enrolled_lane: self.enrolled_lane.and_then(|l| l.parse::<LaneId>().ok()),
            source,
        };
        member.validate()?;
        Ok(member)
    }
}

fn crm_error(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Provider {
        provider: "http",
        detail: crate::vipps::error::mask_digit_runs(&detail.to_string()),
    }
}

/// What one delivery attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Attempt {
    Delivered,
    /// Worth trying again: no answer, a timeout, 408, 429, 5xx. `after` is `Retry-After`.
    Failed {
        reason: String,
        after: Option<Duration>,
    },
    /// A 4xx other than 408 and 429: the CRM will not take this enrollment as it is.
    Refused {
        reason: String,
    },
}

/// The CRM membership provider; clones share the client and the delivery task's wake-up.
#[derive(Clone)]
pub struct CrmMembers {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    /// Without a trailing slash.
    base_url: String,
    token: SecretString,
    store_name: String,
    store: Store,
    backoff: Backoff,
    wake: Notify,
}

impl std::fmt::Debug for CrmMembers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrmMembers")
            .field("base_url", &self.inner.base_url)
            .finish_non_exhaustive()
    }
}

/// Most members one page of the CRM's listing holds (`GET /members?limit=&after=`).
pub const LIST_PAGE: usize = 500;

/// Every member of the CRM's club, page by page in phone-number order
/// (`GET {base_url}/members?limit=500&after=<last phone number>`), for `lanehub members export`.
pub async fn list_members(
    base_url: &str,
    token: &SecretString,
    timeout: Duration,
) -> Result<Vec<Member>, StoreError> {
    let http = http_client(timeout).map_err(crm_error)?;
    let url = format!("{}/members", base_url.trim_end_matches('/'));
    let mut all: Vec<Member> = vec![];
    let mut after: Option<String> = None;
    loop {
        // Phone numbers are digits: nothing to escape.
        let page_url = match &after {
            Some(after) => format!("{url}?limit={LIST_PAGE}&after={after}"),
            None => format!("{url}?limit={LIST_PAGE}"),
        };
        let response = http
            .get(&page_url)
            .bearer_auth(token.expose_secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| crm_error(describe(e)))?;
        if response.status() != StatusCode::OK {
            return Err(crm_error(format!(
                "the CRM answered {} to the member listing",
                response.status()
            )));
        }
        let page: Vec<CrmMember> = response
            .json()
            .await
            .map_err(|e| crm_error(format!("the CRM's member listing is not valid: {e}")))?;
        let full = page.len() >= LIST_PAGE;
        for record in page {
            let phone: Msisdn = record
                .phone_number
                .parse()
                .map_err(|e| crm_error(format!("the CRM listed an invalid phone number: {e}")))?;
            if after.as_deref() >= Some(record.phone_number.as_str()) {
                return Err(crm_error(
                    "the CRM's member listing is not in phone-number order",
                ));
            }
            after = Some(record.phone_number.clone());
            all.push(record.into_member(&phone, MemberSource::Enrollment)?);
        }
        if !full {
            return Ok(all);
        }
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .connect_timeout(timeout)
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("lanehub/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

impl CrmMembers {
    /// A client of the CRM at `base_url`; the outbox lives in `store`.
    pub fn new(
        base_url: &str,
        token: SecretString,
        timeout: Duration,
        store_name: &str,
        store: Store,
        backoff: Backoff,
    ) -> Result<Self, String> {
        let http = http_client(timeout)?;
        Ok(CrmMembers {
            inner: Arc::new(Inner {
                http,
                base_url: base_url.trim_end_matches('/').to_owned(),
                token,
                store_name: store_name.to_owned(),
                store,
                backoff,
                wake: Notify::new(),
            }),
        })
    }

    fn url(&self, phone: &Msisdn) -> String {
        format!("{}/members/{}", self.inner.base_url, phone.as_str())
    }

    async fn lookup(&self, phone: &Msisdn) -> Result<Option<Member>, StoreError> {
        let inner = &self.inner;
        if let Some(waiting) = inner.store.outbox_waiting_for(phone).await? {
            let record: CrmMember = serde_json::from_value(waiting.body)
                .map_err(|e| StoreError::corrupt("outbox body", e))?;
            return record
                .into_member(phone, MemberSource::Enrollment)
                .map(Some);
        }
        let response = inner
            .http
            .get(self.url(phone))
            .bearer_auth(inner.token.expose_secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| crm_error(describe(e)))?;
        match response.status() {
            StatusCode::OK => {
                let record: CrmMember = response
                    .json()
                    .await
                    .map_err(|e| crm_error(format!("the CRM's member is not valid: {e}")))?;
                if record.phone_number != phone.as_str() {
                    return Err(crm_error("the CRM answered with another phone number"));
                }
                record
                    .into_member(phone, MemberSource::Enrollment)
                    .map(Some)
                    .map_err(|e| crm_error(format!("the CRM's member is not valid: {e}")))
            }
            StatusCode::NOT_FOUND => Ok(None),
            status => Err(crm_error(format!("the CRM answered {status}"))),
        }
    }

    async fn enroll(&self, member: Member) -> Result<Upserted, StoreError> {
        member.validate()?;
        let inner = &self.inner;
        let body = serde_json::to_value(CrmMember::from_member(&member, &inner.store_name))?;
        let key = uuid::Uuid::new_v4().to_string();
        inner
            .store
            .outbox_push(member.phone_number.clone(), body, key, Utc::now())
            .await?;
        inner.wake.notify_one();
        Ok(Upserted::Inserted)
    }

    /// One attempt to deliver `entry`.
    async fn put(&self, entry: &OutboxEntry) -> Attempt {
        let inner = &self.inner;
        let sent = inner
            .http
            .put(self.url(&entry.phone_number))
            .bearer_auth(inner.token.expose_secret())
            .header("idempotency-key", &entry.idempotency_key)
            .json(&entry.body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Failed {
                    reason: describe(e),
                    after: None,
                };
            }
        };
        let status = response.status();
        match status.as_u16() {
            200 | 201 | 204 => Attempt::Delivered,
            408 | 429 => Attempt::Failed {
                reason: format!("the CRM answered {status}"),
                after: retry_after(&response),
            },
            400..=499 => {
                let detail = response.text().await.unwrap_or_default();
                let detail: String = detail.chars().take(200).collect();
                Attempt::Refused {
                    reason: crate::vipps::error::mask_digit_runs(&format!(
                        "the CRM refused it with {status}: {}",
                        detail.trim()
                    )),
                }
            }
            _ => Attempt::Failed {
                reason: format!("the CRM answered {status}"),
                after: retry_after(&response),
            },
        }
    }

    /// Delivers the oldest waiting entry if it is due. Returns how long to wait before the
    /// next look (`None`: look again at once).
    pub async fn deliver_next(&self) -> Option<Duration> {
        let inner = &self.inner;
        let entry = match inner.store.outbox_head().await {
            Ok(Some(entry)) => entry,
            Ok(None) => return Some(OUTBOX_IDLE_POLL),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the CRM outbox");
                return Some(inner.backoff.initial.max(Duration::from_secs(1)));
            }
        };
        let now = Utc::now();
        if entry.next_attempt_at > now {
            let due = (entry.next_attempt_at - now).to_std().unwrap_or_default();
            return Some(due.min(OUTBOX_IDLE_POLL));
        }
        let written = match self.put(&entry).await {
            Attempt::Delivered => {
                crate::metrics::outbox_delivery(OutboxDelivery::Delivered);
                tracing::info!(entry = entry.id, phone = %entry.phone_number,
                    attempts = entry.attempts + 1, "enrollment delivered to the CRM");
                inner.store.outbox_delivered(entry.id).await
            }
            Attempt::Failed { reason, after } => {
                crate::metrics::outbox_delivery(OutboxDelivery::Failed);
                let wait =
                    delivery_wait(&inner.backoff, entry.attempts).max(after.unwrap_or_default());
                tracing::warn!(entry = entry.id, phone = %entry.phone_number,
                    attempts = entry.attempts + 1, error = %reason, retry_in = ?wait,
                    "enrollment not delivered to the CRM; it stays in the outbox");
                let next = now + chrono::Duration::from_std(wait).unwrap_or_default();
                inner
                    .store
                    .outbox_undelivered(entry.id, reason, Undelivered::RetryAt(next))
                    .await
            }
            Attempt::Refused { reason } => {
                crate::metrics::outbox_delivery(OutboxDelivery::Refused);
                tracing::error!(entry = entry.id, phone = %entry.phone_number, error = %reason,
                    "the CRM refused an enrollment; it is kept as refused until retried \
                     (`lanehub members outbox`)");
                inner
                    .store
                    .outbox_undelivered(entry.id, reason, Undelivered::RefusedAt(now))
                    .await
            }
        };
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot update the CRM outbox");
            return Some(inner.backoff.initial.max(Duration::from_secs(1)));
        }
        None
    }

    /// Refreshes the outbox gauges.
    pub async fn record_outbox_stats(&self) {
        match self.inner.store.outbox_stats().await {
            Ok(stats) => crate::metrics::outbox_stats(&stats, Utc::now()),
            Err(e) => tracing::warn!(error = %e, "cannot read the CRM outbox"),
        }
    }

    /// The delivery task: runs until its runtime stops. An entry interrupted mid-delivery is
    /// sent again at the next start, with the same `Idempotency-Key`.
    pub async fn deliver_forever(self) {
        loop {
            let wait = self.deliver_next().await;
            self.record_outbox_stats().await;
            if let Some(wait) = wait {
                // A new enrollment wakes the task at once.
                let _ = tokio::time::timeout(wait, self.inner.wake.notified()).await;
            }
        }
    }
}

/// A reqwest error in a few words, without the URL (it holds a phone number).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "the CRM did not answer in time".into()
    } else if e.is_connect() {
        "cannot connect to the CRM".into()
    } else {
        format!("the request to the CRM failed: {}", e.without_url())
    }
}

/// `Retry-After` in seconds, capped at an hour.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let seconds: u64 = response
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(3600)))
}

impl MembershipStore for CrmMembers {
    fn member(&self, phone: &Msisdn) -> StoreFuture<Option<Member>> {
        let (this, phone) = (self.clone(), phone.clone());
        Box::pin(async move { this.lookup(&phone).await })
    }

    fn upsert_member(&self, member: Member) -> StoreFuture<Upserted> {
        let this = self.clone();
        Box::pin(async move { this.enroll(member).await })
    }

    /// What this store knows without asking the CRM: the enrollments waiting in its outbox (the
    /// whole club comes from `list_members`, for exports).
    fn members(&self) -> StoreFuture<Vec<Member>> {
        let store = self.inner.store.clone();
        Box::pin(async move {
            let mut members: Vec<Member> = vec![];
            for entry in store.outbox().await? {
                if entry.refused_at.is_some() {
                    continue;
                }
                let record: CrmMember = serde_json::from_value(entry.body)
                    .map_err(|e| StoreError::corrupt("outbox body", e))?;
                let member = record.into_member(&entry.phone_number, MemberSource::Enrollment)?;
                members.retain(|m| m.phone_number != member.phone_number);
                members.push(member);
            }
            members.sort_by(|a, b| a.phone_number.cmp(&b.phone_number));
            Ok(members)
        })
    }

    fn member_count(&self) -> StoreFuture<u64> {
        let members = self.members();
        Box::pin(async move { Ok(members.await?.len() as u64) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_jitter() {
        let b = Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        for (attempts, full) in [(0, 1), (1, 2), (3, 8), (6, 60), (40, 60)] {
            let wait = delivery_wait(&b, attempts);
            let full = Duration::from_secs(full);
            assert!(wait <= full && wait >= full / 2, "{attempts}: {wait:?}");
        }
    }

    #[test]
    fn the_crm_member_shape_is_the_documented_one() {
        let record: CrmMember = serde_json::from_value(serde_json::json!({
            "phoneNumber": "4791234567",
            "name": "Kari Nordmann",
            "email": "kari@example.no",
            "consents": [{"id": "terms", "accepted": true, "required": true, "text": "Terms"}],
            "enrolledAt": "2025-03-01T09:30:00Z",
            "tier": "gold"
        }))
        .unwrap();
        let phone: Msisdn = "4791234567".parse().unwrap();
        let member = record
            .into_member(&phone, MemberSource::Enrollment)
            .unwrap();
        assert_eq!(member.name, "Kari Nordmann");
        assert_eq!(member.consents[0].id, "terms");
        let sent = serde_json::to_value(CrmMember::from_member(&member, "oslo")).unwrap();
        assert_eq!(sent["enrolledStore"], "oslo");
        assert_eq!(sent["phoneNumber"], "4791234567");
        assert!(sent.get("enrolledLane").is_none());
    }
}
