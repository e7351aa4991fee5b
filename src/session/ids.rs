//! Identifiers a session owns, and the deterministic names it gives its Vipps calls.
//!
//! The payment reference and every idempotency key are derived from what they name alone (lane,
//! session, operation; a refund from its payment), so a retry — or a lane rebuilt from its
//! journal after a crash — reuses exactly the same names, and Vipps answers the retry instead of
//! creating a second payment.

use super::event::PaymentState;
use crate::domain::{IdempotencyKey, LaneId, PaymentReference};

crate::domain::validated_string! {
    /// One checkout's id: 8 to 32 of a-z, A-Z, 0-9. The lane actor chooses it; step has no
    /// randomness.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct SessionId;
    what: "session id",
    length: SessionId::MIN_LEN..=SessionId::MAX_LEN,
    bytes: |b: u8| b.is_ascii_alphanumeric(),
    expected: "expected 8 to 32 characters of a-z, A-Z and 0-9",
}

impl SessionId {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 32;

    /// A session id from a UUID's 32 hex digits: the lane actor's usual source of fresh ids.
    pub fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id.simple().to_string())
    }
}

/// Pairs a call effect with the event that answers it; answers to any other call are stale.
///
/// The actor copies it from the effect into the answering event and never makes one up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// Every Vipps operation lanehub sends with an `Idempotency-Key`; [`KeyedOperation::key`] names
/// each one's key, and nothing else makes keys up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyedOperation {
    Create,
    Capture,
    /// Cancel with `cancelTransactionOnly: true` (before authorisation).
    Cancel,
    /// Cancel of an authorised payment. A key of its own: the same key with another body is a 409.
    CancelFull,
    /// Cancel in full of a payment Vipps came to hold after its session closed, by the state it
    /// was seen in: Vipps answers the same 4xx again for a key it refused, so each state gets a
    /// key of its own.
    LateCancel(PaymentState),
    /// A back-office refund of `amount` minor units after `refunded_before` were refunded.
    Refund {
        refunded_before: u64,
        amount: u64,
    },
}

impl KeyedOperation {
    /// The operation's name where keys are stored.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyedOperation::Create => "create",
            KeyedOperation::Capture => "capture",
            KeyedOperation::Cancel => "cancel",
            KeyedOperation::CancelFull => "cancel-full",
            KeyedOperation::LateCancel(seen_in) => match seen_in {
                PaymentState::Created => "late_cancel_created",
                PaymentState::Authorized => "late_cancel_authorized",
                PaymentState::Aborted => "late_cancel_aborted",
                PaymentState::Expired => "late_cancel_expired",
                PaymentState::Terminated => "late_cancel_terminated",
            },
            KeyedOperation::Refund { .. } => "refund",
        }
    }

    /// The key of this operation on the payment `reference` of `session`, at most 50 characters.
    ///
    /// A session's own calls are named after the session alone (`{session}-{operation}`), so a
    /// retry or a lane rebuilt from its journal reuses the key; a late cancel after the session
    /// and the state it saw (`{session}-lc-{state}`). A refund is named after its payment and the
    /// total refunded before it (`{hash}-rf`): the same refund asked twice gets the same key, so
    /// Vipps refunds once, and after it succeeds the next refund gets a new one.
    pub fn key(self, session: &SessionId, reference: &PaymentReference) -> IdempotencyKey {
        let key = match self {
            KeyedOperation::Create
            | KeyedOperation::Capture
            | KeyedOperation::Cancel
            | KeyedOperation::CancelFull => format!("{session}-{}", self.as_str()),
            KeyedOperation::LateCancel(seen_in) => {
                format!("{session}-lc-{}", seen_in.as_str().to_lowercase())
            }
            KeyedOperation::Refund {
                refunded_before,
                amount,
            } => {
                use sha2::{Digest, Sha256};
                let digest =
                    Sha256::digest(format!("{reference}|{refunded_before}|{amount}").as_bytes());
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                format!("{hex}-rf")
            }
        };
        key.parse().expect(
            "a session id (≤ 32 alphanumerics) plus `-` and at most 13 more, or 24 hex digits \
             and `-rf`, fit a key's 50 characters",
        )
    }
}

const REFERENCE_PREFIX: &str = "lh-";
const REFERENCE_MAX: usize = 64;

/// The payment reference of a session: `lh-{lane}-{session}`, fitting `^[a-zA-Z0-9-]{8,64}$`.
///
/// `_` in the lane id becomes `-` and the lane part is shortened when needed: uniqueness rests on
/// the session id, the lane part is there for people reading the back office.
pub fn payment_reference(lane: &LaneId, session: &SessionId) -> PaymentReference {
    let room = REFERENCE_MAX - REFERENCE_PREFIX.len() - 1 - session.0.len();
    let lane_part: String = lane
        .as_str()
        .chars()
        .map(|c| if c == '_' { '-' } else { c })
        .take(room)
        .collect();
    format!("{REFERENCE_PREFIX}{lane_part}-{session}")
        .parse()
        .expect("lane ids and session ids are ASCII alphanumerics and -, 13 to 64 characters here")
}
