//! Checkout lanes: one actor per lane owns its scanners and its session state machine; callers
//! reach it through a `LaneHandle` from the `Lanes` registry.

pub mod actor;
pub mod effects;
pub mod handle;
pub mod messages;
pub mod pipeline;
pub mod view;

pub use actor::{LaneActor, LaneDied, LaneSpec};
pub use handle::{CommandError, LaneCommand, LaneHandle, Lanes};
