//! The unconfirmed-payment watch's runner: every `interval` it lists the payments the index
//! still holds as `REQUESTED` whose session has closed, and for each feeds [`step`] what Vipps
//! and the store answer, carrying out the actions it returns. It decides nothing itself.
//!
//! A session still open is followed by its lane (or will be, after recovery), never here.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{Action, Answer, Unconfirmed, step};
use crate::domain::{LaneId, PaymentReference};
use crate::followup::{Clock, Now, sweep_every};
use crate::session::{KeyedOperation, SessionId};
use crate::shutdown::Shutdown;
use crate::store::{PaymentIndexState, PaymentRecord, PaymentUpdate, Store, StoreError};
use crate::vipps::models::{Aggregate, PaymentState};
use crate::vipps::{VippsError, VippsHandle};

/// How often and for how long unconfirmed payments are read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    pub interval: Duration,
    pub window: Duration,
}

/// The watch's memory between sweeps: the states Vipps refused to cancel each payment in.
#[derive(Debug)]
pub struct Watch {
    refused: HashMap<PaymentReference, HashSet<PaymentState>>,
    clock: Clock,
}

impl Default for Watch {
    fn default() -> Self {
        Watch::with_clock(Now::read)
    }
}

/// Starts the watch on the current actix system; it ends when lanehub starts stopping.
pub fn spawn(store: Store, vipps: VippsHandle, settings: WatchSettings, shutdown: Shutdown) {
    let mut watch = Watch::default();
    let sweep = async move || watch.sweep(&store, &vipps, settings.window).await;
    sweep_every(
        settings.interval,
        shutdown,
        "look for unconfirmed payments",
        sweep,
    );
}

impl Watch {
    /// A watch that reads the time from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Watch {
            refused: HashMap::new(),
            clock,
        }
    }

    /// Looks once at every unconfirmed payment whose session has closed.
    pub async fn sweep(
        &mut self,
        store: &Store,
        vipps: &VippsHandle,
        window: Duration,
    ) -> Result<(), StoreError> {
        let requested = store
            .payments_in_state(PaymentIndexState::Requested)
            .await?;
        if requested.is_empty() {
            self.refused.clear();
            return Ok(());
        }
        let open: HashSet<(LaneId, String)> = store
            .all_open_sessions()
            .await?
            .into_iter()
            .map(|j| (j.lane, j.session))
            .collect();
        for payment in requested {
            if !open.contains(&(payment.lane.clone(), payment.session.clone())) {
                self.settle(store, vipps, &payment, window).await;
            }
        }
        Ok(())
    }

    /// Steps one payment until [`step`] asks for nothing more, each answer at the time it came.
    async fn settle(
        &mut self,
        store: &Store,
        vipps: &VippsHandle,
        payment: &PaymentRecord,
        window: Duration,
    ) {
        let mut answers = vec![Answer::Due];
        while let Some(answer) = answers.pop() {
            let now = (self.clock)();
            let refused_in = self.refused.get(&payment.reference);
            let none = HashSet::new();
            let row = Unconfirmed {
                payment,
                refused_in: refused_in.unwrap_or(&none),
                window,
            };
            for action in step(row, &answer, now) {
                if let Some(next) = self.perform(store, vipps, payment, action).await {
                    answers.push(next);
                }
            }
        }
    }

    async fn perform(
        &mut self,
        store: &Store,
        vipps: &VippsHandle,
        payment: &PaymentRecord,
        action: Action,
    ) -> Option<Answer> {
        let reference = &payment.reference;
        match action {
            Action::ReadBack => Some(match vipps.get_payment(reference).await {
                Ok(found) => Answer::Found {
                    state: found.state,
                    aggregate: found.aggregate,
                },
                Err(e) if e.status() == Some(404) => Answer::NotFound,
                Err(e) => {
                    tracing::debug!(%reference, error = %e, "unconfirmed payment not read back; next time");
                    Answer::ReadFailed
                }
            }),
            Action::Cancel { seen_in } => {
                tracing::warn!(
                    %reference,
                    state = seen_in.as_str(),
                    "a payment the cashier was told did not reach Vipps exists after all; cancelling it"
                );
                Some(match cancel(store, vipps, payment, seen_in).await {
                    Ok((state, aggregate)) => Answer::Cancelled { state, aggregate },
                    Err(e)
                        if e.status().is_some_and(|s| (400..500).contains(&s))
                            && !e.is_retryable() =>
                    {
                        tracing::info!(%reference, error = %e, "Vipps refused to cancel the late payment now; waiting for it to move on");
                        Answer::CancelRefused { seen_in }
                    }
                    Err(e) => {
                        tracing::warn!(%reference, error = %e, "could not cancel the late payment; trying again");
                        Answer::CancelFailed
                    }
                })
            }
            Action::Record { state, aggregate } => {
                let recorded = record(store, reference, state, aggregate.as_ref()).await;
                if recorded && state == PaymentIndexState::NotCreated {
                    tracing::info!(%reference, "unconfirmed payment never reached Vipps");
                }
                None
            }
            Action::RememberRefused(state) => {
                self.refused
                    .entry(reference.clone())
                    .or_default()
                    .insert(state);
                None
            }
        }
    }
}

/// Cancels in full with the key of the state the payment was seen in, stored before the
/// request like every keyed call.
async fn cancel(
    store: &Store,
    vipps: &VippsHandle,
    payment: &PaymentRecord,
    seen_in: PaymentState,
) -> Result<(PaymentState, Aggregate), VippsError> {
    let op = KeyedOperation::LateCancel(seen_in);
    let session: SessionId = payment
        .session
        .parse()
        .map_err(|e| VippsError::InvalidRequest(format!("cancel key: {e}")))?;
    let key = op.key(&session, &payment.reference);
    store
        .record_idempotency_key(
            &payment.lane,
            &payment.session,
            op.as_str(),
            &key,
            Some(&payment.reference),
        )
        .await
        .map_err(|e| VippsError::InvalidRequest(format!("the cancel key was not stored: {e}")))?;
    let answer = vipps
        .cancel_payment(&payment.reference, &key, false)
        .await?;
    Ok((answer.state, answer.aggregate))
}

/// Updates the payments index; `false` (logged here) leaves the row `REQUESTED`, and the next
/// sweep simply looks at it again.
async fn record(
    store: &Store,
    reference: &PaymentReference,
    state: PaymentIndexState,
    aggregate: Option<&Aggregate>,
) -> bool {
    let update = PaymentUpdate {
        state: Some(state),
        captured: aggregate.map(|a| a.captured_amount.value),
        refunded: aggregate.map(|a| a.refunded_amount.value),
    };
    match store.update_payment(reference, update).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(%reference, error = %e, "could not update the payments index");
            false
        }
    }
}
