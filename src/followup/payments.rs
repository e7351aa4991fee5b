//! Payments no lane follows any more but Vipps may still come to hold.
//!
//! A create whose answer was lost and whose read-back found nothing ends its session with "the
//! payment request did not reach Vipps": the cashier takes another payment method. Yet the
//! request may still be processed late (it sat in a connection or a gateway). Such a reference
//! stays `REQUESTED` in the payments index after its session closed. Every `interval` each one
//! younger than `window` is read back: one that appears is cancelled (the customer paid
//! otherwise) and recorded; one still unknown when `window` has passed is marked
//! `NOT_CREATED`. So a payment Vipps knows of is never left behind, across restarts too.
//!
//! Vipps answers the same 4xx again for a key it refused, so each state the payment is seen in
//! gets its own cancel key, tried until Vipps answers it; a refused one (the customer was
//! approving right then) waits for the payment to move on instead of spending its rate limit.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;

use crate::domain::{LaneId, PaymentReference};
use crate::session::{KeyedOperation, SessionId};
use crate::shutdown::{Phase, Shutdown};
use crate::store::{PaymentIndexState, PaymentRecord, PaymentUpdate, Store, StoreError};
use crate::vipps::models::{Aggregate, PaymentState};
use crate::vipps::{VippsError, VippsHandle};

/// How often and for how long unconfirmed payments are read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchSettings {
    pub interval: Duration,
    pub window: Duration,
}

/// The watch's memory between sweeps: cancels Vipps refused, by reference and state.
#[derive(Debug, Default)]
pub struct Watch {
    refused: HashSet<(PaymentReference, PaymentState)>,
}

/// Starts the watch on the current actix system; it ends when lanehub starts stopping.
pub fn spawn(store: Store, vipps: VippsHandle, settings: WatchSettings, shutdown: Shutdown) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(settings.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut watch = Watch::default();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.reached(Phase::Stopping) => return,
            }
            if let Err(e) = watch.sweep(&store, &vipps, settings.window).await {
                tracing::warn!(error = %e, "could not look for unconfirmed payments");
            }
        }
    });
}

impl Watch {
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
        // A session still open is followed by its lane (or will be, after recovery).
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

    async fn settle(
        &mut self,
        store: &Store,
        vipps: &VippsHandle,
        payment: &PaymentRecord,
        window: Duration,
    ) {
        let reference = &payment.reference;
        let found = match vipps.get_payment(reference).await {
            Ok(found) => found,
            Err(e) if e.status() == Some(404) => {
                let age = (Utc::now() - payment.created_at)
                    .to_std()
                    .unwrap_or_default();
                if age >= window
                    && record(
                        store,
                        reference,
                        PaymentIndexState::NotCreated.as_str(),
                        None,
                    )
                    .await
                    .is_ok()
                {
                    tracing::info!(%reference, "unconfirmed payment never reached Vipps");
                }
                return;
            }
            Err(e) => {
                tracing::debug!(%reference, error = %e, "unconfirmed payment not read back; next time");
                return;
            }
        };
        let open = matches!(
            found.state,
            PaymentState::Created | PaymentState::Authorized
        );
        if !open || found.aggregate.captured_amount.value > 0 {
            let state = found.state.as_str();
            let _ = record(store, reference, state, Some(&found.aggregate)).await;
            return;
        }
        let seen_in = (reference.clone(), found.state);
        if self.refused.contains(&seen_in) {
            return;
        }
        tracing::warn!(
            %reference,
            state = found.state.as_str(),
            "a payment the cashier was told did not reach Vipps exists after all; cancelling it"
        );
        match cancel(store, vipps, payment, found.state).await {
            Ok((state, aggregate)) => {
                let _ = record(store, reference, state.as_str(), Some(&aggregate)).await;
            }
            Err(e) if e.status().is_some_and(|s| (400..500).contains(&s)) && !e.is_retryable() => {
                tracing::info!(%reference, error = %e, "Vipps refused to cancel the late payment now; waiting for it to move on");
                self.refused.insert(seen_in);
            }
            Err(e) => {
                tracing::warn!(%reference, error = %e, "could not cancel the late payment; trying again");
            }
        }
    }
}

/// Cancels in full with a key of the session and the state the payment was seen in, stored
/// before the request like every keyed call.
async fn cancel(
    store: &Store,
    vipps: &VippsHandle,
    payment: &PaymentRecord,
    seen_in: PaymentState,
) -> Result<(PaymentState, Aggregate), VippsError> {
    let op = KeyedOperation::LateCancel(session_state(seen_in));
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

/// The session's name for a state Vipps reported (the same as the lane's conversion).
fn session_state(state: PaymentState) -> crate::session::PaymentState {
    use crate::session::PaymentState as S;
    match state {
        PaymentState::Created => S::Created,
        PaymentState::Authorized => S::Authorized,
        PaymentState::Aborted => S::Aborted,
        PaymentState::Expired => S::Expired,
        PaymentState::Terminated => S::Terminated,
    }
}

/// Updates the payments index; a failure is logged here, and a row left `REQUESTED` is simply
/// looked at again by the next sweep.
async fn record(
    store: &Store,
    reference: &PaymentReference,
    state: &str,
    aggregate: Option<&Aggregate>,
) -> Result<(), ()> {
    let update = PaymentUpdate {
        state: Some(state.to_owned()),
        captured: aggregate.map(|a| a.captured_amount.value),
        refunded: aggregate.map(|a| a.refunded_amount.value),
    };
    store
        .update_payment(reference, update)
        .await
        .map(drop)
        .map_err(|e| {
            tracing::warn!(%reference, error = %e, "could not update the payments index");
        })
}
