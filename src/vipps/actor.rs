//! The shared Vipps actor behind [`VippsHandle`] (`vipps::handle`), the cheap cloneable handle lanes use for every
//! Vipps call: cached access tokens, lanehub's own rate limits, retries and one circuit breaker
//! per Vipps [`Api`].
//!
//! How the work is split (STYLE rule 5): the actor owns only state — the access token
//! ([`AuthState`]), the [`RateLimiter`] and the [`Circuit`]s — and changes it in synchronous
//! handlers. The network work of a call runs in the caller's task: the handle asks the actor for
//! admission (circuit + rate-limit slot), sleeps until its slot, asks for a token, calls
//! [`VippsClient`] directly, and reports the outcome back. The only request the actor makes
//! itself is the token fetch, in `ctx.spawn`, whose result comes back as a synchronous
//! continuation; however many callers ask meanwhile, one fetch is in flight.
//!
//! Per call: retryable errors (423, 429, 5xx, timeouts, connection errors) are retried with
//! exponential backoff and full jitter, never sooner than `Retry-After`, always with the same
//! `Idempotency-Key` (the caller's) — except calls Vipps cannot de-duplicate (Login start, token
//! poll, webhook registration: [`Operation::safe_to_repeat`]), which are repeated only after an
//! answer that says Vipps did not process them (423, 429); a 401 on a merchant call drops the
//! token and retries once; the call ends at its deadline with [`VippsError::DeadlineExceeded`]. Login polling: either
//! [`VippsHandle::login_token`] (one poll, for lanes that schedule polls themselves or react to
//! the ping webhook); the caller keeps the pace (`interval`, +5 s on `slow_down`).
//!
//! Circuits: a call counts only toward its own API's circuit, so the best-effort check-in (which
//! the Vipps test environment answers with 500) never stops payments. A failed token fetch counts
//! toward the access-token circuit alone; while that is open and no token is held, merchant calls
//! fail fast as unavailable without counting against their own API.

use std::collections::HashMap;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::circuit::{Admission, Circuit, CircuitSettings, CircuitState, Outcome};
use super::client::VippsClient;
use super::error::VippsError;
use super::models::*;
use super::ratelimit::{RateLimitSettings, RateLimiter, Refusal};
use super::{Api, Operation};
use crate::domain::PaymentReference;

pub use super::handle::VippsHandle;

/// The actor's mailbox capacity; senders wait (`send`) when it is full.
pub const MAILBOX_CAPACITY: usize = 256;
/// How often forgotten references are pruned from the rate limiter.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// After a failed token refresh, the old token is used and a refresh retried after this.
const REFRESH_RETRY: Duration = Duration::from_secs(5);

/// The actor's knobs; see [`VippsActorSettings::default`] for the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VippsActorSettings {
    /// Global ceiling on requests per second to Vipps.
    pub max_requests_per_second: u32,
    /// Requests that may wait for a rate-limit slot (or a token) at once.
    pub max_waiters: usize,
    /// The longest a request waits for a rate-limit slot.
    pub max_rate_limit_wait: Duration,
    /// Overall deadline of one call, retries included.
    pub retry_deadline: Duration,
    /// First backoff cap; doubled per retry up to `retry_max_backoff`.
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    /// Consecutive failures of one API that open its circuit.
    pub circuit_failure_threshold: u32,
    /// How long an open circuit fails fast before a probe.
    pub circuit_cool_down: Duration,
    /// Refresh the access token this long before it expires (at most half its lifetime).
    pub token_refresh_before: Duration,
}

impl Default for VippsActorSettings {
    fn default() -> Self {
        VippsActorSettings {
            max_requests_per_second: 20,
            max_waiters: 64,
            max_rate_limit_wait: Duration::from_secs(10),
            retry_deadline: Duration::from_secs(30),
            retry_initial_backoff: Duration::from_millis(250),
            retry_max_backoff: Duration::from_secs(8),
            circuit_failure_threshold: 5,
            circuit_cool_down: Duration::from_secs(30),
            token_refresh_before: Duration::from_secs(300),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Access-token state

type TokenResult = Result<(AccessToken, u64), VippsError>;

/// The access token's life cycle. `generation` identifies a token so that a 401 drops only the
/// token that was refused, and many refusals of it cause one refresh.
pub enum AuthState {
    Missing,
    Fetching {
        waiters: Vec<oneshot::Sender<TokenResult>>,
    },
    Valid {
        held: HeldToken,
        refresh_at: Instant,
    },
    /// A new token is being fetched; the current one is handed out until it expires.
    Refreshing {
        held: HeldToken,
        waiters: Vec<oneshot::Sender<TokenResult>>,
    },
}

/// The token handed out while it is valid or being refreshed.
pub struct HeldToken {
    token: AccessToken,
    generation: u64,
    expires_at: Instant,
}

impl HeldToken {
    fn ticket(&self) -> TokenTicket {
        TokenTicket::Ready(self.token.clone(), self.generation)
    }
}

/// What a caller gets when it asks for a token.
pub enum TokenTicket {
    Ready(AccessToken, u64),
    Wait(oneshot::Receiver<TokenResult>),
}

impl AuthState {
    /// A token for a caller at `now`; the bool says whether a fetch must start.
    fn get(&mut self, now: Instant, max_waiters: usize) -> (Result<TokenTicket, ()>, bool) {
        let state = std::mem::replace(self, AuthState::Missing);
        let (next, ticket, fetch) = match state {
            AuthState::Valid { held, refresh_at } if now < held.expires_at => {
                let ticket = Ok(held.ticket());
                if now < refresh_at {
                    (AuthState::Valid { held, refresh_at }, ticket, false)
                } else {
                    let waiters = Vec::new();
                    (AuthState::Refreshing { held, waiters }, ticket, true)
                }
            }
            AuthState::Refreshing { held, waiters } if now < held.expires_at => {
                let ticket = Ok(held.ticket());
                (AuthState::Refreshing { held, waiters }, ticket, false)
            }
            AuthState::Refreshing { mut waiters, .. } | AuthState::Fetching { mut waiters } => {
                let ticket = if waiters.len() >= max_waiters {
                    Err(())
                } else {
                    let (tx, rx) = oneshot::channel();
                    waiters.push(tx);
                    Ok(TokenTicket::Wait(rx))
                };
                (AuthState::Fetching { waiters }, ticket, false)
            }
            AuthState::Missing | AuthState::Valid { .. } => {
                let (tx, rx) = oneshot::channel();
                let next = AuthState::Fetching { waiters: vec![tx] };
                (next, Ok(TokenTicket::Wait(rx)), true)
            }
        };
        *self = next;
        (ticket, fetch)
    }

    /// A fetch that started at `requested_at` finished. A failed refresh keeps the current
    /// token while it lasts and lets the next caller after `REFRESH_RETRY` try again.
    fn fetched(
        &mut self,
        result: Result<AccessToken, VippsError>,
        requested_at: Instant,
        now: Instant,
        generation: u64,
        refresh_before: Duration,
    ) {
        let state = std::mem::replace(self, AuthState::Missing);
        let (waiters, current) = match state {
            AuthState::Fetching { waiters } => (waiters, None),
            AuthState::Refreshing { held, waiters } => (waiters, Some(held)),
            // A fetch nobody waits for any more (the token was refused meanwhile).
            AuthState::Missing | AuthState::Valid { .. } => (Vec::new(), None),
        };
        match result {
            Ok(token) => {
                let lifetime = token.expires_in();
                // Measured from the request, so lanehub's idea of expiry is never late.
                let expires_at = requested_at + lifetime;
                let refresh_at = expires_at - refresh_before.min(lifetime / 2);
                for w in waiters {
                    let _ = w.send(Ok((token.clone(), generation)));
                }
                let held = HeldToken {
                    token,
                    generation,
                    expires_at,
                };
                *self = AuthState::Valid { held, refresh_at };
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
                if let Some(held) = current
                    && now < held.expires_at
                {
                    let refresh_at = (now + REFRESH_RETRY).min(held.expires_at);
                    *self = AuthState::Valid { held, refresh_at };
                }
            }
        }
    }

    /// Vipps refused the token of `generation` (401): forget it, unless it was already replaced.
    fn rejected(&mut self, generation: u64) {
        let state = std::mem::replace(self, AuthState::Missing);
        *self = match state {
            AuthState::Valid { held, .. } if held.generation == generation => AuthState::Missing,
            AuthState::Refreshing { held, waiters } if held.generation == generation => {
                AuthState::Fetching { waiters }
            }
            other => other,
        };
    }

    /// Whether a token can be handed out at `now` without waiting for a fetch.
    fn usable(&self, now: Instant) -> bool {
        match self {
            AuthState::Valid { held, .. } | AuthState::Refreshing { held, .. } => {
                now < held.expires_at
            }
            AuthState::Missing | AuthState::Fetching { .. } => false,
        }
    }

    fn label(&self) -> &'static str {
        match self {
            AuthState::Missing => "missing",
            AuthState::Fetching { .. } => "fetching",
            AuthState::Valid { .. } => "valid",
            AuthState::Refreshing { .. } => "refreshing",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The actor

/// Owns token, rate-limit and circuit state. Start it with [`VippsHandle::start`].
pub struct VippsActor {
    client: VippsClient,
    settings: VippsActorSettings,
    auth: AuthState,
    /// Generation of the next token fetched.
    next_generation: u64,
    limiter: RateLimiter,
    /// One per [`Api`], all of them from the start.
    circuits: HashMap<Api, Circuit>,
}

impl VippsActor {
    pub(super) fn new(
        client: VippsClient,
        settings: VippsActorSettings,
        probe_timeout: Duration,
    ) -> Self {
        VippsActor {
            client,
            limiter: RateLimiter::new(RateLimitSettings {
                max_requests_per_second: settings.max_requests_per_second.max(1),
                max_waiters: settings.max_waiters,
                max_wait: settings.max_rate_limit_wait,
            }),
            circuits: Api::ALL
                .into_iter()
                .map(|api| {
                    let circuit = Circuit::new(CircuitSettings {
                        failure_threshold: settings.circuit_failure_threshold.max(1),
                        cool_down: settings.circuit_cool_down,
                        probe_timeout,
                    });
                    (api, circuit)
                })
                .collect(),
            settings,
            auth: AuthState::Missing,
            next_generation: 1,
        }
    }

    fn circuit(&mut self, api: Api) -> &mut Circuit {
        self.circuits
            .get_mut(&api)
            .expect("every API has a circuit: built from Api::ALL")
    }

    fn start_fetch(&mut self, ctx: &mut Context<Self>) {
        let requested_at = Instant::now();
        if let Err(retry_in) = self.circuit(Api::AccessToken).admit(requested_at) {
            // The token API fails fast too: whoever waits learns it now, and a refresh keeps the
            // current token and is tried again later.
            let e = VippsError::Unavailable {
                api: Api::AccessToken,
                retry_in,
            };
            let generation = self.next_generation;
            let refresh_before = self.settings.token_refresh_before;
            self.auth.fetched(
                Err(e),
                requested_at,
                requested_at,
                generation,
                refresh_before,
            );
            return;
        }
        let client = self.client.clone();
        tracing::debug!(state = self.auth.label(), "fetching a Vipps access token");
        ctx.spawn(
            async move { client.fetch_token().await }
                .into_actor(self)
                .map(move |result, act, _ctx| act.token_fetched(result, requested_at)),
        );
    }

    fn token_fetched(&mut self, result: Result<AccessToken, VippsError>, requested_at: Instant) {
        let now = Instant::now();
        self.record_outcome(
            Api::AccessToken,
            match &result {
                Ok(_) => Outcome::Success,
                Err(e) if e.is_retryable() => Outcome::Failure,
                Err(_) => Outcome::Success,
            },
            result.as_ref().err().map(|e| format!("access token: {e}")),
            now,
        );
        let generation = self.next_generation;
        match &result {
            Ok(_) => self.next_generation += 1,
            Err(e) => tracing::warn!(error = %e, "Vipps access token fetch failed"),
        }
        self.auth.fetched(
            result,
            requested_at,
            now,
            generation,
            self.settings.token_refresh_before,
        );
    }

    fn record_outcome(
        &mut self,
        api: Api,
        outcome: Outcome,
        failure: Option<String>,
        now: Instant,
    ) {
        if let Some(state) = self.circuit(api).record(outcome, now) {
            let open = !matches!(state, CircuitState::Closed { .. });
            crate::metrics::vipps_circuit_open(api, open);
            if open {
                tracing::warn!(
                    api = api.as_str(),
                    cool_down_s = self.settings.circuit_cool_down.as_secs(),
                    last_failure = failure.as_deref().unwrap_or("unknown"),
                    "Vipps circuit opened: calls to this API fail fast"
                );
            } else {
                tracing::info!(api = api.as_str(), "Vipps circuit closed");
            }
        }
    }
}

impl Actor for VippsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        for api in Api::ALL {
            crate::metrics::vipps_circuit_open(api, false);
        }
        ctx.run_interval(PRUNE_EVERY, |act, _| act.limiter.prune(Instant::now()));
    }
}

/// Asks to send one request: circuit check, then a rate-limit slot no later than `deadline`.
pub(super) struct Admit {
    pub(super) operation: Operation,
    pub(super) reference: Option<PaymentReference>,
    pub(super) deadline: Instant,
    /// Needs a merchant access token.
    pub(super) merchant: bool,
}

/// Where and how a request may go.
pub(super) struct Admitted {
    pub(super) at: Instant,
    pub(super) probe: bool,
}

pub(super) enum NotAdmitted {
    CircuitOpen(Api, Duration),
    Limited(Refusal),
}

impl Message for Admit {
    type Result = Result<Admitted, NotAdmitted>;
}

impl Handler<Admit> for VippsActor {
    type Result = Result<Admitted, NotAdmitted>;

    fn handle(&mut self, msg: Admit, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let api = msg.operation.api();
        if msg.merchant
            && !self.auth.usable(now)
            && let Some(retry_in) = self.circuit(Api::AccessToken).retry_in(now)
        {
            return Err(NotAdmitted::CircuitOpen(Api::AccessToken, retry_in));
        }
        let admission = self
            .circuit(api)
            .admit(now)
            .map_err(|retry_in| NotAdmitted::CircuitOpen(api, retry_in))?;
        match self
            .limiter
            .reserve(now, msg.operation, msg.reference.as_ref(), msg.deadline)
        {
            Ok(at) => Ok(Admitted {
                at,
                probe: admission == Admission::Probe,
            }),
            Err(refusal) => {
                if admission == Admission::Probe {
                    self.circuit(api).abandon_probe(now);
                }
                Err(NotAdmitted::Limited(refusal))
            }
        }
    }
}

/// Asks for the current access token.
pub(super) struct GetToken;

impl Message for GetToken {
    type Result = Result<TokenTicket, VippsError>;
}

impl Handler<GetToken> for VippsActor {
    type Result = Result<TokenTicket, VippsError>;

    fn handle(&mut self, _msg: GetToken, ctx: &mut Context<Self>) -> Self::Result {
        let (ticket, fetch) = self.auth.get(Instant::now(), self.settings.max_waiters);
        if fetch {
            self.start_fetch(ctx);
        }
        ticket.map_err(|()| VippsError::Overloaded {
            operation: Operation::AccessToken,
        })
    }
}

/// Vipps answered 401 to a call made with the token of `generation`.
pub(super) struct TokenRejected {
    pub(super) generation: u64,
}

impl Message for TokenRejected {
    type Result = ();
}

impl Handler<TokenRejected> for VippsActor {
    type Result = ();

    fn handle(&mut self, msg: TokenRejected, _ctx: &mut Context<Self>) {
        self.auth.rejected(msg.generation);
    }
}

/// What one attempt tells its API's circuit breaker.
pub(super) struct Report {
    pub(super) api: Api,
    pub(super) outcome: Outcome,
    /// The attempt was the half-open probe: a neutral outcome lets the next request probe.
    pub(super) probe: bool,
    /// What went wrong, for the log line when this report opens the circuit.
    pub(super) failure: Option<String>,
}

impl Message for Report {
    type Result = ();
}

impl Handler<Report> for VippsActor {
    type Result = ();

    fn handle(&mut self, msg: Report, _ctx: &mut Context<Self>) {
        let now = Instant::now();
        if msg.probe && msg.outcome == Outcome::Neutral {
            self.circuit(msg.api).abandon_probe(now);
        } else {
            self.record_outcome(msg.api, msg.outcome, msg.failure, now);
        }
    }
}

/// One API's circuit, for health checks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiStatus {
    pub api: Api,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// Calls fail fast for this much longer; `None` when they may go.
    pub retry_in: Option<Duration>,
}

impl ApiStatus {
    /// Whether calls to the API fail fast now.
    pub fn is_open(&self) -> bool {
        self.retry_in.is_some()
    }
}

/// A snapshot for health checks and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VippsStatus {
    /// Every API's circuit, in the order of [`Api::ALL`].
    pub apis: [ApiStatus; Api::ALL.len()],
    /// `missing`, `fetching`, `valid` or `refreshing`.
    pub token: &'static str,
    /// Requests holding a future rate-limit slot.
    pub waiting: usize,
}

impl VippsStatus {
    /// Whether calls to `api` fail fast now.
    pub fn circuit_open(&self, api: Api) -> bool {
        self.apis.iter().any(|s| s.api == api && s.is_open())
    }
}

pub(super) struct GetStatus;

impl Message for GetStatus {
    type Result = Result<VippsStatus, ()>;
}

impl Handler<GetStatus> for VippsActor {
    type Result = Result<VippsStatus, ()>;

    fn handle(&mut self, _msg: GetStatus, _ctx: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let apis = Api::ALL.map(|api| {
            let circuit = self.circuit(api);
            ApiStatus {
                api,
                circuit: match circuit.state() {
                    CircuitState::Closed { .. } => "closed",
                    CircuitState::Open { .. } => "open",
                    CircuitState::HalfOpen { .. } => "half_open",
                },
                retry_in: circuit.retry_in(now),
            }
        });
        Ok(VippsStatus {
            apis,
            token: self.auth.label(),
            waiting: self.limiter.waiting(now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Amount, IdempotencyKey};
    use secrecy::SecretString;

    fn token(s: &str, secs: u64) -> AccessToken {
        AccessToken::new(SecretString::from(s), Duration::from_secs(secs))
    }

    /// At `now`, holding token `a` good for `lifetime_secs` as fetch number `generation`.
    fn holding(now: Instant, lifetime_secs: u64, generation: u64) -> AuthState {
        let mut auth = AuthState::Missing;
        let _ = auth.get(now, 10);
        let token = token("a", lifetime_secs);
        auth.fetched(Ok(token), now, now, generation, REFRESH_BEFORE);
        auth
    }

    const REFRESH_BEFORE: Duration = Duration::from_secs(300);

    /// What the fetch sent to a caller that had to wait for it.
    fn delivered(ticket: Result<TokenTicket, ()>) -> TokenResult {
        let Ok(TokenTicket::Wait(mut rx)) = ticket else {
            panic!("the caller waits for the fetch")
        };
        rx.try_recv().expect("the fetch's result was sent")
    }

    fn timeout() -> VippsError {
        VippsError::Timeout {
            operation: Operation::AccessToken,
        }
    }

    #[test]
    fn one_fetch_for_many_callers_and_refresh_ahead_of_expiry() {
        let now = Instant::now();
        let mut auth = AuthState::Missing;
        let (t1, fetch1) = auth.get(now, 10);
        let (t2, fetch2) = auth.get(now, 10);
        assert!(fetch1 && !fetch2, "one fetch however many ask");
        auth.fetched(Ok(token("a", 3600)), now, now, 1, REFRESH_BEFORE);
        for t in [t1, t2] {
            assert_eq!(delivered(t).unwrap().1, 1);
        }
        // Before the refresh point: ready, no fetch.
        let (t, fetch) = auth.get(now + Duration::from_secs(3299), 10);
        assert!(matches!(t, Ok(TokenTicket::Ready(_, 1))) && !fetch);
        // Within the last five minutes: still ready, one refresh starts.
        let (t, fetch) = auth.get(now + Duration::from_secs(3300), 10);
        assert!(matches!(t, Ok(TokenTicket::Ready(_, 1))) && fetch);
        let (_, fetch) = auth.get(now + Duration::from_secs(3301), 10);
        assert!(!fetch);
        assert_eq!(auth.label(), "refreshing");
        // Expired while refreshing: wait for the new one.
        let (t, fetch) = auth.get(now + Duration::from_secs(3600), 10);
        assert!(matches!(t, Ok(TokenTicket::Wait(_))) && !fetch);
        assert_eq!(auth.label(), "fetching");
    }

    #[test]
    fn a_short_lifetime_refreshes_at_half() {
        let now = Instant::now();
        let mut auth = holding(now, 4, 1);
        assert!(!auth.get(now + Duration::from_millis(1999), 10).1);
        assert!(auth.get(now + Duration::from_secs(2), 10).1);
    }

    #[test]
    fn rejection_drops_only_the_refused_generation() {
        let now = Instant::now();
        let mut auth = holding(now, 3600, 7);
        auth.rejected(6);
        assert_eq!(auth.label(), "valid");
        auth.rejected(7);
        assert_eq!(auth.label(), "missing");
        let (_, fetch) = auth.get(now, 10);
        assert!(fetch);
    }

    #[test]
    fn waiters_are_bounded_and_failures_reach_them() {
        let now = Instant::now();
        let mut auth = AuthState::Missing;
        let (first, _) = auth.get(now, 2);
        let (second, _) = auth.get(now, 2);
        let (third, _) = auth.get(now, 2);
        assert!(third.is_err());
        auth.fetched(Err(timeout()), now, now, 1, REFRESH_BEFORE);
        for t in [first, second] {
            assert_eq!(delivered(t).unwrap_err().kind(), "timeout");
        }
        assert_eq!(auth.label(), "missing");
    }

    #[test]
    fn a_failed_refresh_keeps_the_current_token() {
        let now = Instant::now();
        let mut auth = holding(now, 600, 1);
        let at = now + Duration::from_secs(400);
        assert!(auth.get(at, 10).1, "refresh starts");
        auth.fetched(Err(timeout()), at, at, 2, REFRESH_BEFORE);
        let (t, fetch) = auth.get(at, 10);
        assert!(matches!(t, Ok(TokenTicket::Ready(_, 1))) && !fetch);
        assert!(auth.get(at + REFRESH_RETRY, 10).1, "and tries again later");
    }

    /// Lanes may spawn calls on any runtime: the handle's futures must be `Send`.
    #[test]
    fn handle_futures_are_send() {
        fn is_send<T: Send>(_: &T) {}
        let _never_called = |h: VippsHandle, r: PaymentReference, k: IdempotencyKey| {
            let (h2, r2) = (h.clone(), r.clone());
            is_send(&async move { h2.get_payment(&r2).await });
            is_send(&async move { h.capture_payment(&r, &k, Amount::nok(1)).await });
        };
    }
}
