//! The simulator's clock: real (tokio) time plus an offset that the control API can advance, so a
//! test can expire a payment without waiting ten minutes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct SimClock {
    offset_ms: AtomicU64,
}

impl SimClock {
    /// Monotonic now, including the offset.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// Wall-clock now, including the offset, for timestamps in answers and events.
    pub fn wall(&self) -> chrono::DateTime<chrono::Utc> {
        let offset = chrono::Duration::from_std(self.offset()).unwrap_or(chrono::Duration::zero());
        chrono::Utc::now() + offset
    }

    /// Now on both clocks.
    pub fn moment(&self) -> Now {
        Now {
            instant: self.now(),
            wall: self.wall(),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.offset_ms.fetch_add(ms, Ordering::SeqCst);
    }

    pub fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }
}

/// A moment on both of the simulator's clocks: when an operation happens, or when something
/// was created or expires.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub wall: DateTime<Utc>,
}

impl Now {
    /// The wall-clock time of `at`, an instant before or after this moment.
    pub fn wall_at(&self, at: Instant) -> DateTime<Utc> {
        let wall = |d: Duration| chrono::Duration::from_std(d).unwrap_or_default();
        if at >= self.instant {
            self.wall + wall(at - self.instant)
        } else {
            self.wall - wall(self.instant - at)
        }
    }

    /// The moment `d` after this one.
    pub fn after(&self, d: Duration) -> Now {
        self.at(self.instant + d)
    }

    /// The moment `at` on the same clock.
    pub fn at(&self, at: Instant) -> Now {
        Now {
            instant: at,
            wall: self.wall_at(at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn advance_moves_both_clocks() {
        let clock = SimClock::default();
        let before = clock.now();
        let wall_before = clock.wall();
        clock.advance(Duration::from_secs(600));
        assert!(clock.now() - before >= Duration::from_secs(600));
        assert!(clock.wall() - wall_before >= chrono::Duration::seconds(600));
    }
}
