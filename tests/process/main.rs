//! lanehub under stress and interruption: SIGTERM and its deadline, SIGKILL at every step of a
//! checkout, a full disk, refused databases, and random kills and faults under load.

#[path = "../common/mod.rs"]
mod common;

mod chaos;
mod crash;
mod recovery;
mod shutdown;
