//! The database file: how a connection is opened and the ordered list of forward migrations.
//!
//! Invariants: `PRAGMA user_version` is the number of migrations applied; a migration is never
//! edited once released (add a new entry instead); all pending steps run in one transaction, so
//! a failed migration leaves the file as it was; a file from a newer lanehub is never touched.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::error::{Result, StoreError};

/// The database file inside `store.data_dir`: journal, payments, keys, settings and members.
pub const DATABASE_FILE: &str = "lanehub.db";

/// `PRAGMA application_id` of lanehub databases ("LNHB"), so a foreign SQLite file is refused.
pub const APPLICATION_ID: u32 = 0x4C4E_4842;

/// How long a connection waits for another process (a CLI import, a backup) to release a lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Prepared statements a connection keeps: every statement the store runs per request (about
/// 30) stays parsed, with room to spare.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// One forward step of the schema.
pub struct Migration {
    /// The schema version after this step; entry `i` has version `i + 1`.
    pub version: u32,
    pub description: &'static str,
    pub sql: &'static str,
}

/// Every migration in order. Adding schema v4 is one more entry at the end.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "journal, sessions, payments, idempotency keys, settings, members",
        sql: V1,
    },
    Migration {
        version: 2,
        description: "indexes for open-session recovery and payments by session",
        sql: "CREATE INDEX sessions_open ON sessions (lane) WHERE closed_seq IS NULL;
              CREATE INDEX payments_by_session ON payments (lane, session);",
    },
    Migration {
        version: 3,
        description: "late enrollments the follower finishes; payments by state",
        sql: V3,
    },
];

/// The newest schema this build knows.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

const V1: &str = "
CREATE TABLE journal (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    lane        TEXT NOT NULL,
    session     TEXT NOT NULL,
    kind        TEXT NOT NULL,
    payload     TEXT NOT NULL,
    recorded_at TEXT NOT NULL
);
CREATE INDEX journal_by_session ON journal (lane, session, seq);
CREATE TABLE sessions (
    lane        TEXT NOT NULL,
    session     TEXT NOT NULL,
    opened_seq  INTEGER NOT NULL,
    closed_seq  INTEGER,
    outcome     TEXT,
    PRIMARY KEY (lane, session)
);
CREATE TABLE payments (
    reference     TEXT PRIMARY KEY,
    lane          TEXT NOT NULL,
    session       TEXT NOT NULL,
    currency      TEXT NOT NULL,
    amount_minor  INTEGER NOT NULL,
    state         TEXT NOT NULL,
    captured_minor INTEGER NOT NULL DEFAULT 0,
    refunded_minor INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE TABLE idempotency_keys (
    lane        TEXT NOT NULL,
    session     TEXT NOT NULL,
    operation   TEXT NOT NULL,
    key         TEXT NOT NULL,
    reference   TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (lane, session, operation)
);
CREATE TABLE settings (
    key         TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE TABLE members (
    phone_number  TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    email         TEXT NOT NULL,
    consents      TEXT NOT NULL,
    enrolled_at   TEXT NOT NULL,
    enrolled_lane TEXT,
    source        TEXT NOT NULL CHECK (source IN ('enrollment', 'import'))
);
";

// Enrollments a session gave up on while Vipps may still hold (or already gave) the customer's
// consent; `outcome` stays NULL until the follower has finished one.
const V3: &str = "
CREATE TABLE late_enrollments (
    auth_req_id TEXT PRIMARY KEY,
    lane        TEXT NOT NULL,
    session     TEXT,
    msisdn      TEXT,
    started_at  TEXT NOT NULL,
    login_token TEXT,
    userinfo    TEXT,
    outcome     TEXT CHECK (outcome IN ('enrolled', 'denied', 'expired', 'failed')),
    updated_at  TEXT NOT NULL
);
CREATE INDEX late_enrollments_open ON late_enrollments (started_at) WHERE outcome IS NULL;
CREATE INDEX payments_state ON payments (state);
";

/// Whether opening may create a missing database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the data directory and the file if missing (lanehub itself, imports).
    Create,
    /// Only open an existing file (export, backup).
    Existing,
}

/// Opens `path` durably (WAL, `synchronous=FULL`) and brings its schema up to date.
pub fn open(path: &Path, mode: OpenMode) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    match mode {
        OpenMode::Create => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|error| StoreError::Io {
                    path: dir.to_owned(),
                    error,
                })?;
            }
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        OpenMode::Existing => {
            if !path.is_file() {
                return Err(StoreError::Missing(path.to_owned()));
            }
        }
    }
    let mut conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // Refuse foreign and newer files before the WAL switch below rewrites the header.
    check_version(&conn, path)?;
    let journal_mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::corrupt(
            "journal mode",
            format!(
                "SQLite kept `{journal_mode}` instead of WAL for {}",
                path.display()
            ),
        ));
    }
    // FULL syncs the WAL at every commit: a committed journal record survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens a second, read-only connection to a database that `open` has already brought up to
/// date. In WAL mode it reads the last committed state while the writer commits.
pub(crate) fn open_reader(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    Ok(conn)
}

/// The schema version recorded in an open database.
pub fn schema_version(conn: &Connection) -> Result<u32> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

fn check_version(conn: &Connection, path: &Path) -> Result<u32> {
    let app_id: u32 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    let found = schema_version(conn)?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::ForeignDatabase {
            path: path.to_owned(),
            found: app_id,
        });
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: path.to_owned(),
            found,
            known: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// Applies every pending migration in one immediate transaction.
fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    // IMMEDIATE takes the write lock first, so two processes opening at once migrate only once.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found = check_version(&tx, path)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    for step in MIGRATIONS.iter().skip(found as usize) {
        tx.execute_batch(step.sql)
            .map_err(|error| StoreError::Migration {
                path: path.to_owned(),
                version: step.version,
                error,
            })?;
        tracing::info!(
            path = %path.display(),
            version = step.version,
            description = step.description,
            "database migrated"
        );
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.description);
        }
    }

    #[test]
    fn fresh_database_gets_current_schema_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join(DATABASE_FILE);
        let conn = open(&path, OpenMode::Create).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        drop(conn);
        // Reopening an up-to-date file changes nothing.
        let conn = open(&path, OpenMode::Existing).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
    }

    #[test]
    fn existing_mode_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let err = open(&path, OpenMode::Existing).unwrap_err();
        assert_eq!(err.kind(), "missing");
        assert!(!path.exists());
    }

    #[test]
    fn foreign_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "application_id", 1234).unwrap();
        drop(conn);
        let err = open(&path, OpenMode::Create).unwrap_err();
        assert_eq!(err.kind(), "foreign_database");
    }

    #[test]
    fn failed_migration_leaves_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        // A table the v1 step wants to create already exists: the step fails and rolls back.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE members (x INTEGER);")
            .unwrap();
        drop(conn);
        let err = open(&path, OpenMode::Create).unwrap_err();
        assert_eq!(err.kind(), "migration");
        assert!(err.to_string().contains("schema 1"), "{err}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(schema_version(&conn).unwrap(), 0);
        let journal: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'journal'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(journal, 0);
    }
}
