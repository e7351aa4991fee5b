//! Graceful shutdown: the phase every part of lanehub watches, and the drain that runs between
//! SIGTERM (or Ctrl-C) and the exit.
//!
//! What must stay true: once draining, no lane starts anything new (each lane refuses it, see
//! `LaneHandle::is_draining`); a lane with a payment in flight keeps following it (polling and
//! webhooks) until it is final or the deadline passes. Nothing here ends or closes a session:
//! whatever is still open at the deadline stays open in the journal, and the next start recovers
//! it. The drain only reads the lanes and the journal.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::domain::LaneId;
use crate::lane::Lanes;
use crate::lane::view::LaneEventKind;
use crate::store::Store;

/// The text terminals get in the shutdown event, the WebSocket close frame and 503 answers.
pub const SHUTTING_DOWN: &str = "lanehub is shutting down";
/// How often the drain looks at the lanes and the journal.
const DRAIN_POLL: Duration = Duration::from_millis(50);
/// How long past the drain the journal may take to record sessions that just ended.
pub const JOURNAL_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// Where lanehub is in its life; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Taking checkouts.
    Running,
    /// No new checkouts; payments in flight are followed until final or the deadline.
    Draining,
    /// The drain is over: terminals are let go, the HTTP server stops, lanes are not restarted.
    Stopping,
}

/// A cheap, cloneable view of lanehub's phase, shared by the supervisor, the HTTP handlers and
/// background tasks.
#[derive(Debug, Clone)]
pub struct Shutdown(Arc<watch::Sender<Phase>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::Sender::new(Phase::Running)))
    }
}

impl Shutdown {
    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// True from the start of the drain on.
    pub fn is_draining(&self) -> bool {
        self.phase() >= Phase::Draining
    }

    /// True once the drain is over.
    pub fn is_stopping(&self) -> bool {
        self.phase() == Phase::Stopping
    }

    /// Moves on to `phase`; a phase already passed is ignored.
    pub fn advance(&self, phase: Phase) {
        self.0.send_if_modified(|now| {
            let forward = phase > *now;
            if forward {
                *now = phase;
            }
            forward
        });
    }

    /// A receiver for `wait_for` inside a `select!` loop.
    pub fn subscribe(&self) -> watch::Receiver<Phase> {
        self.0.subscribe()
    }

    /// Resolves once lanehub is at `phase` or beyond.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = rx.wait_for(|p| *p >= phase).await;
    }
}

/// A session the drain left open in the journal, for the next start to recover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftOpen {
    pub lane: LaneId,
    pub session: String,
    /// The lane's state label, or `ended` for a session that ended but was not closed in time.
    pub state: String,
}

/// What the drain did.
#[derive(Debug, Clone, Default)]
pub struct Drained {
    /// Payments in flight when the drain started.
    pub payments_in_flight: usize,
    /// True if the deadline passed with a payment still in flight.
    pub deadline_passed: bool,
    pub left_open: Vec<LeftOpen>,
}

/// Drains the lanes: refuses new checkouts at once, follows payments in flight until they are
/// final or `deadline` passes, waits briefly for the journal to record the sessions that ended,
/// then tells every terminal and moves to [`Phase::Stopping`]. Logs what was left open.
pub async fn drain(
    lanes: &Lanes,
    store: &Store,
    shutdown: &Shutdown,
    deadline: Duration,
) -> Drained {
    shutdown.advance(Phase::Draining);
    let all = lanes.all();
    for lane in &all {
        lane.set_draining();
        lane.emit(
            LaneEventKind::Draining,
            Some(json!({"message": SHUTTING_DOWN, "deadlineSecs": deadline.as_secs()})),
        );
    }
    let until = Instant::now() + deadline;
    let payments_in_flight = in_flight(lanes).len();
    tracing::info!(
        payments_in_flight,
        deadline_secs = deadline.as_secs(),
        "shutting down: no new checkouts; following the payments in flight"
    );
    let deadline_passed = loop {
        let busy = in_flight(lanes);
        if busy.is_empty() {
            break false;
        }
        if Instant::now() >= until {
            break true;
        }
        tokio::time::sleep(DRAIN_POLL.min(until.saturating_duration_since(Instant::now()))).await;
    };
    let left_open = settle_journal(lanes, store).await;
    for lane in &all {
        let open = left_open.iter().any(|l| &l.lane == lane.id());
        lane.emit(
            LaneEventKind::Shutdown,
            Some(json!({"message": SHUTTING_DOWN, "sessionLeftOpen": open})),
        );
    }
    shutdown.advance(Phase::Stopping);
    for l in &left_open {
        tracing::warn!(lane = %l.lane, session = %l.session, state = %l.state,
            "session left open in the journal; the next start recovers it");
    }
    Drained {
        payments_in_flight,
        deadline_passed,
        left_open,
    }
}

/// Lanes whose session holds a payment: requested, awaiting the customer, capturing or
/// cancelling. A lane's snapshot carries a payment only in those states.
fn in_flight(lanes: &Lanes) -> Vec<LaneId> {
    lanes
        .all()
        .iter()
        .map(|l| l.snapshot())
        .filter(|s| s.session.as_ref().is_some_and(|s| s.payment.is_some()))
        .map(|s| s.lane)
        .collect()
}

/// Waits up to [`JOURNAL_FLUSH_GRACE`] until the journal's open sessions are exactly the lanes'
/// current ones (a session that just ended is closed by the lane's pipeline a moment later), and
/// returns the sessions open in the journal then.
async fn settle_journal(lanes: &Lanes, store: &Store) -> Vec<LeftOpen> {
    let until = Instant::now() + JOURNAL_FLUSH_GRACE;
    loop {
        let mut left = vec![];
        let mut settled = true;
        for lane in lanes.all() {
            let current = lane.snapshot().session;
            let open = match store.open_sessions(lane.id()).await {
                Ok(open) => open,
                Err(e) => {
                    tracing::error!(lane = %lane.id(), error = %e, "cannot read the journal at shutdown");
                    continue;
                }
            };
            let ids: HashSet<&str> = open.iter().map(|j| j.session.as_str()).collect();
            for id in ids {
                let state = match &current {
                    Some(s) if s.id == id => lane.snapshot().state,
                    _ => {
                        settled = false;
                        "ended".to_owned()
                    }
                };
                left.push(LeftOpen {
                    lane: lane.id().clone(),
                    session: id.to_owned(),
                    state,
                });
            }
        }
        if settled || Instant::now() >= until {
            return left;
        }
        tokio::time::sleep(DRAIN_POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_phase_only_moves_forward() {
        let s = Shutdown::default();
        assert_eq!(s.phase(), Phase::Running);
        assert!(!s.is_draining());
        s.advance(Phase::Draining);
        assert!(s.is_draining() && !s.is_stopping());
        s.advance(Phase::Stopping);
        s.advance(Phase::Draining);
        assert_eq!(s.phase(), Phase::Stopping);
        // Already reached: resolves at once.
        s.reached(Phase::Draining).await;
    }

    #[tokio::test]
    async fn waiters_wake_when_the_phase_is_reached() {
        let s = Shutdown::default();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.reached(Phase::Stopping).await }
        });
        s.advance(Phase::Draining);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        s.advance(Phase::Stopping);
        waiter.await.expect("the waiter ends");
    }
}
