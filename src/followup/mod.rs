//! Follow-ups: work a lane gave up waiting for that Vipps may still finish. Each runs on its own
//! task from start to shutdown, reads what to follow from the store, and so carries on across
//! restarts.
//!
//! - [`enrollment`]: Logins a session stopped waiting for; a consent given later still makes
//!   the customer a member.
//! - [`payments`]: payments whose create was never confirmed; one Vipps holds after all is
//!   cancelled, one it never got is marked so.

pub mod enrollment;
pub mod payments;

pub use enrollment::EnrollmentFollower;
