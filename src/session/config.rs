//! How long a session waits in each state, and how often it retries a payment call.
//!
//! Every wait has a deadline, so a lane whose calls never answer still reaches a final state.

use std::time::Duration;

/// Per-state timeouts and retry budgets for one lane's sessions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Longest wait for the QR exchange before falling back to the clear-text number.
    pub qr_exchange_timeout: Duration,
    /// Longest wait for the local membership lookup; then membership is unknown.
    pub membership_timeout: Duration,
    /// After this, a check-in that has not answered is recorded as timed out (it never blocks).
    pub check_in_timeout: Duration,
    /// Longest wait for the Login start call (CIBA authentication).
    pub login_start_timeout: Duration,
    /// Longest wait for the customer's consent; the server's `expires_in` shortens it.
    pub login_timeout: Duration,
    /// Longest wait for one token poll (then the session polls again) or one userinfo call.
    pub login_poll_timeout: Duration,
    /// How long an enrollment recovered from the journal is followed before it is given up.
    pub login_recovery_window: Duration,
    /// Longest wait for storing a new member.
    pub member_store_timeout: Duration,
    /// Longest wait for the payment create call; then the payment is read back.
    pub payment_create_timeout: Duration,
    /// Vipps' own payment expiry (10 minutes for ePayment).
    pub payment_expiry: Duration,
    /// Added to the expiry before the safety-net read-back; never a failure by itself.
    pub payment_margin: Duration,
    /// First read-back after creation.
    pub payment_first_poll: Duration,
    /// Read-backs after the first one.
    pub payment_poll_interval: Duration,
    /// Longest wait for one read-back; then the session reads again.
    pub payment_read_timeout: Duration,
    /// After the safety net fires, how long the session keeps reading before giving up.
    pub final_read_window: Duration,
    /// Longest wait for a capture call; then the payment is read back.
    pub capture_timeout: Duration,
    /// Longest wait for a cancel call; then the payment is read back.
    pub cancel_timeout: Duration,
    /// A session ready for payment with no cashier action for this long is abandoned.
    pub idle_timeout: Duration,
    /// Create attempts per payment (same idempotency key each time).
    pub max_create_attempts: u32,
    /// Capture attempts per payment (same idempotency key each time).
    pub max_capture_attempts: u32,
    /// Attempts per kind of cancel (same idempotency key each time).
    pub max_cancel_attempts: u32,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            qr_exchange_timeout: Duration::from_secs(5),
            membership_timeout: Duration::from_secs(3),
            check_in_timeout: Duration::from_secs(10),
            login_start_timeout: Duration::from_secs(15),
            login_timeout: Duration::from_secs(300),
            login_poll_timeout: Duration::from_secs(15),
            login_recovery_window: Duration::from_secs(60),
            member_store_timeout: Duration::from_secs(5),
            payment_create_timeout: Duration::from_secs(30),
            payment_expiry: Duration::from_secs(600),
            payment_margin: Duration::from_secs(60),
            payment_first_poll: Duration::from_secs(5),
            payment_poll_interval: Duration::from_secs(2),
            payment_read_timeout: Duration::from_secs(15),
            final_read_window: Duration::from_secs(30),
            capture_timeout: Duration::from_secs(30),
            cancel_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15 * 60),
            // Vipps allows 5 create/capture/cancel calls per minute per reference.
            max_create_attempts: 3,
            max_capture_attempts: 3,
            max_cancel_attempts: 3,
        }
    }
}
