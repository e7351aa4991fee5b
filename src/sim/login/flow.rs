//! One Login from phone number request as a pure state machine: the customer decides, the
//! request expires, the merchant polls. No I/O and no clock: every step takes `now`.
//!
//! Invariants: a request leaves `Pending` once; only `Consented` can be turned into a token, and
//! only once (`Completed`); `Pending` and `Consented` become `Expired` at `expires_at`; a poll
//! sooner than `interval` after the previous answered poll is `slow_down` and changes nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::domain::Msisdn;
use crate::sim::clock::Now;

/// A duration as whole seconds, rounded up so a client that waits that long is never early.
pub fn secs_ceil(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Where a Login request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginState {
    /// Waiting for the customer.
    Pending,
    /// The customer consented; the token has not been fetched yet.
    Consented,
    /// The customer declined.
    Denied,
    /// Nobody acted (or the token was not fetched) before `expires_at`.
    Expired,
    /// The token was fetched; the request cannot be used again.
    Completed,
}

impl LoginState {
    /// Whether the request can still change because of the customer or the clock.
    pub fn is_open(self) -> bool {
        matches!(self, LoginState::Pending | LoginState::Consented)
    }
}

/// What the customer did in the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Consent,
    Deny,
}

/// A token poll that did not produce a token, named by its OAuth error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PollError {
    #[error("the customer has not answered yet")]
    AuthorizationPending,
    #[error("polled faster than the interval; wait at least {interval_secs} s between polls")]
    SlowDown { interval_secs: u64 },
    #[error("the customer declined the login")]
    AccessDenied,
    #[error("the login request expired")]
    ExpiredToken,
    #[error("the token for this auth_req_id was already issued")]
    AlreadyUsed,
}

impl PollError {
    /// The OAuth `error` value.
    pub fn kind(self) -> &'static str {
        match self {
            PollError::AuthorizationPending => "authorization_pending",
            PollError::SlowDown { .. } => "slow_down",
            PollError::AccessDenied => "access_denied",
            PollError::ExpiredToken => "expired_token",
            PollError::AlreadyUsed => "invalid_grant",
        }
    }
}

/// Who asked to log whom in, and for what. Serialized as the control API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Asked {
    /// In full: the control API is test tooling.
    #[serde(rename = "phoneNumber")]
    pub phone: Msisdn,
    pub client_id: String,
    pub merchant_serial_number: String,
    pub scopes: Vec<String>,
    pub binding_message: Option<String>,
}

/// One Login request.
#[derive(Debug, Clone)]
pub struct Login {
    pub auth_req_id: String,
    /// Creation order, for stable listings.
    pub seq: u64,
    pub asked: Asked,
    pub created: Now,
    pub expires_in: Duration,
    pub interval: Duration,
    pub state: LoginState,
    /// When the state last changed (the customer's answer, expiry or the token fetch).
    pub changed_at: Option<Instant>,
    /// The last poll that was answered (a `slow_down` does not count).
    pub last_poll: Option<Instant>,
    pub polls: u32,
}

impl Login {
    /// A pending request created at `now`; its `seq` is given when it is stored.
    pub fn new(
        auth_req_id: String,
        asked: Asked,
        now: Now,
        expires_in: Duration,
        interval: Duration,
    ) -> Login {
        Login {
            auth_req_id,
            seq: 0,
            asked,
            created: now,
            expires_in,
            interval,
            state: LoginState::Pending,
            changed_at: None,
            last_poll: None,
            polls: 0,
        }
    }

    pub fn expires_at(&self) -> Instant {
        self.created.instant + self.expires_in
    }

    /// The wall-clock time of `at`, for listings.
    pub fn wall(&self, at: Instant) -> chrono::DateTime<chrono::Utc> {
        self.created.wall_at(at)
    }

    /// Expires an open request whose time is up. Returns whether it expired now.
    pub fn expire_if_due(&mut self, now: Instant) -> bool {
        if self.state.is_open() && now >= self.expires_at() {
            self.state = LoginState::Expired;
            self.changed_at = Some(self.expires_at());
            return true;
        }
        false
    }

    /// The customer's answer. Only a pending request can be answered; otherwise the current
    /// state is returned as the error.
    pub fn decide(&mut self, decision: Decision, now: Instant) -> Result<(), LoginState> {
        self.expire_if_due(now);
        if self.state != LoginState::Pending {
            return Err(self.state);
        }
        self.state = match decision {
            Decision::Consent => LoginState::Consented,
            Decision::Deny => LoginState::Denied,
        };
        self.changed_at = Some(now);
        Ok(())
    }

    /// A token poll at `now`. `Ok` means a token may be issued, which completes the request.
    pub fn poll(&mut self, now: Instant) -> Result<(), PollError> {
        self.expire_if_due(now);
        match self.state {
            LoginState::Denied => return Err(PollError::AccessDenied),
            LoginState::Expired => return Err(PollError::ExpiredToken),
            LoginState::Completed => return Err(PollError::AlreadyUsed),
            LoginState::Pending | LoginState::Consented => {}
        }
        if let Some(last) = self.last_poll
            && now.saturating_duration_since(last) < self.interval
        {
            return Err(PollError::SlowDown {
                interval_secs: secs_ceil(self.interval),
            });
        }
        self.last_poll = Some(now);
        self.polls += 1;
        if self.state == LoginState::Pending {
            return Err(PollError::AuthorizationPending);
        }
        self.state = LoginState::Completed;
        self.changed_at = Some(now);
        Ok(())
    }
}

#[cfg(test)]
impl Login {
    /// A pending request from client `c` of merchant 123456 to log 4791234567 in with `scopes`,
    /// expiring in 600 s, to be polled every 5 s.
    pub(crate) fn example(now: Instant, scopes: &[&str]) -> Login {
        let asked = Asked {
            phone: "4791234567".parse().unwrap(),
            client_id: "c".into(),
            merchant_serial_number: "123456".into(),
            scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
            binding_message: None,
        };
        let now = Now {
            instant: now,
            wall: chrono::Utc::now(),
        };
        let (expiry, interval) = (Duration::from_secs(600), Duration::from_secs(5));
        Login::new("id".into(), asked, now, expiry, interval)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: Duration = Duration::from_secs(5);
    const EXPIRY: Duration = Duration::from_secs(600);

    fn login(t0: Instant) -> Login {
        Login::example(t0, &["openid"])
    }

    #[tokio::test(start_paused = true)]
    async fn polling_follows_the_customer_and_the_interval() {
        let t0 = Instant::now();
        let mut l = login(t0);
        assert_eq!(l.poll(t0), Err(PollError::AuthorizationPending));
        let early = t0 + Duration::from_secs(1);
        assert_eq!(l.poll(early), Err(PollError::SlowDown { interval_secs: 5 }));
        // A slow_down does not move the window: interval after the first poll is fine.
        assert_eq!(l.poll(t0 + INTERVAL), Err(PollError::AuthorizationPending));
        l.decide(Decision::Consent, t0 + Duration::from_secs(6))
            .unwrap();
        // Even a consented request is rate limited.
        let early = t0 + Duration::from_secs(7);
        assert_eq!(l.poll(early), Err(PollError::SlowDown { interval_secs: 5 }));
        assert_eq!(l.poll(t0 + 2 * INTERVAL), Ok(()));
        assert_eq!(l.state, LoginState::Completed);
        assert_eq!(l.poll(t0 + 3 * INTERVAL), Err(PollError::AlreadyUsed));
        // Final answers are not rate limited.
        assert_eq!(l.poll(t0 + 3 * INTERVAL), Err(PollError::AlreadyUsed));
    }

    #[tokio::test(start_paused = true)]
    async fn final_states_answer_their_error() {
        let t0 = Instant::now();
        let mut denied = login(t0);
        denied.decide(Decision::Deny, t0).unwrap();
        assert_eq!(denied.poll(t0), Err(PollError::AccessDenied));
        assert_eq!(denied.poll(t0), Err(PollError::AccessDenied));
        assert_eq!(
            denied.decide(Decision::Consent, t0),
            Err(LoginState::Denied)
        );

        let mut ignored = login(t0);
        assert!(!ignored.expire_if_due(t0 + EXPIRY - Duration::from_millis(1)));
        assert_eq!(ignored.poll(t0 + EXPIRY), Err(PollError::ExpiredToken));
        assert_eq!(ignored.changed_at, Some(t0 + EXPIRY));
        assert_eq!(
            ignored.decide(Decision::Consent, t0 + EXPIRY),
            Err(LoginState::Expired)
        );

        // A consent whose token is never fetched expires too.
        let mut unfetched = login(t0);
        unfetched.decide(Decision::Consent, t0).unwrap();
        assert!(unfetched.expire_if_due(t0 + EXPIRY));
        assert_eq!(unfetched.poll(t0 + EXPIRY), Err(PollError::ExpiredToken));
    }

    #[test]
    fn error_kinds_are_the_oauth_codes() {
        let kinds: Vec<&str> = [
            PollError::AuthorizationPending,
            PollError::SlowDown { interval_secs: 5 },
            PollError::AccessDenied,
            PollError::ExpiredToken,
            PollError::AlreadyUsed,
        ]
        .iter()
        .map(|e| e.kind())
        .collect();
        assert_eq!(
            kinds,
            [
                "authorization_pending",
                "slow_down",
                "access_denied",
                "expired_token",
                "invalid_grant"
            ]
        );
    }
}
