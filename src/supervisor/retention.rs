//! The journal's retention: every [`PRUNE_INTERVAL`] the journal records of sessions closed more
//! than `store.journal_retention` ago are deleted (and late enrollments resolved that long ago),
//! so phone numbers and consents do not stay in a store's database for ever.
//!
//! The work is done in bounded batches ([`PRUNE_BATCH`] sessions per transaction, at most
//! [`MAX_BATCHES_PER_RUN`] per run), so lanes' journal writes queued meanwhile wait for one
//! small transaction at most; a backlog (the first run after an upgrade) is worked off over
//! several runs. Open sessions are never pruned.

use std::time::Duration;

use chrono::Utc;

use crate::shutdown::{Phase, Shutdown};
use crate::store::{Pruned, Store, StoreError};

/// How often the journal is pruned.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60 * 60);
/// The first run waits this long after start, out of the way of recovery.
pub const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(60);
/// Sessions removed per transaction.
pub const PRUNE_BATCH: usize = 500;
/// Transactions per run: at most 10 000 sessions an hour.
pub const MAX_BATCHES_PER_RUN: usize = 20;

/// Starts the pruning task on the current actix system; it ends when lanehub starts stopping.
pub fn spawn(store: Store, retention: Duration, shutdown: Shutdown) {
    actix_web::rt::spawn(run(store, retention, shutdown));
}

/// Prunes every [`PRUNE_INTERVAL`], from [`FIRST_PRUNE_AFTER`] on, until lanehub starts stopping.
pub async fn run(store: Store, retention: Duration, shutdown: Shutdown) {
    let first = tokio::time::Instant::now() + FIRST_PRUNE_AFTER;
    let mut tick = tokio::time::interval_at(first, PRUNE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = shutdown.reached(Phase::Stopping) => return,
            _ = tick.tick() => {}
        }
        match prune_once(&store, retention, &shutdown).await {
            Ok(total) if total.sessions > 0 || total.late_enrollments > 0 => tracing::info!(
                sessions = total.sessions,
                records = total.records,
                late_enrollments = total.late_enrollments,
                "journal pruned past its retention"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "could not prune the journal; next time"),
        }
    }
}

/// One run: batches until none is full, [`MAX_BATCHES_PER_RUN`] is reached or lanehub stops.
async fn prune_once(
    store: &Store,
    retention: Duration,
    shutdown: &Shutdown,
) -> Result<Pruned, StoreError> {
    let closed_before = Utc::now() - chrono::Duration::from_std(retention).unwrap_or_default();
    let mut total = Pruned::default();
    for _ in 0..MAX_BATCHES_PER_RUN {
        let batch = store.prune(closed_before, PRUNE_BATCH).await?;
        total.sessions += batch.sessions;
        total.records += batch.records;
        total.late_enrollments += batch.late_enrollments;
        if !batch.is_full(PRUNE_BATCH) || shutdown.is_stopping() {
            break;
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LaneId;
    use serde_json::json;

    const RETENTION: Duration = Duration::from_secs(90 * 24 * 60 * 60);

    /// A session of two records, closed unless `open`.
    async fn session(store: &Store, name: &str, open: bool) {
        let lane: LaneId = "1".parse().unwrap();
        let phone = json!({"kind": "customer_identified", "msisdn": "4791234567"});
        store
            .append(&lane, name, "customer_identified", phone)
            .await
            .unwrap();
        if !open {
            store.close_session(&lane, name, "paid").await.unwrap();
        }
    }

    /// Dates a session's records `days_ago`, through a connection of its own as SQLite allows
    /// next to the store's. Sessions are dated in the order they were written: the journal's
    /// time order follows `seq`.
    fn date(store: &Store, name: &str, days_ago: i64) {
        let at = Utc::now() - chrono::Duration::days(days_ago);
        rusqlite::Connection::open(store.path())
            .unwrap()
            .execute(
                "UPDATE journal SET recorded_at = ?1 WHERE session = ?2",
                rusqlite::params![crate::store::format_time(&at), name],
            )
            .unwrap();
    }

    async fn kept(store: &Store, name: &str) -> usize {
        let lane: LaneId = "1".parse().unwrap();
        store.session_records(&lane, name).await.unwrap().len()
    }

    /// Lets the task take the tick that `advance` made due and queue its batch; a write queued
    /// after it on the store thread then returns only once the batch is done.
    async fn after_due_run(store: &Store) {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        store.put_setting("test.barrier", "x").await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn runs_hourly_prunes_only_closed_sessions_past_retention_and_stops_with_lanehub() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for (name, open) in [("old-closed", false), ("old-open", true), ("recent", false)] {
            session(&store, name, open).await;
        }
        date(&store, "old-closed", 120);
        date(&store, "old-open", 110);
        date(&store, "recent", 30);
        let shutdown = Shutdown::default();
        let task = tokio::spawn(run(store.clone(), RETENTION, shutdown.clone()));
        // The task starts its clock when it first runs.
        tokio::task::yield_now().await;

        tokio::time::advance(FIRST_PRUNE_AFTER).await;
        after_due_run(&store).await;
        assert_eq!(kept(&store, "old-closed").await, 0);
        assert_eq!(kept(&store, "old-open").await, 1, "open sessions stay");
        assert_eq!(kept(&store, "recent").await, 2);

        // Time passes: the recent session is past its retention by the next run.
        date(&store, "recent", 100);
        tokio::time::advance(PRUNE_INTERVAL).await;
        after_due_run(&store).await;
        assert_eq!(kept(&store, "recent").await, 0);
        assert_eq!(kept(&store, "old-open").await, 1);

        // No timeout: the paused clock jumps ahead while a batch is on the store thread.
        shutdown.advance(Phase::Stopping);
        task.await.expect("the task ends when lanehub stops");
    }

    #[tokio::test]
    async fn a_run_works_off_a_backlog_in_bounded_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        for i in 0..3 {
            session(&store, &format!("old-{i}"), false).await;
            date(&store, &format!("old-{i}"), 100);
        }
        let closed_before = Utc::now() - chrono::Duration::days(90);
        let first = store.prune(closed_before, 2).await.unwrap();
        assert_eq!((first.sessions, first.records), (2, 4));
        let total = prune_once(&store, RETENTION, &Shutdown::default())
            .await
            .unwrap();
        assert_eq!((total.sessions, total.records), (1, 2));
    }
}
