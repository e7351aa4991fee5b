//! The CRM outbox: enrollments waiting to be delivered to the merchant's CRM
//! (`members.provider = "http"`).
//!
//! An enrollment is written here, in the same durable SQLite file as the journal, before the
//! cashier is told "enrolled"; the delivery task (`members::crm`) sends entries oldest first and
//! deletes each once the CRM has accepted it. An entry the CRM refused for good stays, marked
//! refused, until the operator retries it (`lanehub members outbox retry`).

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};

use super::error::{Result, StoreError};
use super::{Store, format_time, parse_time, rows};
use crate::domain::Msisdn;

/// The longest error text kept with an entry.
const MAX_ERROR: usize = 500;

/// One enrollment waiting for (or refused by) the CRM.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub phone_number: Msisdn,
    /// The body of the CRM's `PUT /members/{phoneNumber}`.
    pub body: serde_json::Value,
    /// Sent as `Idempotency-Key`, the same on every attempt.
    pub idempotency_key: String,
    pub created_at: DateTime<Utc>,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    /// Set when the CRM refused the entry for good.
    pub refused_at: Option<DateTime<Utc>>,
}

/// What follows an attempt that did not deliver an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// The attempt failed; the entry is tried again at this time.
    RetryAt(DateTime<Utc>),
    /// The CRM refused the entry for good (at this time): kept, marked refused.
    RefusedAt(DateTime<Utc>),
}

/// The outbox at a glance, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxStats {
    /// Entries waiting for delivery (not refused).
    pub waiting: u64,
    pub refused: u64,
    /// When the oldest waiting entry was written.
    pub oldest: Option<DateTime<Utc>>,
}

/// The columns `entry` reads, then the rest of the query; a macro so `concat!` builds each
/// query at compile time.
macro_rules! select_outbox {
    ($tail:literal) => {
        concat!(
            "SELECT id, phone_number, body, idempotency_key, created_at, attempts, next_attempt_at,
                    last_error, refused_at
             FROM crm_outbox",
            $tail
        )
    };
}

fn entry(row: &Row<'_>) -> Result<OutboxEntry> {
    Ok(OutboxEntry {
        id: row.get(0)?,
        phone_number: rows::parsed(row, 1, "outbox phone number")?,
        body: rows::json(row, 2, "outbox body")?,
        idempotency_key: row.get(3)?,
        created_at: rows::time(row, 4, "outbox created_at")?,
        attempts: u32::try_from(row.get::<_, i64>(5)?)
            .map_err(|e| StoreError::corrupt("outbox attempts", e))?,
        next_attempt_at: rows::time(row, 6, "outbox next_attempt_at")?,
        last_error: row.get(7)?,
        refused_at: rows::time_opt(row, 8, "outbox refused_at")?,
    })
}

pub(crate) fn push(
    conn: &Connection,
    phone: &Msisdn,
    body: &serde_json::Value,
    key: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    conn.prepare_cached(
        "INSERT INTO crm_outbox (phone_number, body, idempotency_key, created_at, attempts,
                                 next_attempt_at)
         VALUES (?1, ?2, ?3, ?4, 0, ?4)",
    )?
    .execute(params![
        phone.as_str(),
        serde_json::to_string(body)?,
        key,
        format_time(&now)
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The oldest entry waiting for delivery: entries go out in the order they were written.
pub(crate) fn head(conn: &Connection) -> Result<Option<OutboxEntry>> {
    let sql = select_outbox!(" WHERE refused_at IS NULL ORDER BY id LIMIT 1");
    rows::query(conn, sql, [], entry)
}

/// The newest entry for this phone number still waiting for delivery.
pub(crate) fn waiting_for(conn: &Connection, phone: &Msisdn) -> Result<Option<OutboxEntry>> {
    let sql =
        select_outbox!(" WHERE refused_at IS NULL AND phone_number = ?1 ORDER BY id DESC LIMIT 1");
    rows::query(conn, sql, [phone.as_str()], entry)
}

pub(crate) fn list(conn: &Connection) -> Result<Vec<OutboxEntry>> {
    rows::query(conn, select_outbox!(" ORDER BY id"), [], entry)
}

pub(crate) fn delivered(conn: &Connection, id: i64) -> Result<()> {
    conn.prepare_cached("DELETE FROM crm_outbox WHERE id = ?1")?
        .execute([id])?;
    Ok(())
}

fn clip(error: &str) -> String {
    error.chars().take(MAX_ERROR).collect()
}

/// Counts an attempt that did not deliver entry `id` and keeps its error; `then` says whether
/// it is tried again or kept as refused.
pub(crate) fn undelivered(
    conn: &Connection,
    id: i64,
    error: &str,
    then: Undelivered,
) -> Result<()> {
    let (next, refused) = match then {
        Undelivered::RetryAt(next) => (Some(next), None),
        Undelivered::RefusedAt(now) => (None, Some(now)),
    };
    conn.prepare_cached(
        "UPDATE crm_outbox SET attempts = attempts + 1, last_error = ?2,
                               next_attempt_at = coalesce(?3, next_attempt_at),
                               refused_at = coalesce(?4, refused_at)
         WHERE id = ?1",
    )?
    .execute(params![
        id,
        clip(error),
        next.as_ref().map(format_time),
        refused.as_ref().map(format_time)
    ])?;
    Ok(())
}

/// Makes refused entries (one, or all with `None`) wait for delivery again, due at once, as are
/// waiting entries in backoff. Returns how many entries it touched.
pub(crate) fn retry(conn: &Connection, id: Option<i64>, now: DateTime<Utc>) -> Result<u64> {
    let n = conn
        .prepare_cached(
            "UPDATE crm_outbox SET refused_at = NULL, next_attempt_at = ?2
             WHERE ?1 IS NULL OR id = ?1",
        )?
        .execute(params![id, format_time(&now)])?;
    if let (Some(id), 0) = (id, n) {
        return Err(StoreError::invalid(
            "outbox entry",
            format!("there is no entry {id}; `lanehub members outbox` lists them"),
        ));
    }
    Ok(n as u64)
}

pub(crate) fn stats(conn: &Connection) -> Result<OutboxStats> {
    let (waiting, refused, oldest): (i64, i64, Option<String>) = conn
        .prepare_cached(
            "SELECT count(*) FILTER (WHERE refused_at IS NULL),
                    count(*) FILTER (WHERE refused_at IS NOT NULL),
                    min(created_at) FILTER (WHERE refused_at IS NULL)
             FROM crm_outbox",
        )?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(OutboxStats {
        waiting: waiting.unsigned_abs(),
        refused: refused.unsigned_abs(),
        oldest: oldest
            .map(|t| parse_time("outbox created_at", &t))
            .transpose()?,
    })
}

impl Store {
    /// Writes an enrollment for the CRM; once this returns it survives a restart.
    pub fn outbox_push(
        &self,
        phone: Msisdn,
        body: serde_json::Value,
        idempotency_key: String,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<i64>> + Send + 'static {
        self.call(move |conn| push(conn, &phone, &body, &idempotency_key, now))
    }

    /// The oldest entry waiting for delivery.
    pub fn outbox_head(
        &self,
    ) -> impl Future<Output = Result<Option<OutboxEntry>>> + Send + 'static {
        self.read(head)
    }

    /// The newest entry for `phone` waiting for delivery.
    pub fn outbox_waiting_for(
        &self,
        phone: &Msisdn,
    ) -> impl Future<Output = Result<Option<OutboxEntry>>> + Send + 'static {
        let phone = phone.clone();
        self.read(move |conn| waiting_for(conn, &phone))
    }

    /// Every entry, waiting and refused, oldest first.
    pub fn outbox(&self) -> impl Future<Output = Result<Vec<OutboxEntry>>> + Send + 'static {
        self.read(list)
    }

    /// The CRM accepted the entry: it is deleted.
    pub fn outbox_delivered(&self, id: i64) -> impl Future<Output = Result<()>> + Send + 'static {
        self.call(move |conn| delivered(conn, id))
    }

    /// An attempt did not deliver the entry: it is tried again or kept as refused.
    pub fn outbox_undelivered(
        &self,
        id: i64,
        error: String,
        then: Undelivered,
    ) -> impl Future<Output = Result<()>> + Send + 'static {
        self.call(move |conn| undelivered(conn, id, &error, then))
    }

    /// Counts for the outbox metrics.
    pub fn outbox_stats(&self) -> impl Future<Output = Result<OutboxStats>> + Send + 'static {
        self.read(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    #[test]
    fn entries_go_out_oldest_first_and_refused_ones_wait_for_a_retry() {
        let (_dir, conn) = schema::scratch();
        let now: DateTime<Utc> = "2025-01-01T10:00:00Z".parse().unwrap();
        let kari: Msisdn = "4791234567".parse().unwrap();
        let ola: Msisdn = "4798765432".parse().unwrap();
        let first = push(&conn, &kari, &serde_json::json!({"n": 1}), "k1", now).unwrap();
        let second = push(&conn, &ola, &serde_json::json!({"n": 2}), "k2", now).unwrap();
        assert_eq!(head(&conn).unwrap().unwrap().id, first);
        undelivered(&conn, first, "503", Undelivered::RetryAt(now)).unwrap();
        let entry = head(&conn).unwrap().unwrap();
        assert_eq!((entry.id, entry.attempts), (first, 1));
        assert_eq!(entry.last_error.as_deref(), Some("503"));
        undelivered(&conn, first, "422", Undelivered::RefusedAt(now)).unwrap();
        assert_eq!(head(&conn).unwrap().unwrap().id, second);
        assert_eq!(waiting_for(&conn, &kari).unwrap(), None);
        assert_eq!(waiting_for(&conn, &ola).unwrap().unwrap().id, second);
        let s = stats(&conn).unwrap();
        assert_eq!((s.waiting, s.refused, s.oldest), (1, 1, Some(now)));
        delivered(&conn, second).unwrap();
        assert_eq!(head(&conn).unwrap(), None);
        assert!(retry(&conn, Some(99), now).is_err());
        assert_eq!(retry(&conn, Some(first), now).unwrap(), 1);
        let entry = head(&conn).unwrap().unwrap();
        assert_eq!((entry.id, entry.refused_at), (first, None));
        assert_eq!(list(&conn).unwrap().len(), 1);
    }
}
