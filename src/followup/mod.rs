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

use chrono::{DateTime, Utc};

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
