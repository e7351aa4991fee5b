//! The shared Vipps actor and [`VippsHandle`], the cheap cloneable handle lanes use for every
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
//! the ping webhook) or [`VippsHandle::poll_login`] (polls at the server's interval, +5 s on
//! `slow_down`, until an outcome or the request's expiry).
//!
//! Circuits: a call counts only toward its own API's circuit, so the best-effort check-in (which
//! the Vipps test environment answers with 500) never stops payments. A failed token fetch counts
//! toward the access-token circuit alone; while that is open and no token is held, merchant calls
//! fail fast as unavailable without counting against their own API.

use std::collections::HashMap;
use std::sync::Arc;
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
use crate::backoff::Backoff;
use crate::config::VippsSettings;
use crate::domain::{Amount, IdempotencyKey, Msisdn, PaymentReference};

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
        token: AccessToken,
        generation: u64,
        expires_at: Instant,
        refresh_at: Instant,
    },
    /// A new token is being fetched; the current one is handed out until it expires.
    Refreshing {
        token: AccessToken,
        generation: u64,
        expires_at: Instant,
        waiters: Vec<oneshot::Sender<TokenResult>>,
    },
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
            AuthState::Valid {
                token,
                generation,
                expires_at,
                refresh_at,
            } if now < expires_at => {
                let ticket = Ok(TokenTicket::Ready(token.clone(), generation));
                if now < refresh_at {
                    let next = AuthState::Valid {
                        token,
                        generation,
                        expires_at,
                        refresh_at,
                    };
                    (next, ticket, false)
                } else {
                    let next = AuthState::Refreshing {
                        token,
                        generation,
                        expires_at,
                        waiters: Vec::new(),
                    };
                    (next, ticket, true)
                }
            }
            AuthState::Refreshing {
                token,
                generation,
                expires_at,
                waiters,
            } if now < expires_at => {
                let ticket = Ok(TokenTicket::Ready(token.clone(), generation));
                let next = AuthState::Refreshing {
                    token,
                    generation,
                    expires_at,
                    waiters,
                };
                (next, ticket, false)
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
            AuthState::Refreshing {
                token,
                generation,
                expires_at,
                waiters,
            } => (waiters, Some((token, generation, expires_at))),
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
                *self = AuthState::Valid {
                    token,
                    generation,
                    expires_at,
                    refresh_at,
                };
            }
            Err(e) => {
                for w in waiters {
                    let _ = w.send(Err(e.clone()));
                }
                if let Some((token, generation, expires_at)) = current
                    && now < expires_at
                {
                    *self = AuthState::Valid {
                        token,
                        generation,
                        expires_at,
                        refresh_at: (now + REFRESH_RETRY).min(expires_at),
                    };
                }
            }
        }
    }

    /// Vipps refused the token of `generation` (401): forget it, unless it was already replaced.
    fn rejected(&mut self, generation: u64) {
        let state = std::mem::replace(self, AuthState::Missing);
        *self = match state {
            AuthState::Valid { generation: g, .. } if g == generation => AuthState::Missing,
            AuthState::Refreshing {
                generation: g,
                waiters,
                ..
            } if g == generation => AuthState::Fetching { waiters },
            other => other,
        };
    }

    /// Whether a token can be handed out at `now` without waiting for a fetch.
    fn usable(&self, now: Instant) -> bool {
        match self {
            AuthState::Valid { expires_at, .. } | AuthState::Refreshing { expires_at, .. } => {
                now < *expires_at
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
    fn new(client: VippsClient, settings: VippsActorSettings, probe_timeout: Duration) -> Self {
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
struct Admit {
    operation: Operation,
    reference: Option<PaymentReference>,
    deadline: Instant,
    /// Needs a merchant access token.
    merchant: bool,
}

/// Where and how a request may go.
struct Admitted {
    at: Instant,
    probe: bool,
}

enum NotAdmitted {
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
struct GetToken;

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
struct TokenRejected {
    generation: u64,
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
struct Report {
    api: Api,
    outcome: Outcome,
    /// The attempt was the half-open probe: a neutral outcome lets the next request probe.
    probe: bool,
    /// What went wrong, for the log line when this report opens the circuit.
    failure: Option<String>,
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

struct GetStatus;

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

// ---------------------------------------------------------------------------------------------
// The handle

/// The way lanes call Vipps. Cheap to clone; all methods are safe to call concurrently.
#[derive(Clone)]
pub struct VippsHandle {
    addr: Addr<VippsActor>,
    client: VippsClient,
    settings: Arc<VippsActorSettings>,
    deadline: Duration,
}

impl std::fmt::Debug for VippsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VippsHandle")
            .field("base_url", &self.client.base_url())
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

fn need(token: Option<&AccessToken>) -> Result<&AccessToken, VippsError> {
    // Only merchant calls ask for a token, and the retry loop always fetches one for them.
    token.ok_or_else(|| VippsError::InvalidRequest("no access token for a merchant call".into()))
}

impl VippsHandle {
    /// Builds the client for `vipps` and starts the actor. Must run inside an actix system.
    pub fn start(
        vipps: &VippsSettings,
        settings: VippsActorSettings,
    ) -> Result<VippsHandle, VippsError> {
        let client = VippsClient::new(vipps)?;
        Ok(Self::with_client(
            client,
            settings,
            vipps.connect_timeout + vipps.request_timeout,
        ))
    }

    /// Starts the actor in front of an existing client. `probe_timeout` is how long a half-open
    /// probe may take (the client's connect plus request timeout).
    pub fn with_client(
        client: VippsClient,
        settings: VippsActorSettings,
        probe_timeout: Duration,
    ) -> VippsHandle {
        let addr = VippsActor::new(client.clone(), settings, probe_timeout).start();
        VippsHandle {
            addr,
            client,
            deadline: settings.retry_deadline,
            settings: Arc::new(settings),
        }
    }

    /// The same handle with another overall deadline per call (e.g. short for check-in).
    pub fn with_deadline(&self, deadline: Duration) -> VippsHandle {
        VippsHandle {
            deadline,
            ..self.clone()
        }
    }

    /// Circuit, token and limiter state.
    pub async fn status(&self) -> Result<VippsStatus, VippsError> {
        self.addr
            .send(GetStatus)
            .await
            .map_err(|_| VippsError::Shutdown)?
            .map_err(|()| VippsError::Shutdown)
    }

    /// The current access token (fetched if needed); mostly for diagnostics.
    pub async fn access_token(&self) -> Result<AccessToken, VippsError> {
        let deadline = Instant::now() + self.deadline;
        self.token(Operation::AccessToken, deadline)
            .await
            .map(|(t, _)| t)
    }

    pub async fn exchange_qr(&self, qr_code: &str) -> Result<QrExchange, VippsError> {
        self.call(Operation::QrExchange, None, true, |c, t| async move {
            c.exchange_qr(need(t.as_ref())?, qr_code).await
        })
        .await
    }

    /// Best effort: give it a short deadline with [`VippsHandle::with_deadline`].
    pub async fn check_in(&self, phone: &Msisdn, is_member: bool) -> Result<CheckIn, VippsError> {
        self.call(Operation::CheckIn, None, true, |c, t| async move {
            c.check_in(need(t.as_ref())?, phone, is_member).await
        })
        .await
    }

    pub async fn login_authenticate(
        &self,
        request: &LoginRequest,
    ) -> Result<LoginAuthentication, VippsError> {
        self.call(
            Operation::LoginAuthenticate,
            None,
            false,
            |c, _| async move { c.login_authenticate(request).await },
        )
        .await
    }

    /// One poll of the Login token endpoint (the caller keeps to the interval).
    pub async fn login_token(&self, auth_req_id: &AuthReqId) -> Result<LoginPoll, VippsError> {
        self.call(Operation::LoginToken, None, false, |c, _| async move {
            c.login_token(auth_req_id).await
        })
        .await
    }

    pub async fn userinfo(&self, login_token: &LoginToken) -> Result<Userinfo, VippsError> {
        self.call(Operation::Userinfo, None, false, |c, _| async move {
            c.userinfo(login_token).await
        })
        .await
    }

    pub async fn discovery(&self) -> Result<OpenIdConfiguration, VippsError> {
        self.call(Operation::Discovery, None, false, |c, _| async move {
            c.discovery().await
        })
        .await
    }

    /// Retries reuse `key`: journal it before calling.
    pub async fn create_payment(
        &self,
        key: &IdempotencyKey,
        request: &CreatePaymentRequest,
    ) -> Result<CreatePaymentResponse, VippsError> {
        let reference = Some(&request.reference);
        self.call(
            Operation::PaymentCreate,
            reference,
            true,
            |c, t| async move { c.create_payment(need(t.as_ref())?, key, request).await },
        )
        .await
    }

    pub async fn get_payment(&self, reference: &PaymentReference) -> Result<Payment, VippsError> {
        self.call(
            Operation::PaymentGet,
            Some(reference),
            true,
            |c, t| async move { c.get_payment(need(t.as_ref())?, reference).await },
        )
        .await
    }

    pub async fn payment_events(
        &self,
        reference: &PaymentReference,
    ) -> Result<Vec<PaymentEvent>, VippsError> {
        self.call(
            Operation::PaymentEvents,
            Some(reference),
            true,
            |c, t| async move { c.payment_events(need(t.as_ref())?, reference).await },
        )
        .await
    }

    pub async fn cancel_payment(
        &self,
        reference: &PaymentReference,
        key: &IdempotencyKey,
        cancel_transaction_only: bool,
    ) -> Result<ModificationResponse, VippsError> {
        self.call(
            Operation::PaymentCancel,
            Some(reference),
            true,
            |c, t| async move {
                c.cancel_payment(need(t.as_ref())?, reference, key, cancel_transaction_only)
                    .await
            },
        )
        .await
    }

    pub async fn capture_payment(
        &self,
        reference: &PaymentReference,
        key: &IdempotencyKey,
        amount: Amount,
    ) -> Result<ModificationResponse, VippsError> {
        self.call(
            Operation::PaymentCapture,
            Some(reference),
            true,
            |c, t| async move {
                c.capture_payment(need(t.as_ref())?, reference, key, amount)
                    .await
            },
        )
        .await
    }

    pub async fn refund_payment(
        &self,
        reference: &PaymentReference,
        key: &IdempotencyKey,
        amount: Amount,
    ) -> Result<ModificationResponse, VippsError> {
        self.call(
            Operation::PaymentRefund,
            Some(reference),
            true,
            |c, t| async move {
                c.refund_payment(need(t.as_ref())?, reference, key, amount)
                    .await
            },
        )
        .await
    }

    /// Not idempotent at Vipps: a retry after a lost answer may register twice (list to check).
    pub async fn register_webhook(
        &self,
        request: &RegisterWebhookRequest,
    ) -> Result<RegisteredWebhook, VippsError> {
        self.call(Operation::WebhookRegister, None, true, |c, t| async move {
            c.register_webhook(need(t.as_ref())?, request).await
        })
        .await
    }

    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, VippsError> {
        self.call(Operation::WebhookList, None, true, |c, t| async move {
            c.list_webhooks(need(t.as_ref())?).await
        })
        .await
    }

    pub async fn delete_webhook(&self, id: &str) -> Result<(), VippsError> {
        self.call(Operation::WebhookDelete, None, true, |c, t| async move {
            c.delete_webhook(need(t.as_ref())?, id).await
        })
        .await
    }

    // -----------------------------------------------------------------------------------------

    async fn token(
        &self,
        op: Operation,
        deadline: Instant,
    ) -> Result<(AccessToken, u64), VippsError> {
        let ticket = self
            .addr
            .send(GetToken)
            .await
            .map_err(|_| VippsError::Shutdown)??;
        match ticket {
            TokenTicket::Ready(token, generation) => Ok((token, generation)),
            TokenTicket::Wait(rx) => match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(result)) => result,
                Ok(Err(_)) => Err(VippsError::Shutdown),
                Err(_) => Err(VippsError::DeadlineExceeded {
                    operation: op,
                    attempts: 0,
                    last: None,
                }),
            },
        }
    }

    async fn report(
        &self,
        op: Operation,
        outcome: Outcome,
        probe: bool,
        failure: Option<&VippsError>,
    ) {
        if outcome != Outcome::Neutral || probe {
            let failure = failure
                .filter(|_| outcome == Outcome::Failure)
                .map(|e| e.to_string());
            let report = Report {
                api: op.api(),
                outcome,
                probe,
                failure,
            };
            // Awaiting `send` keeps the report even when the mailbox is momentarily full; an
            // error only means the actor is gone, when nothing is left to report to.
            let _ = self.addr.send(report).await;
        }
    }

    /// One call with admission, token, retries and deadline.
    async fn call<T, F>(
        &self,
        op: Operation,
        reference: Option<&PaymentReference>,
        merchant: bool,
        f: impl Fn(VippsClient, Option<AccessToken>) -> F,
    ) -> Result<T, VippsError>
    where
        F: Future<Output = Result<T, VippsError>>,
    {
        let deadline = Instant::now() + self.deadline;
        let mut attempts = 0u32;
        let mut retries = 0u32;
        let mut last: Option<VippsError> = None;
        let mut token_refreshed = false;
        loop {
            let admit = Admit {
                operation: op,
                reference: reference.cloned(),
                deadline,
                merchant,
            };
            let asked = Instant::now();
            let admitted = match self.addr.send(admit).await {
                Err(_) => return Err(VippsError::Shutdown),
                Ok(Ok(admitted)) => admitted,
                Ok(Err(refused)) => {
                    let e = match refused {
                        // A retry refused locally: an earlier attempt went out and may have been
                        // processed, so the caller must not read this as "not sent".
                        _ if attempts > 0 => VippsError::DeadlineExceeded {
                            operation: op,
                            attempts,
                            last: last.map(Box::new),
                        },
                        NotAdmitted::CircuitOpen(api, retry_in) => {
                            VippsError::Unavailable { api, retry_in }
                        }
                        NotAdmitted::Limited(refusal) => {
                            tracing::debug!(
                                operation = op.as_str(),
                                ?refusal,
                                "no rate-limit slot"
                            );
                            VippsError::Overloaded { operation: op }
                        }
                    };
                    count_local(op, &e);
                    return Err(e);
                }
            };
            // A slot that is due already must not wait for the timer's next millisecond tick.
            if admitted.at > Instant::now() {
                tokio::time::sleep_until(admitted.at).await;
            }
            crate::metrics::vipps_rate_limit_wait(op, asked.elapsed());

            let mut generation = None;
            // A token that could not be had says nothing about this call's API: the token fetch
            // counted toward the access-token circuit already.
            let mut token_failed = false;
            let result = async {
                let token = if merchant {
                    let (token, g) = self
                        .token(op, deadline)
                        .await
                        .inspect_err(|_| token_failed = true)?;
                    generation = Some(g);
                    Some(token)
                } else {
                    None
                };
                attempts += 1;
                match tokio::time::timeout_at(deadline, f(self.client.clone(), token)).await {
                    Ok(result) => result,
                    Err(_) => Err(VippsError::Timeout { operation: op }),
                }
            }
            .await;

            let outcome = match &result {
                Ok(_) => Outcome::Success,
                Err(_) if token_failed => Outcome::Neutral,
                Err(VippsError::Timeout { .. } | VippsError::Connection { .. }) => Outcome::Failure,
                Err(e) if e.is_retryable() && admitted.probe => Outcome::Failure,
                Err(e) if e.is_retryable() => Outcome::Neutral,
                Err(VippsError::Shutdown | VippsError::DeadlineExceeded { .. }) => Outcome::Neutral,
                // Vipps answered: it is up, even if it said no.
                Err(_) => Outcome::Success,
            };
            self.report(op, outcome, admitted.probe, result.as_ref().err())
                .await;

            let e = match result {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if e.status() == Some(401)
                && let Some(generation) = generation
                && !token_refreshed
            {
                token_refreshed = true;
                let _ = self.addr.send(TokenRejected { generation }).await;
                crate::metrics::vipps_retry(op, crate::metrics::RetryReason::TokenExpired);
                tracing::info!(
                    operation = op.as_str(),
                    "access token refused; refreshing once"
                );
                last = Some(e);
                continue;
            }
            if !e.is_retryable() {
                return Err(e);
            }
            // A lost answer of a call Vipps cannot de-duplicate: the caller decides (lists the
            // webhooks, polls again at the interval) instead of a blind second request.
            if !op.safe_to_repeat() && !e.refused_unprocessed() {
                if outcome == Outcome::Neutral {
                    self.report(op, Outcome::Failure, false, Some(&e)).await;
                }
                tracing::warn!(operation = op.as_str(), error = %e, "Vipps call not repeated: it may have been processed");
                return Err(e);
            }
            let wait = Backoff::new(
                self.settings.retry_initial_backoff,
                self.settings.retry_max_backoff,
            )
            .jittered(retries + 1)
            .max(e.retry_after().unwrap_or_default());
            if Instant::now() + wait >= deadline {
                // Retries ran out: Vipps kept failing. Transport failures were counted already.
                if outcome == Outcome::Neutral && !token_failed {
                    self.report(op, Outcome::Failure, false, Some(&e)).await;
                }
                tracing::warn!(operation = op.as_str(), attempts, error = %e, "Vipps call gave up");
                let e = VippsError::DeadlineExceeded {
                    operation: op,
                    attempts,
                    last: Some(Box::new(e)),
                };
                count_local(op, &e);
                return Err(e);
            }
            if let Some(reason) = e.retry_reason() {
                crate::metrics::vipps_retry(op, reason);
            }
            tracing::debug!(operation = op.as_str(), attempt = attempts, wait_ms = wait.as_millis() as u64, error = %e, "retrying Vipps call");
            retries += 1;
            last = Some(e);
            tokio::time::sleep(wait).await;
        }
    }
}

/// Counts a call that ended without (another) HTTP request: refused locally or given up.
fn count_local(op: Operation, e: &VippsError) {
    if let VippsError::Unavailable { .. } | VippsError::Overloaded { .. } = e {
        crate::metrics::vipps_request(op, e.request_outcome(), std::time::Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn token(s: &str, secs: u64) -> AccessToken {
        AccessToken::new(SecretString::from(s), Duration::from_secs(secs))
    }

    #[test]
    fn one_fetch_for_many_callers_and_refresh_ahead_of_expiry() {
        let now = Instant::now();
        let mut auth = AuthState::Missing;
        let (t1, fetch1) = auth.get(now, 10);
        let (t2, fetch2) = auth.get(now, 10);
        assert!(fetch1 && !fetch2, "one fetch however many ask");
        auth.fetched(Ok(token("a", 3600)), now, now, 1, Duration::from_secs(300));
        for t in [t1, t2] {
            let Ok(TokenTicket::Wait(mut rx)) = t else {
                panic!("callers wait for the fetch")
            };
            assert_eq!(rx.try_recv().unwrap().unwrap().1, 1);
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
        let mut auth = AuthState::Missing;
        let _ = auth.get(now, 10);
        auth.fetched(Ok(token("a", 4)), now, now, 1, Duration::from_secs(300));
        assert!(!auth.get(now + Duration::from_millis(1999), 10).1);
        assert!(auth.get(now + Duration::from_secs(2), 10).1);
    }

    #[test]
    fn rejection_drops_only_the_refused_generation() {
        let now = Instant::now();
        let mut auth = AuthState::Missing;
        let _ = auth.get(now, 10);
        auth.fetched(Ok(token("a", 3600)), now, now, 7, Duration::from_secs(300));
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
        auth.fetched(
            Err(VippsError::Timeout {
                operation: Operation::AccessToken,
            }),
            now,
            now,
            1,
            Duration::from_secs(300),
        );
        for t in [first, second] {
            let Ok(TokenTicket::Wait(mut rx)) = t else {
                panic!("waiting")
            };
            assert_eq!(rx.try_recv().unwrap().unwrap_err().kind(), "timeout");
        }
        assert_eq!(auth.label(), "missing");
    }

    #[test]
    fn a_failed_refresh_keeps_the_current_token() {
        let now = Instant::now();
        let mut auth = AuthState::Missing;
        let _ = auth.get(now, 10);
        auth.fetched(Ok(token("a", 600)), now, now, 1, Duration::from_secs(300));
        let at = now + Duration::from_secs(400);
        assert!(auth.get(at, 10).1, "refresh starts");
        let timeout = VippsError::Timeout {
            operation: Operation::AccessToken,
        };
        auth.fetched(Err(timeout), at, at, 2, Duration::from_secs(300));
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
