//! lanehub's own rate limiter in front of Vipps, so that lanehub never provokes a 429 itself:
//! Vipps' per-`reference` ePayment quotas (5 per minute for create, capture, cancel and refund;
//! 120 per minute for get and events) plus a configurable global ceiling in requests per second.
//!
//! It is pure: [`RateLimiter::reserve`] takes `now` and hands out the instant at which a request
//! may be sent (a reservation), or refuses when too many requests already wait or the wait would
//! exceed the limit or the caller's deadline. Each window is a sliding log of send times in
//! order, so any window of its length holds at most its limit. What must stay true: reservations
//! in a window never go backwards in time, and a refused request reserves nothing.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::Operation;
use crate::domain::PaymentReference;

/// Vipps counts per minute on its own clock; the extra second keeps lanehub clear of its edge.
pub const QUOTA_WINDOW: Duration = Duration::from_secs(61);
/// Create, capture, cancel and refund per reference and window.
pub const MUTATIONS_PER_WINDOW: usize = 5;
/// Get payment and get events per reference and window.
pub const READS_PER_WINDOW: usize = 120;

/// The per-reference quota an operation counts against. Mutations are counted together, the
/// stricter reading of Vipps' documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaClass {
    Mutation,
    Read,
}

impl QuotaClass {
    pub fn of(op: Operation) -> Option<QuotaClass> {
        match op {
            Operation::PaymentCreate
            | Operation::PaymentCapture
            | Operation::PaymentCancel
            | Operation::PaymentRefund => Some(QuotaClass::Mutation),
            Operation::PaymentGet | Operation::PaymentEvents => Some(QuotaClass::Read),
            _ => None,
        }
    }

    fn limit(self) -> usize {
        match self {
            QuotaClass::Mutation => MUTATIONS_PER_WINDOW,
            QuotaClass::Read => READS_PER_WINDOW,
        }
    }
}

/// The limiter's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitSettings {
    /// Global ceiling on requests sent per second, all operations together.
    pub max_requests_per_second: u32,
    /// How many admitted requests may wait for their slot at once.
    pub max_waiters: usize,
    /// The longest a request may wait for its slot.
    pub max_wait: Duration,
}

/// Why a request got no slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `max_waiters` requests already wait.
    TooManyWaiting,
    /// The slot is later than `max_wait` or the caller's deadline.
    WaitTooLong(Duration),
}

/// A sliding log: at most `limit` sends in any window of length `period`.
#[derive(Debug)]
struct Window {
    limit: usize,
    period: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    fn new(limit: usize, period: Duration) -> Self {
        Window {
            limit: limit.max(1),
            period,
            sent: VecDeque::new(),
        }
    }

    /// The earliest instant at or after `now` that keeps the window's promise, never before the
    /// last reservation (so the log stays ordered).
    fn earliest(&self, now: Instant) -> Instant {
        let mut at = now;
        if let Some(&last) = self.sent.back() {
            at = at.max(last);
        }
        if self.sent.len() >= self.limit {
            let nth_back = self.sent[self.sent.len() - self.limit];
            at = at.max(nth_back + self.period);
        }
        at
    }

    fn record(&mut self, at: Instant) {
        self.sent.push_back(at);
        // Only the last `limit` sends can constrain a future one.
        while self.sent.len() > self.limit {
            self.sent.pop_front();
        }
    }

    fn prune(&mut self, now: Instant) {
        while self.sent.front().is_some_and(|&t| t + self.period <= now) {
            self.sent.pop_front();
        }
    }
}

/// All windows: the global one and one per (reference, quota class).
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimitSettings,
    global: Window,
    per_reference: HashMap<(PaymentReference, QuotaClass), Window>,
    /// Slots handed out in the future, in order: the waiting requests (at most `max_waiters`).
    pending: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn new(settings: RateLimitSettings) -> Self {
        RateLimiter {
            global: Window::new(
                settings.max_requests_per_second as usize,
                Duration::from_secs(1),
            ),
            per_reference: HashMap::new(),
            pending: VecDeque::new(),
            settings,
        }
    }

    /// Reserves the instant at which a request for `op` (on `reference`) may be sent, no later
    /// than `deadline`. Nothing is reserved when it refuses.
    pub fn reserve(
        &mut self,
        now: Instant,
        op: Operation,
        reference: Option<&PaymentReference>,
        deadline: Instant,
    ) -> Result<Instant, Refusal> {
        self.global.prune(now);
        self.prune_pending(now);
        let quota = reference
            .zip(QuotaClass::of(op))
            .map(|(r, class)| (r.clone(), class));
        let mut at = self.global.earliest(now);
        if let Some(key) = &quota {
            let window = self
                .per_reference
                .entry(key.clone())
                .or_insert_with(|| Window::new(key.1.limit(), QUOTA_WINDOW));
            window.prune(now);
            at = at.max(window.earliest(now));
        }
        let wait = at - now;
        let refusal = if wait.is_zero() {
            None
        } else if self.pending.len() >= self.settings.max_waiters {
            Some(Refusal::TooManyWaiting)
        } else if wait > self.settings.max_wait || at > deadline {
            Some(Refusal::WaitTooLong(wait))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            if let Some(key) = &quota
                && self
                    .per_reference
                    .get(key)
                    .is_some_and(|w| w.sent.is_empty())
            {
                self.per_reference.remove(key);
            }
            return Err(refusal);
        }
        self.global.record(at);
        if at > now {
            // Global reservations never go backwards, so `pending` stays in order.
            self.pending.push_back(at);
        }
        if let Some(key) = quota
            && let Some(window) = self.per_reference.get_mut(&key)
        {
            window.record(at);
        }
        Ok(at)
    }

    /// Forgets references whose windows are empty at `now`, so the map stays as small as the
    /// last window's traffic.
    pub fn prune(&mut self, now: Instant) {
        self.global.prune(now);
        self.prune_pending(now);
        self.per_reference.retain(|_, w| {
            w.prune(now);
            !w.sent.is_empty()
        });
    }

    /// Requests holding a slot in the future.
    pub fn waiting(&mut self, now: Instant) -> usize {
        self.prune_pending(now);
        self.pending.len()
    }

    fn prune_pending(&mut self, now: Instant) {
        while self.pending.front().is_some_and(|&t| t <= now) {
            self.pending.pop_front();
        }
    }

    /// References currently tracked.
    pub fn tracked_references(&self) -> usize {
        self.per_reference.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: u32, max_waiters: usize, max_wait: Duration) -> RateLimiter {
        RateLimiter::new(RateLimitSettings {
            max_requests_per_second: rps,
            max_waiters,
            max_wait,
        })
    }

    fn r(s: &str) -> PaymentReference {
        s.parse().unwrap()
    }

    const FAR: Duration = Duration::from_secs(3600);

    #[test]
    fn five_mutations_per_reference_then_the_sixth_waits_a_window() {
        let now = Instant::now();
        let mut l = limiter(100, 10, FAR);
        let a = r("lane1-000001");
        for op in [
            Operation::PaymentCreate,
            Operation::PaymentCapture,
            Operation::PaymentCancel,
            Operation::PaymentRefund,
            Operation::PaymentCreate,
        ] {
            assert_eq!(l.reserve(now, op, Some(&a), now + FAR), Ok(now));
        }
        // Reads and other references are not held back by a's mutations.
        assert_eq!(
            l.reserve(now, Operation::PaymentGet, Some(&a), now + FAR),
            Ok(now)
        );
        let b = r("lane1-000002");
        assert_eq!(
            l.reserve(now, Operation::PaymentCreate, Some(&b), now + FAR),
            Ok(now)
        );
        let sixth = l.reserve(now, Operation::PaymentCapture, Some(&a), now + FAR);
        assert_eq!(sixth, Ok(now + QUOTA_WINDOW));
        assert_eq!(l.waiting(now), 1);
    }

    #[test]
    fn any_window_holds_at_most_the_limit() {
        let start = Instant::now();
        let mut l = limiter(1000, 1000, FAR);
        let a = r("lane1-000001");
        let mut sent = Vec::new();
        let mut now = start;
        for i in 0..40u64 {
            now = start + Duration::from_secs(i * 7);
            let at = l
                .reserve(now, Operation::PaymentCreate, Some(&a), now + FAR)
                .unwrap();
            assert!(at >= now);
            sent.push(at);
        }
        assert!(now > start);
        for (i, &t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().filter(|&&u| u < t + QUOTA_WINDOW).count();
            assert!(
                in_window <= MUTATIONS_PER_WINDOW,
                "window at {i} holds {in_window}"
            );
        }
    }

    #[test]
    fn global_ceiling_spreads_requests_over_seconds() {
        let now = Instant::now();
        let mut l = limiter(2, 10, FAR);
        let at: Vec<Instant> = (0..5)
            .map(|_| {
                l.reserve(now, Operation::QrExchange, None, now + FAR)
                    .unwrap()
            })
            .collect();
        let secs = Duration::from_secs;
        assert_eq!(
            at,
            vec![now, now, now + secs(1), now + secs(1), now + secs(2)]
        );
    }

    #[test]
    fn waiters_and_waits_are_bounded_and_refusals_reserve_nothing() {
        let now = Instant::now();
        let mut l = limiter(1, 2, Duration::from_secs(10));
        assert_eq!(l.reserve(now, Operation::CheckIn, None, now + FAR), Ok(now));
        assert!(l.reserve(now, Operation::CheckIn, None, now + FAR).is_ok());
        assert!(l.reserve(now, Operation::CheckIn, None, now + FAR).is_ok());
        assert_eq!(
            l.reserve(now, Operation::CheckIn, None, now + FAR),
            Err(Refusal::TooManyWaiting)
        );
        assert_eq!(l.waiting(now), 2);
        // Beyond the caller's deadline.
        let later = now + Duration::from_millis(2500);
        assert_eq!(
            l.reserve(later, Operation::CheckIn, None, later),
            Err(Refusal::WaitTooLong(Duration::from_millis(500)))
        );
        // The refused one did not take the slot.
        assert_eq!(
            l.reserve(later, Operation::CheckIn, None, later + FAR),
            Ok(now + Duration::from_secs(3))
        );

        let mut l = limiter(100, 10, Duration::from_secs(10));
        let a = r("lane1-000001");
        for _ in 0..MUTATIONS_PER_WINDOW {
            l.reserve(now, Operation::PaymentCreate, Some(&a), now + FAR)
                .unwrap();
        }
        assert_eq!(
            l.reserve(now, Operation::PaymentCreate, Some(&a), now + FAR),
            Err(Refusal::WaitTooLong(QUOTA_WINDOW))
        );
    }

    #[test]
    fn prune_forgets_quiet_references() {
        let now = Instant::now();
        let mut l = limiter(100, 10, FAR);
        for i in 0..10 {
            let reference = r(&format!("lane1-{i:06}"));
            l.reserve(now, Operation::PaymentGet, Some(&reference), now + FAR)
                .unwrap();
        }
        assert_eq!(l.tracked_references(), 10);
        l.prune(now + QUOTA_WINDOW);
        assert_eq!(l.tracked_references(), 0);
    }
}
