//! The supervisor: builds one actor per configured lane, notices at once when one dies (its
//! `DeathNotice` arrives on a channel), rebuilds it from its spec with its session recovered from
//! the journal, and marks it down past its restart budget. Other lanes never notice.
//!
//! A lane that stops while lanehub stops (see [`crate::shutdown`]) did not die: it is neither counted
//! nor rebuilt.

pub mod retention;

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use actix::{Actor, Arbiter, ArbiterHandle};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::domain::LaneId;
use crate::lane::{LaneActor, LaneDied, LaneSpec, Lanes};
use crate::metrics as m;
use crate::shutdown::Shutdown;

/// How many restarts a lane may have within `window` before it is marked down.
#[derive(Debug, Clone, Copy)]
pub struct RestartBudget {
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for RestartBudget {
    fn default() -> Self {
        RestartBudget {
            max_restarts: 5,
            window: Duration::from_secs(60),
        }
    }
}

struct Child {
    spec: LaneSpec,
    incarnation: u64,
    restarts: VecDeque<Instant>,
    arbiter: ArbiterHandle,
}

/// A running supervisor; dropping it does not stop the lanes.
pub struct Supervisor {
    lanes: Lanes,
    _arbiters: Vec<Arbiter>,
}

impl Supervisor {
    /// Starts every lane, spread over `threads` arbiters, and the task that watches them until
    /// `shutdown` reaches its stopping phase. Must run inside an actix system.
    pub fn start(
        specs: Vec<LaneSpec>,
        budget: RestartBudget,
        threads: usize,
        shutdown: Shutdown,
    ) -> Supervisor {
        let lanes = Lanes::default();
        let arbiters: Vec<Arbiter> = (0..threads.max(1)).map(|_| Arbiter::new()).collect();
        let (tx, rx) = mpsc::unbounded_channel::<LaneDied>();
        let mut children = HashMap::new();
        for (i, spec) in specs.into_iter().enumerate() {
            let lane = spec.handle.id().clone();
            lanes.insert(spec.handle.clone());
            m::init_lane(&lane);
            let arbiter = arbiters[i % arbiters.len()].handle();
            start_child(&spec, 1, &arbiter, tx.clone());
            children.insert(
                lane,
                Child {
                    spec,
                    incarnation: 1,
                    restarts: VecDeque::new(),
                    arbiter,
                },
            );
        }
        actix::spawn(watch(children, rx, tx, budget, shutdown));
        Supervisor {
            lanes,
            _arbiters: arbiters,
        }
    }

    pub fn lanes(&self) -> &Lanes {
        &self.lanes
    }
}

fn start_child(
    spec: &LaneSpec,
    incarnation: u64,
    arbiter: &ArbiterHandle,
    died: mpsc::UnboundedSender<LaneDied>,
) {
    let spec = spec.clone();
    LaneActor::start_in_arbiter(arbiter, move |_| LaneActor::new(spec, incarnation, died));
}

async fn watch(
    mut children: HashMap<LaneId, Child>,
    mut rx: mpsc::UnboundedReceiver<LaneDied>,
    tx: mpsc::UnboundedSender<LaneDied>,
    budget: RestartBudget,
    shutdown: Shutdown,
) {
    while let Some(died) = rx.recv().await {
        // Lanes stop with lanehub: that is no lane death, and nothing is rebuilt any more.
        if shutdown.is_stopping() {
            tracing::debug!(lane = %died.lane, "lane stopped with lanehub");
            continue;
        }
        let Some(child) = children.get_mut(&died.lane) else {
            continue;
        };
        // A notice from an incarnation already replaced is stale.
        if died.incarnation != child.incarnation {
            continue;
        }
        child.spec.handle.attach(None);
        let now = Instant::now();
        while child
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > budget.window)
        {
            child.restarts.pop_front();
        }
        if child.restarts.len() >= budget.max_restarts {
            tracing::error!(lane = %died.lane, reason = died.reason.as_str(), restarts = child.restarts.len(),
                "lane failed too often: marked down until lanehub restarts");
            continue;
        }
        child.restarts.push_back(now);
        child.incarnation += 1;
        m::lane_restarted(&died.lane, died.reason);
        tracing::warn!(lane = %died.lane, reason = died.reason.as_str(), incarnation = child.incarnation,
            "lane stopped: rebuilding it and recovering its session");
        start_child(&child.spec, child.incarnation, &child.arbiter, tx.clone());
    }
}
