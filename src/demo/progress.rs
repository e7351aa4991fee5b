//! How checkouts ended, counted, and the progress line printed every `PROGRESS_INTERVAL`.

use super::*;

/// How a checkout ended, from the cashier message the lane showed when its session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    Paid,
    Declined,
    Expired,
    Cancelled,
    Unavailable,
    Closed,
    Failed,
    /// Abandoned or interrupted sessions, or a message the demo does not know.
    Other,
}

impl Ended {
    /// The outcome of a session that ended showing the cashier message `code`.
    pub fn from_message(code: &str) -> Ended {
        match code {
            "payment_approved" => Ended::Paid,
            "payment_declined" => Ended::Declined,
            "payment_expired" => Ended::Expired,
            "payment_cancelled" => Ended::Cancelled,
            "vipps_unavailable" => Ended::Unavailable,
            "session_closed" => Ended::Closed,
            "payment_failed" | "qr_not_recognised" => Ended::Failed,
            _ => Ended::Other,
        }
    }
}

/// Cashier messages that end an enrollment (the session goes on, ready for payment).
pub(super) const ENROLLMENT_ENDS: [&str; 6] = [
    "enrollment_completed",
    "enrollment_declined",
    "enrollment_expired",
    "enrollment_abandoned",
    "enrollment_failed",
    "vipps_unavailable",
];

/// What the demo has seen so far.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) checkouts: AtomicU64,
    pub(super) paid: AtomicU64,
    pub(super) declined: AtomicU64,
    pub(super) expired: AtomicU64,
    pub(super) cancelled: AtomicU64,
    pub(super) enrolled: AtomicU64,
    pub(super) unavailable: AtomicU64,
    pub(super) closed: AtomicU64,
    pub(super) failed: AtomicU64,
}

impl Tally {
    pub(super) fn ended(&self, ended: Ended) {
        self.checkouts.fetch_add(1, Ordering::Relaxed);
        let slot = match ended {
            Ended::Paid => &self.paid,
            Ended::Declined => &self.declined,
            Ended::Expired => &self.expired,
            Ended::Cancelled => &self.cancelled,
            Ended::Unavailable => &self.unavailable,
            Ended::Closed => &self.closed,
            Ended::Failed => &self.failed,
            Ended::Other => return,
        };
        slot.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn progress(&self, elapsed: Duration, lanes: usize, vipps_errors: u64) -> Progress {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Progress {
            elapsed_secs: elapsed.as_secs(),
            lanes,
            checkouts: get(&self.checkouts),
            paid: get(&self.paid),
            declined: get(&self.declined),
            expired: get(&self.expired),
            cancelled: get(&self.cancelled),
            enrolled: get(&self.enrolled),
            unavailable: get(&self.unavailable),
            closed: get(&self.closed),
            failed: get(&self.failed),
            vipps_errors,
        }
    }
}

/// The progress line's numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub elapsed_secs: u64,
    pub lanes: usize,
    /// Sessions that ended, whatever the outcome.
    pub checkouts: u64,
    pub paid: u64,
    pub declined: u64,
    pub expired: u64,
    pub cancelled: u64,
    /// Customers who joined the club.
    pub enrolled: u64,
    pub unavailable: u64,
    pub closed: u64,
    pub failed: u64,
    /// Error answers the simulator's fault injection gave (5xx, 429, 423, hangs, drops).
    pub vipps_errors: u64,
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "demo: {}s lanes={} checkouts={} paid={} declined={} expired={} cancelled={} \
             enrolled={} unavailable={} closed={} failed={} vipps_errors={}",
            self.elapsed_secs,
            self.lanes,
            self.checkouts,
            self.paid,
            self.declined,
            self.expired,
            self.cancelled,
            self.enrolled,
            self.unavailable,
            self.closed,
            self.failed,
            self.vipps_errors
        )
    }
}

pub(super) async fn print_progress(demo: Arc<Demo>) {
    let mut every = tokio::time::interval_at(Instant::now() + PROGRESS_INTERVAL, PROGRESS_INTERVAL);
    loop {
        every.tick().await;
        println!("{}", demo.progress());
    }
}
