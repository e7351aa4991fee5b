//! Login from phone number (CIBA): backchannel authentication, token polling, userinfo, discovery.
//!
//! The contract is VIPPS.md (no OpenAPI file describes CIBA); userinfo and discovery follow
//! `userinfo-api.yaml` and `login-api.yaml`. A request is a pure state machine ([`flow`]); this
//! module holds all of them, lets virtual customers answer in [`tick`] (their `login` behaviour
//! after `login_delay`), and announces each consent with the `login.merchant-initiated.ping.v1`
//! webhook. Locks are taken one at a time and never held across an `.await` or a publish.
//!
//! - [`ciba`]: `POST /vipps-login-ciba/api/backchannel/authentication` and the CIBA grant of
//!   `POST /access-management-1.0/access/oauth2/token` (Basic auth, OAuth errors).
//! - [`userinfo`]: `GET /vipps-userinfo-api/userinfo` with the Login access token, and the claims.
//! - [`discovery`]: the OpenID configuration and JWKS, pointing at the simulator's own address.
//! - [`control`]: `/sim/v1/logins…` to list requests and answer as the customer.

mod ciba;
mod control;
mod discovery;
pub mod flow;
mod userinfo;

use std::collections::HashMap;
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::Duration;

use actix_web::web;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::time::Instant;

use super::SimState;
use crate::config::LoginBehaviour;
use crate::domain::Msisdn;
pub use flow::{Asked, Decision, Login, LoginState, PollError, secs_ceil};

/// The webhook event published when a customer consents.
pub const PING_EVENT: &str = "login.merchant-initiated.ping.v1";
/// Lifetime of a Login access token.
pub const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// How long a finished request stays listed after it finished.
const KEEP_FINISHED: Duration = Duration::from_secs(3600);
/// Most requests held at once; the oldest finished ones are dropped first.
pub const MAX_LOGINS: usize = 1000;

/// Which optional marketing consents a virtual customer accepts when asked for
/// `delegatedConsents`. The membership terms are required and always accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsentChoices {
    pub email_marketing: bool,
    pub sms_marketing: bool,
}

impl Default for ConsentChoices {
    fn default() -> Self {
        ConsentChoices {
            email_marketing: true,
            sms_marketing: false,
        }
    }
}

/// A Login access token and the userinfo it unlocks.
#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub auth_req_id: String,
    pub expires_at: Instant,
    /// The userinfo answer, fixed when the token was issued.
    pub claims: serde_json::Value,
}

/// Every Login request the simulator holds, the access tokens issued, and the customers'
/// consent choices.
#[derive(Debug, Default)]
pub struct Logins {
    requests: HashMap<String, Login>,
    tokens: HashMap<String, AccessGrant>,
    consents: HashMap<Msisdn, ConsentChoices>,
    next_seq: u64,
}

impl Logins {
    pub fn get(&self, auth_req_id: &str) -> Option<&Login> {
        self.requests.get(auth_req_id)
    }

    pub fn get_mut(&mut self, auth_req_id: &str) -> Option<&mut Login> {
        self.requests.get_mut(auth_req_id)
    }

    /// All requests, oldest first.
    pub fn all(&self) -> Vec<&Login> {
        let mut all: Vec<&Login> = self.requests.values().collect();
        all.sort_by_key(|l| l.seq);
        all
    }

    /// The request to `phone` still waiting for the customer at `now`, if any.
    pub fn pending_for(&mut self, phone: &Msisdn, now: Instant) -> Option<&Login> {
        let mut found = None;
        for login in self
            .requests
            .values_mut()
            .filter(|l| &l.asked.phone == phone)
        {
            login.expire_if_due(now);
            if login.state == LoginState::Pending {
                found = Some(login.auth_req_id.clone());
            }
        }
        found.and_then(|id| self.requests.get(&id))
    }

    /// Adds a request, numbering it, and makes room if too many are held.
    pub fn insert(&mut self, mut login: Login) {
        login.seq = self.next_seq;
        self.next_seq += 1;
        if self.requests.len() >= MAX_LOGINS {
            self.drop_oldest_finished();
        }
        self.requests.insert(login.auth_req_id.clone(), login);
    }

    fn drop_oldest_finished(&mut self) {
        let oldest = self
            .requests
            .values()
            .filter(|l| !l.state.is_open())
            .min_by_key(|l| l.seq)
            .map(|l| l.auth_req_id.clone());
        if let Some(id) = oldest {
            self.requests.remove(&id);
        }
    }

    pub fn consent_choices(&self, phone: &Msisdn) -> ConsentChoices {
        self.consents.get(phone).copied().unwrap_or_default()
    }

    pub fn set_consent_choices(&mut self, phone: Msisdn, choices: ConsentChoices) {
        self.consents.insert(phone, choices);
    }

    pub fn insert_token(&mut self, token: String, grant: AccessGrant) {
        self.tokens.insert(token, grant);
    }

    /// The grant of an access token that has not expired at `now`.
    pub fn grant(&self, token: &str, now: Instant) -> Option<&AccessGrant> {
        self.tokens.get(token).filter(|g| now < g.expires_at)
    }

    /// Expires due requests and forgets expired tokens and long-finished requests.
    fn prune(&mut self, now: Instant) {
        self.tokens.retain(|_, g| now < g.expires_at);
        self.requests.retain(|_, l| {
            l.expire_if_due(now);
            l.state.is_open() || l.changed_at.is_none_or(|at| at + KEEP_FINISHED > now)
        });
    }
}

/// The Login state, recovering from a poisoned lock: the data stays consistent because every
/// change is a single assignment.
pub(super) fn lock(state: &SimState) -> MutexGuard<'_, Logins> {
    state.logins.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Announces a consent to the merchant's webhooks.
fn publish_ping(state: &SimState, merchant_serial_number: &str, auth_req_id: &str) {
    state.webhooks.publish(
        merchant_serial_number,
        PING_EVENT,
        json!({ "auth_req_id": auth_req_id }),
    );
}

pub(super) fn api_routes(cfg: &mut web::ServiceConfig) {
    ciba::routes(cfg);
    userinfo::routes(cfg);
    discovery::routes(cfg);
}

pub(super) fn control_routes(cfg: &mut web::ServiceConfig) {
    control::routes(cfg);
}

/// Lets virtual customers answer pending requests, expires requests and prunes old state.
pub(super) fn tick(state: &Arc<SimState>, now: Instant) {
    let pending: Vec<Msisdn> = {
        let mut logins = lock(state);
        logins.prune(now);
        logins
            .requests
            .values()
            .filter(|l| l.state == LoginState::Pending)
            .map(|l| l.asked.phone.clone())
            .collect()
    };
    if pending.is_empty() {
        return;
    }
    let behaviours: HashMap<Msisdn, (LoginBehaviour, Duration)> = {
        let customers = state.customers();
        pending
            .iter()
            .filter_map(|p| customers.get(p))
            .map(|c| {
                let b = c.behaviour;
                (c.phone_number.clone(), (b.login, b.login_delay))
            })
            .collect()
    };
    let mut pings = vec![];
    {
        let mut logins = lock(state);
        for login in logins.requests.values_mut() {
            if login.state != LoginState::Pending {
                continue;
            }
            let Some(&(behaviour, delay)) = behaviours.get(&login.asked.phone) else {
                continue;
            };
            // The customer answers exactly `delay` after the request, even if ticks are late.
            let due = login.created.instant + delay;
            if due > now {
                continue;
            }
            let decision = match behaviour {
                LoginBehaviour::Consent => Decision::Consent,
                LoginBehaviour::Deny => Decision::Deny,
                LoginBehaviour::Ignore => continue,
            };
            if login.decide(decision, due).is_err() {
                continue;
            }
            tracing::debug!(phone = %login.asked.phone, ?decision, "LoginAnswered");
            if decision == Decision::Consent {
                pings.push((
                    login.asked.merchant_serial_number.clone(),
                    login.auth_req_id.clone(),
                ));
            }
        }
    }
    for (msn, id) in pings {
        publish_ping(state, &msn, &id);
    }
}

/// How a request is shown by the control API.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginView {
    pub auth_req_id: String,
    #[serde(flatten)]
    pub asked: Asked,
    pub state: LoginState,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub expires_at: chrono::DateTime<chrono::Utc>,
    pub expires_in: u64,
    pub interval: u64,
    /// Token polls answered (a `slow_down` is not counted).
    pub polls: u32,
    /// When the state last changed: the customer's answer, expiry, or the token fetch.
    pub changed_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<&Login> for LoginView {
    fn from(l: &Login) -> Self {
        LoginView {
            auth_req_id: l.auth_req_id.clone(),
            asked: l.asked.clone(),
            state: l.state,
            created_at: l.created.wall,
            expires_at: l.wall(l.expires_at()),
            expires_in: secs_ceil(l.expires_in),
            interval: secs_ceil(l.interval),
            polls: l.polls,
            changed_at: l.changed_at.map(|at| l.wall(at)),
        }
    }
}
