//! Follow-ups: work a lane gave up waiting for that Vipps may still finish. Each runs on its own
//! task from start to shutdown, reads what to follow from the store, and so carries on across
//! restarts.
//!
//! - [`enrollment`]: Logins a session stopped waiting for; a consent given later still makes
//!   the customer a member.
//! - [`EnrollmentFollower`]: how a lane hands such a Login over.
//! - [`payments`]: payments whose create was never confirmed; one Vipps holds after all is
//!   cancelled, one it never got is marked so.
//!
//! Each is a pure `step(row, answer, now) -> actions` (no I/O, no clock: table-tested beside
//! it) and a thin `runner` that reads the rows, carries the actions out and turns what comes
//! back into the next answer, at the time its clock gives.

pub mod enrollment;
mod handover;
pub mod payments;

pub use handover::EnrollmentFollower;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::shutdown::{Phase, Shutdown};
use crate::store::StoreError;

/// When a follow-up step is taken: the wall clock ages stored rows, the tokio clock (paused in
/// tests) paces the calls to Vipps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub instant: tokio::time::Instant,
}

impl Now {
    /// The runners' clock.
    pub fn read() -> Now {
        Now {
            wall: Utc::now(),
            instant: tokio::time::Instant::now(),
        }
    }

    /// How long ago `t` was; a time ahead of the clock counts as now.
    pub fn since(&self, t: DateTime<Utc>) -> std::time::Duration {
        (self.wall - t).to_std().unwrap_or_default()
    }
}

/// Where a runner reads the time: [`Now::read`], or a fixed clock in a test.
pub type Clock = fn() -> Now;

/// Starts a runner on the current actix system: `sweep` every `interval` until lanehub starts
/// stopping. A sweep that fails is logged as "could not {what}" and tried at the next tick.
fn sweep_every(
    interval: Duration,
    shutdown: Shutdown,
    what: &'static str,
    mut sweep: impl AsyncFnMut() -> Result<(), StoreError> + 'static,
) {
    actix_web::rt::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = shutdown.reached(Phase::Stopping) => return,
            }
            if let Err(e) = sweep().await {
                tracing::warn!(error = %e, "could not {what}");
            }
        }
    });
}
