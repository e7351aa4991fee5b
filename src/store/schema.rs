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

/// Mode of the data directory lanehub creates: the journal holds phone numbers and consents.
pub const PRIVATE_DIR_MODE: u32 = 0o700;
/// Mode of the database and backup files lanehub creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

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
    Migration {
        version: 4,
        description: "indexes for pruning closed sessions and resolved late enrollments",
        sql: "CREATE INDEX sessions_closed ON sessions (closed_seq) WHERE closed_seq IS NOT NULL;
              CREATE INDEX late_enrollments_resolved ON late_enrollments (updated_at)
                  WHERE outcome IS NOT NULL;",
    },
    Migration {
        version: 5,
        description: "the outbox of enrollments for the merchant's CRM",
        sql: V5,
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

const V5: &str = "
CREATE TABLE crm_outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    phone_number    TEXT NOT NULL,
    body            TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    refused_at      TEXT
);
CREATE INDEX crm_outbox_waiting ON crm_outbox (phone_number) WHERE refused_at IS NULL;
";

/// Whether opening may create a missing database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create the data directory and the file if missing (lanehub itself, imports).
    Create,
    /// Only open an existing file (export, backup).
    Existing,
}

/// Opens `path` durably (WAL, `synchronous=FULL`), checks its pages and brings its schema up to
/// date. A damaged file is refused as [`StoreError::CorruptDatabase`].
pub fn open(path: &Path, mode: OpenMode) -> Result<Connection> {
    open_checked(path, mode).map_err(|e| as_corrupt(e, path))
}

fn open_checked(path: &Path, mode: OpenMode) -> Result<Connection> {
    let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    match mode {
        OpenMode::Create => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                create_private_dir(dir)?;
            }
            create_private_file(path)?;
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
    // Before anything writes: migrating or recovering from damaged pages would hide the damage.
    quick_check(&conn, path)?;
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
    // Deleted and overwritten content (pruned sessions, erased Login tokens) is zeroed, freed
    // pages too, instead of lingering in the file's free space. The cost is a write of each
    // page freed, which happens mostly while pruning.
    conn.pragma_update(None, "secure_delete", true)?;
    conn.pragma_update(None, "foreign_keys", true)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// How many problems `quick_check` reports at most; the first ones are enough to name the damage.
const QUICK_CHECK_LIMIT: u32 = 3;

/// Runs `PRAGMA quick_check`: every page and b-tree is read once (O(size of the file)), without
/// the index-content checks of `integrity_check`.
fn quick_check(conn: &Connection, path: &Path) -> Result<()> {
    let started = tokio::time::Instant::now();
    let mut stmt = conn.prepare(&format!("PRAGMA quick_check({QUICK_CHECK_LIMIT})"))?;
    let mut verdict = Vec::new();
    for row in stmt.query_map([], |row| row.get::<_, String>(0))? {
        match row {
            Ok(line) => verdict.push(line),
            // SQLite may stop with SQLITE_CORRUPT after naming the damage: the names say more.
            Err(_) if !verdict.is_empty() => break,
            Err(e) => return Err(e.into()),
        }
    }
    if verdict != ["ok"] {
        // One line for the log: the damaged pages, without SQLite's "*** in database main ***".
        let lines: Vec<&str> = verdict
            .iter()
            .flat_map(|entry| entry.lines())
            .filter(|line| !line.starts_with("***"))
            .collect();
        return Err(StoreError::CorruptDatabase {
            path: path.to_owned(),
            detail: format!("quick_check: {}", lines.join("; ")),
        });
    }
    // Its cost grows with the file: the log shows what it takes in this store.
    tracing::info!(
        path = %path.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "database pages checked"
    );
    Ok(())
}

/// SQLite's own verdict that the file is damaged, wherever opening met it, named for the file.
pub(crate) fn as_corrupt(e: StoreError, path: &Path) -> StoreError {
    let sqlite = match &e {
        StoreError::Sqlite(s) | StoreError::Migration { error: s, .. } => s,
        _ => return e,
    };
    match sqlite.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            StoreError::CorruptDatabase {
                path: path.to_owned(),
                detail: sqlite.to_string(),
            }
        }
        _ => e,
    }
}

/// Creates `dir` (and missing parents) readable by lanehub's user only, whatever the umask. An
/// existing directory is left as it is: its mode is the operator's (systemd's
/// `StateDirectoryMode=`).
fn create_private_dir(dir: &Path) -> Result<()> {
    let io = |error| StoreError::Io {
        path: dir.to_owned(),
        error,
    };
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(PRIVATE_DIR_MODE);
        builder.create(dir).map_err(io)?;
        // The umask may have taken bits from the owner; set the mode itself.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(PRIVATE_DIR_MODE))
            .map_err(io)?;
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(io)?;
    Ok(())
}

/// Creates the database file empty with mode 0600 before SQLite opens it; SQLite gives the
/// `-wal` and `-shm` files the database file's mode. An existing file is left as it is.
fn create_private_file(path: &Path) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE_MODE);
    match options.open(path) {
        Ok(_) => set_private(path),
        // Another process (lanehub, a CLI import) may create it at the same moment.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(StoreError::Io {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Sets a file lanehub just created to [`PRIVATE_FILE_MODE`], whatever the umask took from it.
pub(crate) fn set_private(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(PRIVATE_FILE_MODE))
            .map_err(|error| StoreError::Io {
                path: path.to_owned(),
                error,
            })?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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

/// A new database in a temporary directory, for unit tests; the directory goes when the
/// returned `TempDir` is dropped.
#[cfg(test)]
pub(crate) fn scratch() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let conn = open(&dir.path().join("t.db"), OpenMode::Create).unwrap();
    (dir, conn)
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

    /// Overwrites the b-tree page header of `table`'s root page with an invalid page type.
    fn damage(path: &Path, table: &str) {
        let conn = Connection::open(path).unwrap();
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap();
        let root: i64 = conn
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = ?1",
                [table],
                |r| r.get(0),
            )
            .unwrap();
        drop(conn);
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        file.seek(SeekFrom::Start(((root - 1) * page_size) as u64))
            .unwrap();
        file.write_all(&[0x7f; 16]).unwrap();
    }

    #[test]
    fn a_database_with_damaged_pages_is_refused_by_name_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        let conn = open(&path, OpenMode::Create).unwrap();
        conn.execute_batch("INSERT INTO settings VALUES ('k', 'v', 't')")
            .unwrap();
        // Closing the last connection checkpoints the WAL into the file and removes it.
        drop(conn);
        assert!(!dir.path().join("lanehub.db-wal").exists());
        damage(&path, "settings");
        let before = std::fs::read(&path).unwrap();

        for mode in [OpenMode::Create, OpenMode::Existing] {
            let err = open(&path, mode).unwrap_err();
            assert_eq!(err.kind(), "corrupt_database", "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("database {} is corrupt", path.display())),
                "{text}"
            );
            assert!(text.contains("quick_check"), "{text}");
            assert!(text.contains("restore the latest backup"), "{text}");
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            before,
            "the file is left as it was"
        );
    }

    #[test]
    fn a_file_that_is_no_database_at_all_is_refused_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(DATABASE_FILE);
        std::fs::write(&path, vec![0x42; 8192]).unwrap();
        let err = open(&path, OpenMode::Existing).unwrap_err();
        assert_eq!(err.kind(), "corrupt_database", "{err}");
        assert!(err.to_string().contains("is corrupt"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn the_data_directory_and_database_are_created_for_lanehub_only() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("var").join("data");
        let path = data.join(DATABASE_FILE);
        let conn = open(&path, OpenMode::Create).unwrap();
        conn.execute_batch("INSERT INTO settings VALUES ('k', 'v', 't')")
            .unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("var")), 0o700);
        assert_eq!(mode(&path), 0o600);
        // SQLite gives its side files the database's mode.
        assert_eq!(mode(&data.join("lanehub.db-wal")), 0o600);
        drop(conn);

        // An existing directory keeps the mode the operator gave it.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o750)).unwrap();
        open(&shared.join(DATABASE_FILE), OpenMode::Create).unwrap();
        assert_eq!(mode(&shared), 0o750);
        assert_eq!(mode(&shared.join(DATABASE_FILE)), 0o600);
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
