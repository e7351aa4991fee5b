//! The session journal: append-only records per (lane, session), read back to recover lanes.
//!
//! Invariants: `seq` is one strictly increasing counter over the whole journal (never reused),
//! so records of a session are ordered by it; a session is open from its first record until its
//! terminal `closed` record, after which nothing more may be appended to it. These functions run
//! on the store thread with the connection; `Store` is the async front.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::de::DeserializeOwned;

use super::error::{Result, StoreError};
use super::{atomically, check_label, check_session, format_time, parse_time, rows};
use crate::domain::LaneId;

/// The kind of the terminal record written by `close_session`.
pub const CLOSED_KIND: &str = "closed";

/// One journal record as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalRecord {
    pub seq: u64,
    pub lane: LaneId,
    pub session: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl JournalRecord {
    /// Decodes the payload into the type the session state machine wrote.
    pub fn payload_as<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.payload).map_err(|e| {
            StoreError::corrupt(
                "journal payload",
                format!("record {} ({}): {e}", self.seq, self.kind),
            )
        })
    }

    /// True for the terminal record of a session.
    pub fn is_closed(&self) -> bool {
        self.kind == CLOSED_KIND
    }
}

/// The records of one session, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionJournal {
    pub lane: LaneId,
    pub session: String,
    pub records: Vec<JournalRecord>,
}

/// Appends a record; returns its `seq`. Atomic on its own or inside the store's batch. A
/// session's userinfo record erases the Login token of its enrollment's consent in the same
/// transaction: from then on the token is not needed, and a secret kept is a secret to leak.
pub(crate) fn append(
    conn: &mut Connection,
    lane: &LaneId,
    session: &str,
    kind: &str,
    payload: &str,
) -> Result<u64> {
    check_write(session, "record kind", kind)?;
    if kind == CLOSED_KIND {
        return Err(StoreError::invalid(
            "record kind",
            "`closed` is written by close_session only",
        ));
    }
    atomically(conn, |conn| {
        let seq = insert(conn, lane, session, kind, payload, None)?;
        if kind == USERINFO_KIND {
            erase_login_tokens(conn, lane, session, Enrollment::Latest)?;
        }
        Ok(seq)
    })
}

/// The session state machine's record kinds (`session::JournalRecord::kind`) that the token
/// erasure reads, with their payload fields `auth_req_id` and `login_token`; a test in this
/// module pins them to the session's own names.
const STARTED_KIND: &str = "enrollment_started";
const CONSENTED_KIND: &str = "enrollment_consented";
const USERINFO_KIND: &str = "enrollment_userinfo";

/// Which enrollment of a session a token erasure is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Enrollment<'a> {
    /// The session's latest (a session follows one enrollment at a time).
    Latest,
    /// The one whose Login has this `auth_req_id`.
    Login(&'a str),
}

/// Removes `login_token` from the consent records of one enrollment of a session (the records
/// after its `enrollment_started` and before the next one); returns how many were changed.
/// Reads only the session's own records, through `journal_by_session`.
pub(crate) fn erase_login_tokens(
    conn: &Connection,
    lane: &LaneId,
    session: &str,
    enrollment: Enrollment<'_>,
) -> Result<usize> {
    let auth_req_id = match enrollment {
        Enrollment::Latest => None,
        Enrollment::Login(id) => Some(id),
    };
    let n = conn
        .prepare_cached(
            "WITH started AS (
                 SELECT seq, json_extract(payload, '$.auth_req_id') AS login FROM journal
                 WHERE lane = ?1 AND session = ?2 AND kind = ?3
             ), this AS (
                 SELECT CASE WHEN ?5 IS NULL THEN (SELECT max(seq) FROM started)
                        ELSE (SELECT min(seq) FROM started WHERE login = ?5) END AS seq
             )
             UPDATE journal SET payload = json_remove(payload, '$.login_token')
             WHERE lane = ?1 AND session = ?2 AND kind = ?4
               AND json_extract(payload, '$.login_token') IS NOT NULL
               AND seq > (SELECT seq FROM this)
               AND seq < coalesce(
                   (SELECT min(seq) FROM started WHERE seq > (SELECT seq FROM this)),
                   9223372036854775807)",
        )?
        .execute(params![
            lane.as_str(),
            session,
            STARTED_KIND,
            CONSENTED_KIND,
            auth_req_id
        ])?;
    Ok(n)
}

/// Appends the terminal `closed` record with `{"outcome": outcome}`; returns its `seq`.
pub(crate) fn close(
    conn: &mut Connection,
    lane: &LaneId,
    session: &str,
    outcome: &str,
) -> Result<u64> {
    check_write(session, "session outcome", outcome)?;
    let payload = serde_json::json!({ "outcome": outcome }).to_string();
    atomically(conn, |conn| {
        insert(conn, lane, session, CLOSED_KIND, &payload, Some(outcome))
    })
}

/// What a write checks first: the session id, then its label (a record kind or a session
/// outcome, at most 32 characters).
fn check_write(session: &str, what: &'static str, label: &str) -> Result<()> {
    check_session(session)?;
    check_label(what, label, 32)
}

fn insert(
    conn: &Connection,
    lane: &LaneId,
    session: &str,
    kind: &str,
    payload: &str,
    closing: Option<&str>,
) -> Result<u64> {
    let closed: Option<Option<i64>> = conn
        .prepare_cached("SELECT closed_seq FROM sessions WHERE lane = ?1 AND session = ?2")?
        .query_row(params![lane.as_str(), session], |r| r.get(0))
        .optional()?;
    if let Some(Some(_)) = closed {
        return Err(StoreError::SessionClosed {
            lane: lane.to_string(),
            session: session.to_owned(),
        });
    }
    let seq = conn
        .prepare_cached(
            "INSERT INTO journal (lane, session, kind, payload, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .insert(params![
            lane.as_str(),
            session,
            kind,
            payload,
            format_time(&Utc::now())
        ])?;
    if closed.is_none() {
        conn.prepare_cached(
            "INSERT INTO sessions (lane, session, opened_seq) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![lane.as_str(), session, seq])?;
    }
    if let Some(outcome) = closing {
        conn.prepare_cached(
            "UPDATE sessions SET closed_seq = ?3, outcome = ?4 WHERE lane = ?1 AND session = ?2",
        )?
        .execute(params![lane.as_str(), session, seq, outcome])?;
    }
    to_seq(seq)
}

/// Every record of one session, oldest first (empty if the session is unknown).
pub(crate) fn session_records(
    conn: &Connection,
    lane: &LaneId,
    session: &str,
) -> Result<Vec<JournalRecord>> {
    let sql = "SELECT seq, lane, session, kind, payload, recorded_at FROM journal
               WHERE lane = ?1 AND session = ?2 ORDER BY seq";
    rows::query(conn, sql, params![lane.as_str(), session], record)
}

/// The sessions without a `closed` record, of one lane or of all lanes, each with its records.
pub(crate) fn open_sessions(
    conn: &Connection,
    lane: Option<&LaneId>,
) -> Result<Vec<SessionJournal>> {
    let mut stmt = conn.prepare_cached(
        "SELECT j.seq, j.lane, j.session, j.kind, j.payload, j.recorded_at
         FROM sessions s JOIN journal j ON j.lane = s.lane AND j.session = s.session
         WHERE s.closed_seq IS NULL AND (?1 IS NULL OR s.lane = ?1)
         ORDER BY s.opened_seq, j.seq",
    )?;
    let mut out: Vec<SessionJournal> = Vec::new();
    for record in stmt.query_and_then(params![lane.map(LaneId::as_str)], record)? {
        let record = record?;
        match out.last_mut() {
            Some(s) if s.lane == record.lane && s.session == record.session => {
                s.records.push(record)
            }
            _ => out.push(SessionJournal {
                lane: record.lane.clone(),
                session: record.session.clone(),
                records: vec![record],
            }),
        }
    }
    Ok(out)
}

/// The `seq` just before the first record written at or after `since` (0 if there is none
/// before it). Records are appended in time order, so a binary search over `seq` finds it in a
/// few indexed reads however long the journal is.
pub(crate) fn seq_before(conn: &Connection, since: DateTime<Utc>) -> Result<u64> {
    let mut at = conn.prepare_cached(
        "SELECT seq, recorded_at FROM journal WHERE seq >= ?1 ORDER BY seq LIMIT 1",
    )?;
    let mut first_at = |seq: i64| -> Result<Option<(i64, DateTime<Utc>)>> {
        at.query_row([seq], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .optional()?
            .map(|(seq, raw)| Ok((seq, parse_time("journal recorded_at", &raw)?)))
            .transpose()
    };
    let high: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM journal")?
        .query_row([], |r| r.get(0))?;
    // Invariant: every record up to `low` is older than `since`; `high + 1` is not.
    let (mut low, mut high) = (0i64, high + 1);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        match first_at(mid)? {
            Some((seq, t)) if t < since => low = seq.max(mid),
            _ => high = mid,
        }
    }
    to_seq(low)
}

/// The records of `kind` with a `seq` above `after`, oldest first, and the highest `seq` of the
/// whole journal when read. Writes commit in `seq` order, so a later call with that `seq` as
/// `after` misses none.
pub(crate) fn records_of_kind_since(
    conn: &Connection,
    kind: &str,
    after: u64,
) -> Result<(u64, Vec<JournalRecord>)> {
    let after = i64::try_from(after)
        .map_err(|_| StoreError::invalid("journal seq", format!("{after} is too large")))?;
    let high: i64 = conn
        .prepare_cached("SELECT coalesce(max(seq), 0) FROM journal")?
        .query_row([], |r| r.get(0))?;
    let sql = "SELECT seq, lane, session, kind, payload, recorded_at FROM journal
               WHERE seq > ?1 AND seq <= ?2 AND kind = ?3 ORDER BY seq";
    let records = rows::query(conn, sql, params![after, high, kind], record)?;
    Ok((to_seq(high)?, records))
}

fn record(row: &Row<'_>) -> Result<JournalRecord> {
    let seq: i64 = row.get(0)?;
    Ok(JournalRecord {
        seq: to_seq(seq)?,
        lane: rows::parsed(row, 1, "journal lane")?,
        session: row.get(2)?,
        kind: row.get(3)?,
        payload: serde_json::from_str(&row.get::<_, String>(4)?)
            .map_err(|e| StoreError::corrupt("journal payload", format!("record {seq}: {e}")))?,
        recorded_at: rows::time(row, 5, "journal timestamp")?,
    })
}

fn to_seq(seq: i64) -> Result<u64> {
    u64::try_from(seq).map_err(|_| StoreError::corrupt("journal seq", format!("{seq} < 0")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::scratch;

    fn lane(s: &str) -> LaneId {
        s.parse().unwrap()
    }

    #[test]
    fn records_come_back_in_order_and_close_ends_the_session() {
        let (_dir, mut conn) = scratch();
        let l1 = lane("lane-1");
        let a = append(&mut conn, &l1, "s1", "started", r#"{"n":1}"#).unwrap();
        let b = append(&mut conn, &lane("lane-2"), "s1", "started", "{}").unwrap();
        let c = append(&mut conn, &l1, "s1", "scanned", r#"{"n":2}"#).unwrap();
        assert!(a < b && b < c);
        let records = session_records(&conn, &l1, "s1").unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![a, c]
        );
        assert_eq!(records[1].payload, serde_json::json!({"n": 2}));

        let open = open_sessions(&conn, Some(&l1)).unwrap();
        assert_eq!(open.len(), 1);
        assert_eq!(open[0].records.len(), 2);
        assert_eq!(open_sessions(&conn, None).unwrap().len(), 2);

        let closed = close(&mut conn, &l1, "s1", "paid").unwrap();
        assert!(closed > c);
        assert!(open_sessions(&conn, Some(&l1)).unwrap().is_empty());
        assert_eq!(open_sessions(&conn, None).unwrap().len(), 1);
        let last = session_records(&conn, &l1, "s1").unwrap().pop().unwrap();
        assert!(last.is_closed());
        assert_eq!(last.payload, serde_json::json!({"outcome": "paid"}));

        let err = append(&mut conn, &l1, "s1", "late", "{}").unwrap_err();
        assert_eq!(err.kind(), "session_closed");
        let err = close(&mut conn, &l1, "s1", "paid").unwrap_err();
        assert_eq!(err.kind(), "session_closed");
    }

    #[test]
    fn seq_before_finds_the_last_record_older_than_a_time_by_binary_search() {
        let (_dir, mut conn) = scratch();
        let l = lane("1");
        let base = Utc::now() - chrono::Duration::hours(1);
        let mut seqs = vec![];
        for minute in 0..50 {
            let seq = append(&mut conn, &l, &format!("s{minute}"), "k", "{}").unwrap();
            let at = format_time(&(base + chrono::Duration::minutes(minute)));
            conn.execute(
                "UPDATE journal SET recorded_at = ?1 WHERE seq = ?2",
                params![at, seq as i64],
            )
            .unwrap();
            seqs.push(seq);
        }
        // Gaps in `seq` (as after a rolled-back batch) change nothing.
        conn.execute("DELETE FROM journal WHERE seq = ?1", [seqs[20] as i64])
            .unwrap();
        let before = |minutes: i64| seq_before(&conn, base + chrono::Duration::minutes(minutes));
        assert_eq!(
            before(0).unwrap(),
            0,
            "nothing is older than the first record"
        );
        assert_eq!(before(10).unwrap(), seqs[9]);
        assert_eq!(before(21).unwrap(), seqs[19], "record 20 is gone");
        assert_eq!(before(49).unwrap(), seqs[48]);
        assert_eq!(before(60).unwrap(), seqs[49], "every record is older");
        let (_empty_dir, empty) = scratch();
        assert_eq!(seq_before(&empty, Utc::now()).unwrap(), 0);
    }

    /// Writes `record` as the session state machine does: its kind, the record as JSON.
    fn write(conn: &mut Connection, session: &str, record: &crate::session::JournalRecord) -> u64 {
        let payload = serde_json::to_string(record).unwrap();
        append(conn, &lane("1"), session, record.kind(), &payload).unwrap()
    }

    fn started(auth_req_id: &str) -> crate::session::JournalRecord {
        crate::session::JournalRecord::EnrollmentStarted {
            msisdn: "4798765432".parse().unwrap(),
            auth_req_id: auth_req_id.into(),
        }
    }

    fn consented(token: &str) -> crate::session::JournalRecord {
        crate::session::JournalRecord::EnrollmentConsented {
            login_token: Some(crate::session::LoginAccessToken::new(token.into())),
        }
    }

    fn userinfo() -> crate::session::JournalRecord {
        crate::session::JournalRecord::EnrollmentUserinfo {
            userinfo: crate::session::Userinfo {
                name: Some("Kari".into()),
                email: None,
                phone_number: None,
                consents: vec![],
            },
        }
    }

    /// The stored payloads of a session's consent records, as the file holds them.
    fn consent_payloads(conn: &Connection, session: &str) -> Vec<String> {
        conn.prepare("SELECT payload FROM journal WHERE session = ?1 AND kind = ?2 ORDER BY seq")
            .unwrap()
            .query_map(params![session, CONSENTED_KIND], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    #[test]
    fn the_session_state_machine_uses_the_kinds_the_erasure_reads() {
        assert_eq!(started("a").kind(), STARTED_KIND);
        assert_eq!(consented("t").kind(), CONSENTED_KIND);
        assert_eq!(userinfo().kind(), USERINFO_KIND);
        let json = serde_json::to_value(consented("t")).unwrap();
        assert_eq!(json["login_token"], "t");
        assert_eq!(
            serde_json::to_value(started("a")).unwrap()["auth_req_id"],
            "a"
        );
    }

    #[test]
    fn userinfo_erases_the_token_of_its_own_enrollment_only() {
        let (_dir, mut conn) = scratch();
        // An earlier enrollment of the session that was given up with its token: the
        // enrollment follower still needs that one.
        write(&mut conn, "s1", &started("first"));
        write(&mut conn, "s1", &consented("first-token"));
        // Another session's consent is none of this session's business.
        write(&mut conn, "s2", &started("other"));
        write(&mut conn, "s2", &consented("other-token"));
        write(&mut conn, "s1", &started("second"));
        write(&mut conn, "s1", &consented("second-token"));
        write(&mut conn, "s1", &userinfo());

        let s1 = consent_payloads(&conn, "s1");
        assert!(s1[0].contains("first-token"), "{s1:?}");
        assert!(!s1[1].contains("second-token"), "{s1:?}");
        assert!(consent_payloads(&conn, "s2")[0].contains("other-token"));
        // The record stays, and reads back as a consent whose token was erased.
        let records = session_records(&conn, &lane("1"), "s1").unwrap();
        let erased: crate::session::JournalRecord = records[3].payload_as().unwrap();
        assert_eq!(
            erased,
            crate::session::JournalRecord::EnrollmentConsented { login_token: None }
        );

        // The follower took the first enrollment over: its copy goes too.
        let n = erase_login_tokens(&conn, &lane("1"), "s1", Enrollment::Login("first")).unwrap();
        assert_eq!(n, 1);
        assert!(
            consent_payloads(&conn, "s1")
                .iter()
                .all(|p| !p.contains("token"))
        );
        let n = erase_login_tokens(&conn, &lane("1"), "s1", Enrollment::Login("unknown")).unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn bad_arguments_are_refused() {
        let (_dir, mut conn) = scratch();
        let l = lane("l");
        for (session, kind) in [("", "k"), ("s 1", "k"), ("s", ""), ("s", "has space")] {
            let err = append(&mut conn, &l, session, kind, "{}").unwrap_err();
            assert_eq!(err.kind(), "invalid_input", "{session:?} {kind:?}");
        }
        let err = append(&mut conn, &l, "s", CLOSED_KIND, "{}").unwrap_err();
        assert!(err.to_string().contains("close_session"), "{err}");
        assert!(session_records(&conn, &l, "s").unwrap().is_empty());
    }

    #[test]
    fn payload_as_decodes_or_names_the_record() {
        let (_dir, mut conn) = scratch();
        let l = lane("l");
        append(&mut conn, &l, "s", "amount", r#"{"value":5}"#).unwrap();
        let r = &session_records(&conn, &l, "s").unwrap()[0];
        #[derive(serde::Deserialize)]
        struct V {
            value: u64,
        }
        assert_eq!(r.payload_as::<V>().unwrap().value, 5);
        let err = r.payload_as::<Vec<u8>>().unwrap_err();
        assert_eq!(err.kind(), "corrupt");
        assert!(err.to_string().contains("amount"), "{err}");
    }
}
