//! Pruning what the store need not keep: the journal records of sessions closed longer ago than
//! `store.journal_retention`, and late enrollments resolved that long ago. Both hold personal
//! data (full phone numbers, names, consents), which must not live forever in a store's database.
//!
//! One call removes at most `max_sessions` sessions (and as many late enrollments), oldest first,
//! in one transaction, so the store thread is never held for long; the caller repeats it. Every
//! read goes through an index (`sessions_closed`, `journal_by_session`,
//! `late_enrollments_resolved`). Open sessions are never touched, however old: recovery needs them.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::error::Result;
use super::{atomically, format_time, journal};

/// What one pruning call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Closed sessions whose records were deleted.
    pub sessions: u64,
    /// Journal records deleted.
    pub records: u64,
    /// Resolved late enrollments deleted.
    pub late_enrollments: u64,
}

impl Pruned {
    /// True when the call removed as many as it was allowed to: more may be waiting.
    pub fn is_full(&self, max_sessions: usize) -> bool {
        self.sessions >= max_sessions as u64 || self.late_enrollments >= max_sessions as u64
    }
}

/// Deletes up to `max_sessions` sessions closed before `closed_before` with all their records,
/// and up to as many late enrollments resolved before it.
pub(crate) fn prune(
    conn: &mut Connection,
    closed_before: DateTime<Utc>,
    max_sessions: usize,
) -> Result<Pruned> {
    atomically(conn, |conn| prune_in(conn, closed_before, max_sessions))
}

fn prune_in(
    conn: &Connection,
    closed_before: DateTime<Utc>,
    max_sessions: usize,
) -> Result<Pruned> {
    let limit = i64::try_from(max_sessions).unwrap_or(i64::MAX);
    // Records are appended in time order: a session whose `closed` record is at or below this
    // `seq` was closed before the cut-off.
    let last_old_seq = i64::try_from(journal::seq_before(conn, closed_before)?).unwrap_or(i64::MAX);
    let sessions: Vec<(String, String)> = conn
        .prepare_cached(
            "SELECT lane, session FROM sessions
             WHERE closed_seq IS NOT NULL AND closed_seq <= ?1
             ORDER BY closed_seq LIMIT ?2",
        )?
        .query_map(params![last_old_seq, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut pruned = Pruned::default();
    let mut delete_records =
        conn.prepare_cached("DELETE FROM journal WHERE lane = ?1 AND session = ?2")?;
    let mut delete_session =
        conn.prepare_cached("DELETE FROM sessions WHERE lane = ?1 AND session = ?2")?;
    for (lane, session) in &sessions {
        pruned.records += delete_records.execute(params![lane, session])? as u64;
        pruned.sessions += delete_session.execute(params![lane, session])? as u64;
    }
    pruned.late_enrollments = conn
        .prepare_cached(
            "DELETE FROM late_enrollments WHERE auth_req_id IN (
                 SELECT auth_req_id FROM late_enrollments
                 WHERE outcome IS NOT NULL AND updated_at < ?1
                 ORDER BY updated_at LIMIT ?2)",
        )?
        .execute(params![format_time(&closed_before), limit])? as u64;
    Ok(pruned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::LaneId;
    use crate::store::late_enrollments::{self, LateEnrollmentHandover};
    use crate::store::schema::{self, OpenMode};
    use chrono::Duration;

    fn lane() -> LaneId {
        "1".parse().unwrap()
    }

    /// Writes a session of three records at `at`, closed unless `open`.
    fn session(conn: &mut Connection, name: &str, at: DateTime<Utc>, open: bool) {
        for kind in ["session_started", "customer_identified"] {
            journal::append(conn, &lane(), name, kind, r#"{"msisdn":"4791234567"}"#).unwrap();
        }
        if !open {
            journal::close(conn, &lane(), name, "paid").unwrap();
        }
        conn.execute(
            "UPDATE journal SET recorded_at = ?1 WHERE session = ?2",
            params![format_time(&at), name],
        )
        .unwrap();
    }

    fn records(conn: &Connection, name: &str) -> i64 {
        conn.query_row(
            "SELECT count(*) FROM journal WHERE session = ?1",
            [name],
            |r| r.get(0),
        )
        .unwrap()
    }

    #[test]
    fn closed_sessions_past_the_cut_off_go_and_everything_else_stays() {
        let (_dir, mut conn) = schema::scratch();
        let now = Utc::now();
        let old = now - Duration::days(100);
        session(&mut conn, "old-closed-1", old, false);
        session(&mut conn, "old-open", old + Duration::hours(1), true);
        session(&mut conn, "old-closed-2", old + Duration::hours(2), false);
        session(&mut conn, "old-closed-3", old + Duration::hours(3), false);
        session(&mut conn, "recent-closed", now - Duration::days(10), false);
        session(&mut conn, "recent-open", now - Duration::days(1), true);
        let cut_off = now - Duration::days(90);

        // Bounded: two sessions per call, oldest first.
        let first = prune(&mut conn, cut_off, 2).unwrap();
        assert_eq!(
            first,
            Pruned {
                sessions: 2,
                records: 6,
                late_enrollments: 0
            }
        );
        assert!(first.is_full(2));
        assert_eq!(records(&conn, "old-closed-1"), 0);
        assert_eq!(records(&conn, "old-closed-2"), 0);
        assert_eq!(records(&conn, "old-closed-3"), 3);
        let second = prune(&mut conn, cut_off, 2).unwrap();
        assert_eq!((second.sessions, second.records), (1, 3));
        assert!(!second.is_full(2));
        assert_eq!(prune(&mut conn, cut_off, 2).unwrap(), Pruned::default());

        assert_eq!(records(&conn, "old-closed-3"), 0);
        assert_eq!(
            records(&conn, "old-open"),
            2,
            "open sessions are recovered, never pruned"
        );
        assert_eq!(records(&conn, "recent-closed"), 3);
        assert_eq!(records(&conn, "recent-open"), 2);
        let open = journal::open_sessions(&conn, None).unwrap();
        let open: Vec<_> = open.iter().map(|s| s.session.as_str()).collect();
        assert_eq!(open, ["old-open", "recent-open"]);
        let sessions: i64 = conn
            .query_row("SELECT count(*) FROM sessions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sessions, 3);
    }

    #[test]
    fn pruned_records_leave_no_phone_number_behind_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut conn = schema::open(&path, OpenMode::Create).unwrap();
        let now = Utc::now();
        let phone = |i: usize| format!("4790{i:06}");
        // One transaction for the set-up: one fsync instead of 900.
        conn.execute_batch("BEGIN").unwrap();
        for i in 0..300 {
            let session = format!("s{i}");
            let payload = format!(r#"{{"msisdn":"{}","pad":"{}"}}"#, phone(i), "x".repeat(100));
            journal::append(
                &mut conn,
                &lane(),
                &session,
                "customer_identified",
                &payload,
            )
            .unwrap();
            journal::close(&mut conn, &lane(), &session, "paid").unwrap();
            // The first 250 closed 100 days ago, the rest yesterday.
            let at = if i < 250 {
                now - Duration::days(100)
            } else {
                now - Duration::days(1)
            };
            conn.execute(
                "UPDATE journal SET recorded_at = ?1 WHERE session = ?2",
                params![format_time(&at), session],
            )
            .unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
        while prune(&mut conn, now - Duration::days(90), 100)
            .unwrap()
            .sessions
            > 0
        {}
        // Closing checkpoints the WAL into the file and removes it.
        drop(conn);
        let file = std::fs::read(&path).unwrap();
        let file = String::from_utf8_lossy(&file);
        let found = |i: usize| file.contains(&phone(i));
        assert!((250..300).all(found), "the kept sessions are in the file");
        let left: Vec<usize> = (0..250).filter(|&i| found(i)).collect();
        assert!(
            left.is_empty(),
            "pruned phone numbers still in the file: {left:?}"
        );
    }

    #[test]
    fn resolved_late_enrollments_past_the_cut_off_go() {
        let (_dir, mut conn) = schema::scratch();
        let now = Utc::now();
        for id in ["old-resolved", "old-unresolved", "recent-resolved"] {
            let handover = LateEnrollmentHandover {
                auth_req_id: id.into(),
                lane: lane(),
                session: None,
                msisdn: Some("4791234567".parse().unwrap()),
                started_at: now,
                login_token: None,
                userinfo: None,
            };
            late_enrollments::hand_over(&conn, &handover, true).unwrap();
        }
        late_enrollments::resolve(&conn, "old-resolved", "expired", false).unwrap();
        late_enrollments::resolve(&conn, "recent-resolved", "expired", false).unwrap();
        conn.execute(
            "UPDATE late_enrollments SET updated_at = ?1 WHERE auth_req_id LIKE 'old-%'",
            [format_time(&(now - Duration::days(100)))],
        )
        .unwrap();
        let pruned = prune(&mut conn, now - Duration::days(90), 10).unwrap();
        assert_eq!(pruned.late_enrollments, 1);
        assert!(
            late_enrollments::get(&conn, "old-resolved")
                .unwrap()
                .is_none()
        );
        assert!(
            late_enrollments::get(&conn, "old-unresolved")
                .unwrap()
                .is_some()
        );
        assert!(
            late_enrollments::get(&conn, "recent-resolved")
                .unwrap()
                .is_some()
        );
    }
}
