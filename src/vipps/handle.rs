//! [`VippsHandle`]: how lanes (and everything else) call Vipps through the shared actor: admission,
//! token, the call itself in the caller's task, retries and the report back (see `vipps::actor`).

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::time::Instant;

use super::Operation;
use super::actor::*;
use super::circuit::Outcome;
use super::client::VippsClient;
use super::error::VippsError;
use super::models::*;
use crate::backoff::Backoff;
use crate::config::VippsSettings;
use crate::domain::{Amount, IdempotencyKey, Msisdn, PaymentReference};

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
