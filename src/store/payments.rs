//! The payments index and the idempotency keys of Vipps requests.
//!
//! A payment is recorded before its create request is sent and its last known state is updated
//! as answers and webhooks arrive, so the refund endpoint and recovery find every reference.
//! An idempotency key is stored before its request is sent, so a restart reuses the same key
//! and never issues a second payment, capture or refund.
//!
//! Each write issues one statement after its checks, so it is atomic without a savepoint of its
//! own; a `Store` job of several writes is made atomic by the job's savepoint.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, params};
use strum::{IntoStaticStr, VariantArray};

use super::error::{Result, StoreError};
use super::{check_label, check_session, format_time, rows};
use crate::domain::{Amount, IdempotencyKey, LaneId, PaymentReference};

/// The states the payments index records: Vipps' own, and two of lanehub's for a payment Vipps
/// never confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, IntoStaticStr, strum::Display, VariantArray)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentIndexState {
    /// Asked for, its create not yet confirmed by Vipps (the first state of every payment).
    Requested,
    /// Vipps still did not know the reference when the unconfirmed-payment watch gave up.
    NotCreated,
    Created,
    Authorized,
    Aborted,
    Expired,
    Terminated,
}

impl PaymentIndexState {
    pub const ALL: &[PaymentIndexState] = <Self as VariantArray>::VARIANTS;

    /// The name stored in the index; Vipps' states keep Vipps' names.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::str::FromStr for PaymentIndexState {
    type Err = crate::domain::InvalidValue;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| crate::domain::InvalidValue {
                what: "payment state",
                reason: format!("`{s}` is none of the states the payments index records"),
            })
    }
}

/// A payment as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentRecord {
    pub reference: PaymentReference,
    pub lane: LaneId,
    pub session: String,
    pub amount: Amount,
    /// The last known state. Text in the file that names none of the states is refused as
    /// corrupt when read: lanehub never wrote any other.
    pub state: PaymentIndexState,
    /// Minor units captured so far (from the payment's `aggregate`).
    pub captured: u64,
    /// Minor units refunded so far.
    pub refunded: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A change to a recorded payment; `None` keeps the stored value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentUpdate {
    pub state: Option<PaymentIndexState>,
    pub captured: Option<u64>,
    pub refunded: Option<u64>,
}

impl PaymentUpdate {
    /// An update of the state alone.
    pub fn state(state: PaymentIndexState) -> Self {
        Self {
            state: Some(state),
            ..Self::default()
        }
    }

    /// Whether applying it would change `payment`'s row.
    pub fn changes(&self, payment: &PaymentRecord) -> bool {
        self.state.is_some_and(|s| s != payment.state)
            || self.captured.is_some_and(|c| c != payment.captured)
            || self.refunded.is_some_and(|r| r != payment.refunded)
    }
}

/// A payment to record together with the journal record that requests it
/// (`Store::append_with`); lane and session are the record's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    pub reference: PaymentReference,
    pub amount: Amount,
    /// The first known state, [`PaymentIndexState::Requested`] for a payment lanehub creates.
    pub state: PaymentIndexState,
}

/// An idempotency key to store together with the journal record of its request
/// (`Store::append_with`); lane and session are the record's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewIdempotencyKey {
    /// The operation the key guards, e.g. `create` or `capture_requested`.
    pub operation: String,
    pub key: IdempotencyKey,
    pub reference: Option<PaymentReference>,
}

/// The columns `payment_row` reads; a macro so `concat!` builds each query at compile time.
macro_rules! select_payments {
    () => {
        "SELECT reference, lane, session, currency, amount_minor, state,
                captured_minor, refunded_minor, created_at, updated_at
         FROM payments"
    };
}

/// Records a new payment; recording the same reference again with the same details is a no-op.
pub(crate) fn record_payment(
    conn: &Connection,
    reference: &PaymentReference,
    lane: &LaneId,
    session: &str,
    amount: Amount,
    state: PaymentIndexState,
) -> Result<()> {
    check_session(session)?;
    let value = to_sql_amount(amount.value)?;
    if let Some(existing) = select(conn, reference)? {
        if existing.lane == *lane && existing.session == session && existing.amount == amount {
            return Ok(());
        }
        return Err(StoreError::PaymentConflict {
            reference: reference.to_string(),
        });
    }
    let now = format_time(&Utc::now());
    conn.prepare_cached(
        "INSERT INTO payments (reference, lane, session, currency, amount_minor, state,
                               created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
    )?
    .execute(params![
        reference.as_str(),
        lane.as_str(),
        session,
        amount.currency.as_str(),
        value,
        state.as_str(),
        now
    ])?;
    Ok(())
}

/// Applies `update` and returns the payment as stored afterwards. An update that changes
/// nothing writes nothing (`updated_at` stays): most answers and webhooks repeat what the index
/// already holds, and a write would cost the store a sync for nothing.
pub(crate) fn update_payment(
    conn: &Connection,
    reference: &PaymentReference,
    update: &PaymentUpdate,
) -> Result<PaymentRecord> {
    let unknown = || StoreError::UnknownPayment {
        reference: reference.to_string(),
    };
    let stored = select(conn, reference)?.ok_or_else(unknown)?;
    if !update.changes(&stored) {
        return Ok(stored);
    }
    let updated = PaymentRecord {
        state: update.state.unwrap_or(stored.state),
        captured: update.captured.unwrap_or(stored.captured),
        refunded: update.refunded.unwrap_or(stored.refunded),
        updated_at: Utc::now(),
        ..stored
    };
    // The row was read in this same transaction on the store's only writer: it is there.
    conn.prepare_cached(
        "UPDATE payments SET state = ?2, captured_minor = ?3, refunded_minor = ?4, updated_at = ?5
         WHERE reference = ?1",
    )?
    .execute(params![
        reference.as_str(),
        updated.state.as_str(),
        to_sql_amount(updated.captured)?,
        to_sql_amount(updated.refunded)?,
        format_time(&updated.updated_at)
    ])?;
    Ok(updated)
}

/// One payment by reference.
pub(crate) fn payment(
    conn: &Connection,
    reference: &PaymentReference,
) -> Result<Option<PaymentRecord>> {
    select(conn, reference)
}

/// Every recorded payment, oldest first.
pub(crate) fn payments(conn: &Connection) -> Result<Vec<PaymentRecord>> {
    let sql = concat!(select_payments!(), " ORDER BY created_at, reference");
    rows::query(conn, sql, [], payment_row)
}

/// The payments whose last known state is `state`, oldest first.
pub(crate) fn payments_in_state(
    conn: &Connection,
    state: PaymentIndexState,
) -> Result<Vec<PaymentRecord>> {
    let sql = concat!(
        select_payments!(),
        " WHERE state = ?1 ORDER BY created_at, reference"
    );
    rows::query(conn, sql, [state.as_str()], payment_row)
}

fn select(conn: &Connection, reference: &PaymentReference) -> Result<Option<PaymentRecord>> {
    let sql = concat!(select_payments!(), " WHERE reference = ?1");
    rows::query(conn, sql, [reference.as_str()], payment_row)
}

/// One row of `select_payments!`.
fn payment_row(row: &Row<'_>) -> Result<PaymentRecord> {
    let minor = |i: usize, what: &'static str| {
        let v: i64 = row.get(i)?;
        u64::try_from(v).map_err(|_| StoreError::corrupt(what, format!("{v} is negative")))
    };
    Ok(PaymentRecord {
        reference: rows::parsed(row, 0, "payment reference")?,
        lane: rows::parsed(row, 1, "payment lane")?,
        session: row.get(2)?,
        amount: Amount::new(
            rows::parsed(row, 3, "payment currency")?,
            minor(4, "payment amount")?,
        ),
        state: rows::parsed(row, 5, "payment state")?,
        captured: minor(6, "captured amount")?,
        refunded: minor(7, "refunded amount")?,
        created_at: rows::time(row, 8, "payment created_at")?,
        updated_at: rows::time(row, 9, "payment updated_at")?,
    })
}

fn to_sql_amount(value: u64) -> Result<i64> {
    i64::try_from(value)
        .map_err(|_| StoreError::invalid("amount", format!("{value} minor units is too large")))
}

/// Stores the key of `operation` (e.g. `create`, `capture`, `refund-2`) for a session.
/// Storing the same key again is a no-op; a different key is a conflict.
pub(crate) fn record_idempotency_key(
    conn: &Connection,
    lane: &LaneId,
    session: &str,
    operation: &str,
    key: &IdempotencyKey,
    reference: Option<&PaymentReference>,
) -> Result<()> {
    check_session(session)?;
    check_label("operation", operation, 32)?;
    match lookup_key(conn, lane, session, operation)? {
        Some(existing) if existing == *key => return Ok(()),
        Some(_) => {
            return Err(StoreError::IdempotencyKeyConflict {
                lane: lane.to_string(),
                session: session.to_owned(),
                operation: operation.to_owned(),
            });
        }
        None => {}
    }
    conn.prepare_cached(
        "INSERT INTO idempotency_keys (lane, session, operation, key, reference, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        lane.as_str(),
        session,
        operation,
        key.as_str(),
        reference.map(PaymentReference::as_str),
        format_time(&Utc::now())
    ])?;
    Ok(())
}

/// The stored key of `operation` for a session, if any.
pub(crate) fn idempotency_key(
    conn: &Connection,
    lane: &LaneId,
    session: &str,
    operation: &str,
) -> Result<Option<IdempotencyKey>> {
    lookup_key(conn, lane, session, operation)
}

fn lookup_key(
    conn: &Connection,
    lane: &LaneId,
    session: &str,
    operation: &str,
) -> Result<Option<IdempotencyKey>> {
    let sql =
        "SELECT key FROM idempotency_keys WHERE lane = ?1 AND session = ?2 AND operation = ?3";
    rows::query(conn, sql, params![lane.as_str(), session, operation], |r| {
        rows::parsed(r, 0, "idempotency key")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{self, OpenMode};

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = schema::open(&dir.path().join("t.db"), OpenMode::Create).unwrap();
        (dir, conn)
    }

    /// A database holding one payment of 1 kr, `REQUESTED`.
    fn requested_payment() -> (tempfile::TempDir, Connection, PaymentReference) {
        let (dir, conn) = db();
        let r: PaymentReference = "lane-1-0001".parse().unwrap();
        let lane: LaneId = "lane-1".parse().unwrap();
        let requested = PaymentIndexState::Requested;
        record_payment(&conn, &r, &lane, "s1", Amount::nok(100), requested).unwrap();
        (dir, conn, r)
    }

    #[test]
    fn payment_is_recorded_updated_and_listed() {
        let (_dir, conn) = db();
        let r: PaymentReference = "lane-1-0001".parse().unwrap();
        let lane: LaneId = "lane-1".parse().unwrap();
        let created = PaymentIndexState::Created;
        record_payment(&conn, &r, &lane, "s1", Amount::nok(23990), created).unwrap();
        // A retry of the same record is fine; other details are a conflict.
        record_payment(&conn, &r, &lane, "s1", Amount::nok(23990), created).unwrap();
        let err = record_payment(&conn, &r, &lane, "s1", Amount::nok(1), created).unwrap_err();
        assert_eq!(err.kind(), "payment_conflict");

        let authorized = PaymentUpdate::state(PaymentIndexState::Authorized);
        let p = update_payment(&conn, &r, &authorized).unwrap();
        assert_eq!((p.state, p.captured), (PaymentIndexState::Authorized, 0));
        let p = update_payment(
            &conn,
            &r,
            &PaymentUpdate {
                captured: Some(23990),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (p.state, p.captured),
            (PaymentIndexState::Authorized, 23990)
        );
        assert_eq!(payments(&conn).unwrap(), vec![p.clone()]);
        assert_eq!(payment(&conn, &r).unwrap(), Some(p));

        let unknown: PaymentReference = "nope-nope".parse().unwrap();
        let err = update_payment(&conn, &unknown, &authorized).unwrap_err();
        assert_eq!(err.kind(), "unknown_payment");
        let err = record_payment(&conn, &unknown, &lane, "s", Amount::nok(u64::MAX), created)
            .unwrap_err();
        assert_eq!(err.kind(), "invalid_input");
    }

    #[test]
    fn an_update_that_changes_nothing_writes_nothing() {
        let (_dir, conn, r) = requested_payment();
        let captured = PaymentUpdate {
            state: Some(PaymentIndexState::Authorized),
            captured: Some(100),
            refunded: Some(0),
        };
        let writes = conn.total_changes();
        let first = update_payment(&conn, &r, &captured).unwrap();
        assert_eq!(conn.total_changes(), writes + 1, "a change is written");
        assert_eq!(
            (first.state, first.captured),
            (PaymentIndexState::Authorized, 100)
        );
        // The same answer again, and parts of it: the row stays as it is, its time too.
        let same_state = PaymentUpdate::state(PaymentIndexState::Authorized);
        for again in [captured.clone(), same_state, PaymentUpdate::default()] {
            assert!(!again.changes(&first), "{again:?}");
            assert_eq!(update_payment(&conn, &r, &again).unwrap(), first);
            assert_eq!(conn.total_changes(), writes + 1, "{again:?} wrote");
        }
        // Any one field that differs is written.
        for change in [
            PaymentUpdate::state(PaymentIndexState::Terminated),
            PaymentUpdate {
                captured: Some(50),
                ..Default::default()
            },
            PaymentUpdate {
                refunded: Some(20),
                ..Default::default()
            },
        ] {
            let writes = conn.total_changes();
            assert!(change.changes(&payment(&conn, &r).unwrap().unwrap()));
            update_payment(&conn, &r, &change).unwrap();
            assert_eq!(conn.total_changes(), writes + 1, "{change:?} not written");
        }
        let last = payment(&conn, &r).unwrap().unwrap();
        assert_eq!(
            (last.state, last.captured, last.refunded),
            (PaymentIndexState::Terminated, 50, 20)
        );
    }

    #[test]
    fn states_are_stored_by_name_and_an_unknown_name_in_the_file_is_corrupt() {
        let (_dir, conn, r) = requested_payment();
        let not_created = PaymentUpdate::state(PaymentIndexState::NotCreated);
        update_payment(&conn, &r, &not_created).unwrap();
        let stored: String = conn
            .query_row("SELECT state FROM payments", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stored, "NOT_CREATED");

        conn.execute("UPDATE payments SET state = 'RESERVED'", [])
            .unwrap();
        let err = payment(&conn, &r).unwrap_err();
        assert_eq!(err.kind(), "corrupt");
        assert!(err.to_string().contains("`RESERVED`"), "{err}");
    }

    #[test]
    fn index_states_keep_their_stored_names_and_unknown_names_are_refused() {
        let names: Vec<_> = PaymentIndexState::ALL.iter().map(|s| s.as_str()).collect();
        assert_eq!(
            names,
            [
                "REQUESTED",
                "NOT_CREATED",
                "CREATED",
                "AUTHORIZED",
                "ABORTED",
                "EXPIRED",
                "TERMINATED"
            ]
        );
        for &state in PaymentIndexState::ALL {
            assert_eq!(state.as_str().parse::<PaymentIndexState>(), Ok(state));
        }
        let err = "requested".parse::<PaymentIndexState>().unwrap_err();
        assert!(err.to_string().contains("`requested`"), "{err}");
    }

    #[test]
    fn payments_are_listed_by_index_state() {
        let (_dir, conn) = db();
        let lane: LaneId = "lane-1".parse().unwrap();
        let (a, b): (PaymentReference, PaymentReference) = (
            "lane-1-000a".parse().unwrap(),
            "lane-1-000b".parse().unwrap(),
        );
        for r in [&a, &b] {
            let state = PaymentIndexState::Requested;
            record_payment(&conn, r, &lane, "s1", Amount::nok(100), state).unwrap();
        }
        let not_created = PaymentUpdate::state(PaymentIndexState::NotCreated);
        update_payment(&conn, &b, &not_created).unwrap();
        let listed = |state| -> Vec<_> {
            let rows = payments_in_state(&conn, state).unwrap();
            rows.into_iter().map(|p| p.reference).collect()
        };
        assert_eq!(listed(PaymentIndexState::Requested), [a]);
        assert_eq!(listed(PaymentIndexState::NotCreated), [b]);
        assert!(listed(PaymentIndexState::Created).is_empty());
    }

    #[test]
    fn idempotency_keys_are_stored_once() {
        let (_dir, conn) = db();
        let lane: LaneId = "l".parse().unwrap();
        let k1: IdempotencyKey = "key-1".parse().unwrap();
        let k2: IdempotencyKey = "key-2".parse().unwrap();
        assert_eq!(idempotency_key(&conn, &lane, "s", "create").unwrap(), None);
        record_idempotency_key(&conn, &lane, "s", "create", &k1, None).unwrap();
        record_idempotency_key(&conn, &lane, "s", "create", &k1, None).unwrap();
        let err = record_idempotency_key(&conn, &lane, "s", "create", &k2, None).unwrap_err();
        assert_eq!(err.kind(), "idempotency_key_conflict");
        record_idempotency_key(&conn, &lane, "s", "capture", &k2, None).unwrap();
        assert_eq!(
            idempotency_key(&conn, &lane, "s", "create").unwrap(),
            Some(k1)
        );
        assert_eq!(
            idempotency_key(&conn, &lane, "s", "capture").unwrap(),
            Some(k2)
        );
    }
}
