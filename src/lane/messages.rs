//! Every message a lane actor takes, in one place: commands from terminals live in
//! `handle::LaneCommand` (they carry the answer type callers see); these are the rest.

use actix::Message;

use crate::session::Event;
use crate::store::StoreHealth;

/// An answer to a call the session asked for.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct CallAnswered(pub Event);

/// Makes the lane panic, for tests of supervision (only routed when test hooks are enabled).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

/// Text for the lane's first simulated scanner, as if a customer held a code to it (only routed
/// when test hooks are enabled); false when the lane has no such scanner or it is full.
#[derive(Debug, Message)]
#[rtype(result = "bool")]
pub struct InjectScan(pub String);

/// A webhook or ping for this lane: read the payment back, or poll the login now.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct VippsSignal(pub Event);

/// A scanner's state changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct ScannerChanged;

/// The store's writability changed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StoreChanged(pub StoreHealth);
