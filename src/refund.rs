//! Refunds from the back office: part or all of a captured payment, once, whatever the caller
//! retries. The terminal API's refund route is one way in; the rules live here.

use crate::domain::{Amount, Currency, PaymentReference};
use crate::session::{CallError, KeyedOperation, SessionId};
use crate::store::{PaymentUpdate, Store};
use crate::vipps::actor::VippsHandle;
use crate::vipps::convert::call_error;
use crate::vipps::error::VippsError;
use crate::vipps::models::ModificationResponse;

/// Why a refund was not made (or may not have been).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundError {
    #[error("no such payment")]
    UnknownPayment,
    #[error("the payment is in {payment}")]
    OtherCurrency { payment: Currency },
    #[error("the store cannot be read: {0}")]
    StoreUnavailable(String),
    /// lanehub keeps Vipps' limits (5 changes of one payment a minute): not a fault of anyone's.
    #[error("{0}: try again in a minute (Vipps allows few changes of one payment per minute)")]
    TooOften(String),
    /// Vipps refused it (e.g. more than was captured): the same request stays refused.
    #[error("{0}")]
    Refused(String),
    /// Not sent: Vipps cannot be reached now.
    #[error("{0}")]
    VippsUnavailable(String),
    /// Sent, but no answer: asking again with the same amount refunds at most once.
    #[error("{0}")]
    OutcomeUnknown(String),
}

/// Refunds `amount` of the payment `reference` and notes the new totals in the payments index.
pub async fn refund(
    store: &Store,
    vipps: &VippsHandle,
    reference: &PaymentReference,
    amount: Amount,
) -> Result<ModificationResponse, RefundError> {
    let payment = store
        .payment(reference)
        .await
        .map_err(|e| RefundError::StoreUnavailable(e.to_string()))?
        .ok_or(RefundError::UnknownPayment)?;
    if payment.amount.currency != amount.currency {
        return Err(RefundError::OtherCurrency {
            payment: payment.amount.currency,
        });
    }
    // The same refund asked twice (a retried request) gets the same key, so Vipps refunds once;
    // after it succeeds the refunded total changes, and the next refund gets a new key.
    let session: SessionId = payment.session.parse().map_err(|e| {
        RefundError::StoreUnavailable(format!(
            "the payments index names no lanehub session for `{reference}`: {e}"
        ))
    })?;
    let key = KeyedOperation::Refund {
        refunded_before: payment.refunded,
        amount: amount.value,
    }
    .key(&session, reference);
    let result = vipps
        .refund_payment(reference, &key, amount)
        .await
        .map_err(|e| match (&e, call_error(&e)) {
            (VippsError::Overloaded { .. }, _) => RefundError::TooOften(e.to_string()),
            (_, CallError::Rejected { detail, .. }) => RefundError::Refused(detail),
            (_, CallError::Unavailable { detail }) => RefundError::VippsUnavailable(detail),
            (_, CallError::Unknown { detail }) => RefundError::OutcomeUnknown(detail),
        })?;
    let update = PaymentUpdate {
        state: None,
        captured: Some(result.aggregate.captured_amount.value),
        refunded: Some(result.aggregate.refunded_amount.value),
    };
    if let Err(e) = store.update_payment(reference, update).await {
        tracing::warn!(%reference, error = %e, "refund done at Vipps but the payments index was not updated");
    }
    tracing::info!(%reference, amount = %amount, "refunded");
    Ok(result)
}
