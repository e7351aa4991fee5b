//! Capped exponential backoff: the one way lanehub (and its simulator) waits between attempts.
//!
//! Pure: it computes waits and never sleeps, so callers keep their own clock (the session core's
//! `now`, tokio's paused time in tests).

use std::time::Duration;

/// Waits of `initial`, doubling after each failure, never longer than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(initial: Duration, max: Duration) -> Self {
        Backoff { initial, max }
    }

    /// The wait after `failures` failures in a row (the first failure waits `initial`).
    pub fn after(&self, failures: u32) -> Duration {
        let mut wait = self.initial.min(self.max);
        for _ in 1..failures {
            if wait >= self.max || wait.is_zero() {
                break;
            }
            wait = wait.saturating_mul(2).min(self.max);
        }
        wait
    }

    /// A random wait between half of `after(failures)` and all of it: spread, yet never much
    /// sooner than the backoff asks.
    pub fn half_jittered(&self, failures: u32) -> Duration {
        self.after(failures).mul_f64(rand::random_range(0.5..=1.0))
    }

    /// A random wait between zero and `after(failures)` ("full jitter"): many lanes failing at
    /// once do not all retry at the same instant.
    pub fn jittered(&self, failures: u32) -> Duration {
        let cap = self.after(failures);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::random_range(0..=cap_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn waits_double_from_the_first_failure_up_to_the_cap() {
        let b = Backoff::new(s(1), s(30));
        let waits: Vec<u64> = (1..=8).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.after(0), s(1), "no failure yet waits as the first");
        assert_eq!(b.after(u32::MAX), s(30));
        assert_eq!(Backoff::new(Duration::MAX, s(5)).after(3), s(5));
        assert_eq!(
            Backoff::new(s(1), Duration::MAX).after(200),
            Duration::MAX,
            "saturates instead of overflowing"
        );
    }

    #[test]
    fn jitter_stays_within_the_wait() {
        let b = Backoff::new(Duration::from_millis(100), s(2));
        for n in 1..20 {
            assert!(b.jittered(n) <= b.after(n));
        }
    }
}
