//! Sliding-window rate limits counted per key on the simulator's clock, the way the Vipps API
//! gateway throttles ePayment per `reference`. A refused call is not counted, so a client that
//! backs off for `Retry-After` gets through again.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use tokio::time::Instant;

/// At most `max` calls in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub per: Duration,
}

impl Limit {
    pub const fn per_minute(max: u32) -> Self {
        Limit {
            max,
            per: Duration::from_secs(60),
        }
    }
}

/// The calls each key made within its window.
#[derive(Debug)]
pub struct RateLimiter<K> {
    hits: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for RateLimiter<K> {
    fn default() -> Self {
        RateLimiter {
            hits: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// Counts a call by `key` at `now`, or refuses it with how long until one more would pass.
    pub fn check(&mut self, key: K, limit: Limit, now: Instant) -> Result<(), Duration> {
        let hits = self.hits.entry(key).or_default();
        while hits
            .front()
            .is_some_and(|t| now.duration_since(*t) >= limit.per)
        {
            hits.pop_front();
        }
        if hits.len() >= limit.max as usize {
            // The oldest call in the window leaves it first.
            let oldest = hits.front().copied().unwrap_or(now);
            return Err(limit.per.saturating_sub(now.duration_since(oldest)));
        }
        hits.push_back(now);
        Ok(())
    }

    /// Forgets keys with no call within `longest` so a long run does not grow without bound.
    pub fn prune(&mut self, now: Instant, longest: Duration) {
        self.hits.retain(|_, hits| {
            hits.back()
                .is_some_and(|t| now.duration_since(*t) < longest)
        });
    }

    /// How many keys are tracked.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }
}

/// `Retry-After` in whole seconds, rounded up so a client that waits exactly that long passes.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs + 1
    } else {
        secs
    }
    .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refuses_past_the_limit_and_recovers_when_the_window_moves() {
        let mut rl = RateLimiter::default();
        let limit = Limit::per_minute(5);
        let t0 = Instant::now();
        for i in 0..5 {
            assert_eq!(rl.check("ref", limit, t0 + Duration::from_secs(i)), Ok(()));
        }
        let wait = rl
            .check("ref", limit, t0 + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        // Another key is counted on its own.
        assert_eq!(
            rl.check("other", limit, t0 + Duration::from_secs(10)),
            Ok(())
        );
        // The refused call did not count: once the first call leaves the window, one more passes.
        assert_eq!(rl.check("ref", limit, t0 + Duration::from_secs(60)), Ok(()));
        assert!(
            rl.check("ref", limit, t0 + Duration::from_secs(60))
                .is_err()
        );
        assert_eq!(rl.check("ref", limit, t0 + Duration::from_secs(61)), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn prune_forgets_idle_keys() {
        let mut rl = RateLimiter::default();
        let t0 = Instant::now();
        rl.check(1, Limit::per_minute(1), t0).unwrap();
        rl.check(2, Limit::per_minute(1), t0 + Duration::from_secs(30))
            .unwrap();
        rl.prune(t0 + Duration::from_secs(61), Duration::from_secs(60));
        assert_eq!(rl.len(), 1);
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(100)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(50)), 50);
        assert_eq!(retry_after_secs(Duration::from_millis(50_001)), 51);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
