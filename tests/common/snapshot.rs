//! Reading lane snapshots and Vipps payments: typed where a test reads the lane as the terminal
//! does (`LaneSnapshot`), by JSON path where it reads the simulator's answers.

use lanehub::lane::view::LaneSnapshot;
use serde_json::Value;

/// Lane states in which a payment is in flight: the cashier waits for its outcome.
pub const PAYING: [&str; 4] = [
    "awaiting_payment_creation",
    "awaiting_payment",
    "awaiting_capture",
    "awaiting_cancel",
];

/// The lane snapshot as the terminal reads it.
pub fn typed(snapshot: &Value) -> LaneSnapshot {
    serde_json::from_value(snapshot.clone())
        .unwrap_or_else(|e| panic!("not a lane snapshot ({e}): {snapshot}"))
}

/// The cashier message's code as the wire spells it, empty if there is none.
pub fn code(snapshot: &Value) -> &str {
    snapshot["message"]["code"].as_str().unwrap_or_default()
}

/// The lane's state label, empty if there is none.
pub fn state(snapshot: &Value) -> &str {
    snapshot["state"].as_str().unwrap_or_default()
}

/// The session id and payment reference a lane shows.
pub fn ids(snapshot: &Value) -> (String, String) {
    let session = typed(snapshot).session.expect("the lane shows a session");
    let payment = session.payment.expect("the session has a payment");
    (session.id, payment.reference)
}

/// What Vipps captured of a payment; the field must be there.
pub fn captured(payment: &Value) -> u64 {
    payment["aggregate"]["capturedAmount"]["value"]
        .as_u64()
        .unwrap()
}

/// An aggregate amount of a Vipps payment (`authorizedAmount`, …), 0 if absent.
pub fn amount(payment: &Value, which: &str) -> u64 {
    payment["aggregate"][which]["value"].as_u64().unwrap_or(0)
}

/// Final at Vipps: nothing more can happen to the money without a new request.
pub fn is_final(payment: &Value) -> bool {
    match payment["state"].as_str() {
        Some("ABORTED" | "EXPIRED" | "TERMINATED") => true,
        Some("AUTHORIZED") => {
            let authorized = amount(payment, "authorizedAmount");
            authorized > 0
                && amount(payment, "capturedAmount") + amount(payment, "cancelledAmount")
                    == authorized
        }
        _ => false,
    }
}
