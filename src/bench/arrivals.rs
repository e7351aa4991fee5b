//! When each lane's next checkout starts. Closed loop (the default): back to back until the
//! window closes. Open loop (`bench --rate R`): checkouts arrive at R per second in total, with
//! exponential gaps (a Poisson process) drawn from a seeded generator, each on a lane chosen at
//! random among the idle ones. Both sides draw the same seed, so they run the same arrival times
//! and the same lane draws.
//!
//! An arrival that finds no lane idle waits for the next lane to become idle, first come first
//! served, and its wait counts in its checkout time (`lane_wait`, `arrivals_queued`): customers
//! queue at the tills, they do not go home, and a lanehub that falls behind shows it as latency.
//! Arrivals still waiting `drain` after the window closed are counted as unfinished.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;

/// Most checkouts per second `--rate` may offer.
pub const MAX_RATE: f64 = 10_000.0;

/// `--rate`: checkouts per second, finite and above zero.
pub fn parse_rate(raw: &str) -> Result<f64, String> {
    let rate: f64 = raw
        .trim()
        .parse()
        .map_err(|_| format!("`{raw}` is not a number of checkouts per second"))?;
    if !rate.is_finite() || rate <= 0.0 || rate > MAX_RATE {
        return Err(format!(
            "checkouts per second must be above 0 and at most {MAX_RATE}, not {raw}"
        ));
    }
    Ok(rate)
}

/// The open loop's arrivals: `rate` per second from `seed`, for as long as the window lasts.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub rate: f64,
    pub seed: u64,
}

impl Schedule {
    /// Each arrival's offset from the window's start and the draw that picks its lane, in order.
    pub fn arrivals(self, window: Duration) -> impl Iterator<Item = (Duration, u64)> {
        let mut rng = StdRng::seed_from_u64(self.seed);
        let mut at = 0.0f64;
        std::iter::from_fn(move || {
            // Inverse transform: 1 − U lies in (0, 1], so the logarithm is finite.
            let u: f64 = rng.random();
            at += -(1.0 - u).ln() / self.rate;
            let draw: u64 = rng.random();
            (at < window.as_secs_f64()).then(|| (Duration::from_secs_f64(at), draw))
        })
    }
}

/// The lanes free for the next arrival.
#[derive(Debug, Default)]
pub struct IdleLanes {
    lanes: Mutex<Vec<usize>>,
    freed: Notify,
}

impl IdleLanes {
    fn take(&self, draw: u64) -> Option<usize> {
        let mut lanes = self.lanes.lock().unwrap_or_else(PoisonError::into_inner);
        if lanes.is_empty() {
            return None;
        }
        let at = usize::try_from(draw % lanes.len() as u64).unwrap_or(0);
        Some(lanes.swap_remove(at))
    }

    fn put(&self, lane: usize) {
        self.lanes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(lane);
        // A permit is kept when the dispatcher is not waiting yet, so no wake-up is lost.
        self.freed.notify_one();
    }
}

/// Where one lane's checkouts come from.
#[derive(Debug)]
pub enum Work {
    /// One checkout after another until `stop`.
    BackToBack { stop: Instant },
    /// The arrivals the dispatcher hands this lane, until it has none left.
    Arrivals {
        stop: Instant,
        lane: usize,
        next: mpsc::Receiver<Instant>,
        idle: Arc<IdleLanes>,
    },
}

impl Work {
    /// When the side's window closes.
    pub fn stop(&self) -> Instant {
        match self {
            Work::BackToBack { stop } | Work::Arrivals { stop, .. } => *stop,
        }
    }

    /// When the next checkout arrived; `None` once the lane has no more work.
    pub async fn next(&mut self) -> Option<Instant> {
        match self {
            Work::BackToBack { stop } => {
                let now = Instant::now();
                (now < *stop).then_some(now)
            }
            Work::Arrivals { next, .. } => next.recv().await,
        }
    }

    /// The lane is idle again: the open loop may choose it for the next arrival.
    pub fn done(&self) {
        if let Work::Arrivals { lane, idle, .. } = self {
            idle.put(*lane);
        }
    }
}

/// What the open loop's dispatcher offered one side.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offered {
    /// Arrivals within the window.
    pub arrivals: u64,
    /// Arrivals that found no lane idle and waited for one.
    pub queued: u64,
    /// Arrivals still without a lane when the drain ended (never started).
    pub abandoned: u64,
}

/// One side's work for `lanes` lanes from `start` for `window`: back to back without a
/// schedule, else the schedule's arrivals and the dispatcher that hands them out (to be spawned
/// beside the lanes; it ends once every arrival has a lane or `drain` after the window).
pub fn pace(
    schedule: Option<Schedule>,
    lanes: usize,
    start: Instant,
    window: Duration,
    drain: Duration,
) -> (
    Vec<Work>,
    Option<impl Future<Output = Offered> + Send + 'static>,
) {
    let stop = start + window;
    let Some(schedule) = schedule else {
        return (
            (0..lanes).map(|_| Work::BackToBack { stop }).collect(),
            None,
        );
    };
    let idle = Arc::new(IdleLanes {
        lanes: Mutex::new((0..lanes).collect()),
        freed: Notify::new(),
    });
    let (senders, works): (Vec<_>, Vec<_>) = (0..lanes)
        .map(|lane| {
            let (tx, next) = mpsc::channel(1);
            let work = Work::Arrivals {
                stop,
                lane,
                next,
                idle: idle.clone(),
            };
            (tx, work)
        })
        .unzip();
    let dispatch = async move {
        let mut offered = Offered::default();
        let give_up = stop + drain;
        for (offset, draw) in schedule.arrivals(window) {
            let at = start + offset;
            tokio::time::sleep_until(at).await;
            offered.arrivals += 1;
            let mut waited = false;
            let lane = loop {
                if let Some(lane) = idle.take(draw) {
                    break Some(lane);
                }
                waited = true;
                if tokio::time::timeout_at(give_up, idle.freed.notified())
                    .await
                    .is_err()
                {
                    break None;
                }
            };
            offered.queued += u64::from(waited);
            match lane {
                // The lane is idle, so its channel is empty; a lane that ended drops the arrival.
                Some(lane) => {
                    let _ = senders[lane].try_send(at);
                }
                None => offered.abandoned += 1,
            }
        }
        offered
    };
    (works, Some(dispatch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_must_be_positive_finite_numbers() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        for bad in ["0", "-1", "abc", "NaN", "inf", "", "10001"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_seed_repeats_its_arrivals_at_the_rate_asked() {
        let s = Schedule {
            rate: 100.0,
            seed: 7,
        };
        let window = Duration::from_secs(100);
        let a: Vec<_> = s.arrivals(window).collect();
        assert_eq!(a, s.arrivals(window).collect::<Vec<_>>());
        assert!(a.windows(2).all(|w| w[0].0 <= w[1].0), "in order");
        assert!(a.last().is_some_and(|l| l.0 < window));
        // 10,000 expected; a Poisson count's standard deviation is 100.
        assert!((9_500..=10_500).contains(&a.len()), "{}", a.len());
        let other: Vec<_> = Schedule { seed: 8, ..s }.arrivals(window).collect();
        assert_ne!(a, other);
    }

    /// One lane's open loop at 1,000 arrivals per second for `window_ms`: its work, the
    /// running dispatcher, and how many arrivals the schedule holds.
    fn one_lane(
        seed: u64,
        window_ms: u64,
        drain: Duration,
    ) -> (Work, tokio::task::JoinHandle<Offered>, u64) {
        let schedule = Schedule {
            rate: 1_000.0,
            seed,
        };
        let window = Duration::from_millis(window_ms);
        let expected = schedule.arrivals(window).count() as u64;
        let (mut works, dispatch) = pace(Some(schedule), 1, Instant::now(), window, drain);
        let dispatch = tokio::spawn(dispatch.expect("an open loop"));
        (works.remove(0), dispatch, expected)
    }

    #[tokio::test(start_paused = true)]
    async fn an_arrival_with_no_idle_lane_waits_for_the_next_one() {
        let (mut lane, dispatch, expected) = one_lane(1, 20, Duration::from_secs(1));
        assert!(expected > 2);
        let mut arrivals = vec![];
        while let Some(arrived) = lane.next().await {
            arrivals.push(arrived);
            // Each checkout takes 10 ms: later arrivals queue behind it.
            tokio::time::sleep(Duration::from_millis(10)).await;
            lane.done();
        }
        let offered = dispatch.await.unwrap();
        assert_eq!(offered.arrivals, expected);
        assert_eq!(arrivals.len() as u64, expected, "every arrival was served");
        assert!(offered.queued > 0 && offered.abandoned == 0, "{offered:?}");
        assert!(
            arrivals.windows(2).all(|w| w[0] <= w[1]),
            "first come first served"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn arrivals_still_waiting_after_the_drain_are_abandoned() {
        let (mut lane, dispatch, expected) = one_lane(2, 50, Duration::from_millis(5));
        // The only lane takes its first arrival and never finishes.
        let first = lane.next().await;
        assert!(first.is_some());
        let offered = dispatch.await.unwrap();
        assert_eq!(offered.arrivals, expected);
        assert_eq!(offered.abandoned, expected - 1, "{offered:?}");
    }
}
