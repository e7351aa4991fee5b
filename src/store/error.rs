//! The store's error type: what went wrong with the database, named for an operator.
//!
//! Messages never carry a secret or a full phone number; `kind()` is a bounded metric label.
//! Each message includes its cause, so no variant exposes a `source()` as well.

use std::path::PathBuf;

pub use crate::metrics::StoreFault;

/// Everything the store can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The data directory or a file in it could not be created or read.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The database file does not exist (commands that only read never create one).
    #[error("no lanehub database at {0}; check `store.data_dir` in the configuration")]
    Missing(PathBuf),
    /// The file is an SQLite database of some other program.
    #[error("{path} is not a lanehub database (application id {found:#x}); refusing to touch it")]
    ForeignDatabase { path: PathBuf, found: u32 },
    /// The database was migrated by a newer lanehub; opening it could corrupt data it relies on.
    #[error(
        "database {path} was written by a newer lanehub (schema {found}, this build knows up to \
         {known}); refusing to start to protect your data"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    /// `PRAGMA quick_check` found damaged pages, or SQLite reports the file as damaged.
    #[error(
        "database {path} is corrupt ({detail}); lanehub will not use it: stop lanehub and \
         restore the latest backup (docs/operations.md, \"Back up and restore\")"
    )]
    CorruptDatabase { path: PathBuf, detail: String },
    /// A migration step failed; its transaction was rolled back and the file is unchanged.
    #[error("migrating {path} to schema {version} failed: {error}")]
    Migration {
        path: PathBuf,
        version: u32,
        error: rusqlite::Error,
    },
    /// SQLite refused an operation.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
    /// A payload could not be turned into JSON.
    #[error("cannot encode the payload as JSON: {0}")]
    Encode(serde_json::Error),
    /// A stored value does not parse; the file was edited by hand or is damaged.
    #[error("corrupt {what} in the database: {reason}")]
    Corrupt { what: &'static str, reason: String },
    /// An argument was rejected before touching the database.
    #[error("invalid {what}: {reason}")]
    InvalidInput { what: &'static str, reason: String },
    /// The session already has its terminal `closed` record.
    #[error("session {session} of lane {lane} is closed; nothing more can be journaled for it")]
    SessionClosed { lane: String, session: String },
    /// A different idempotency key is already stored for this operation.
    #[error(
        "another idempotency key is already stored for {operation} of session {session} on lane \
         {lane}; reuse the stored one"
    )]
    IdempotencyKeyConflict {
        lane: String,
        session: String,
        operation: String,
    },
    /// The payment reference is already recorded with other details.
    #[error("payment {reference} is already recorded for another lane, session or amount")]
    PaymentConflict { reference: String },
    /// No payment with this reference is recorded.
    #[error("no payment with reference {reference} is recorded")]
    UnknownPayment { reference: String },
    /// The backup destination exists; a backup never overwrites a file.
    #[error("{0} already exists; choose a new backup file")]
    BackupExists(PathBuf),
    /// A store operation panicked; its transaction was rolled back and the store carries on.
    #[error("a store operation failed unexpectedly and was rolled back")]
    Panicked,
    /// The transaction covering this request did not commit, so its change was not kept.
    #[error("the database did not commit the change, so it was not saved: {reason}")]
    NotCommitted {
        reason: String,
        /// What made the commit fail, when SQLite said.
        fault: StoreFault,
    },
    /// The store thread has stopped, so the request could not be served.
    #[error("the store thread has stopped")]
    Closed,
    /// A membership provider other than this store's SQLite (PostgreSQL, the merchant's CRM)
    /// failed or did not answer; `detail` has phone numbers masked and no secret.
    #[error("the {provider} membership provider failed: {detail}")]
    Provider {
        provider: &'static str,
        detail: String,
    },
}

impl StoreError {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            StoreError::Io { .. } => "io",
            StoreError::Missing(_) => "missing",
            StoreError::ForeignDatabase { .. } => "foreign_database",
            StoreError::NewerSchema { .. } => "newer_schema",
            StoreError::CorruptDatabase { .. } => "corrupt_database",
            StoreError::Migration { .. } => "migration",
            StoreError::Sqlite(_) => "sqlite",
            StoreError::Encode(_) => "encode",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::InvalidInput { .. } => "invalid_input",
            StoreError::SessionClosed { .. } => "session_closed",
            StoreError::IdempotencyKeyConflict { .. } => "idempotency_key_conflict",
            StoreError::PaymentConflict { .. } => "payment_conflict",
            StoreError::UnknownPayment { .. } => "unknown_payment",
            StoreError::BackupExists(_) => "backup_exists",
            StoreError::Panicked => "panicked",
            StoreError::NotCommitted { .. } => "not_committed",
            StoreError::Closed => "closed",
            StoreError::Provider { .. } => "provider",
        }
    }

    /// True for the errors a caller may retry unchanged: a busy or locked database.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _))
                if matches!(
                    e.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
        )
    }

    /// What went wrong, for `lanehub_store_errors_total{kind}`; `None` for a request the store
    /// refused by its own rules (a closed session, a conflicting key, bad input), which says
    /// nothing about the database's health.
    pub fn fault(&self) -> Option<StoreFault> {
        match self {
            StoreError::Io { .. } => Some(StoreFault::Io),
            StoreError::Sqlite(e) | StoreError::Migration { error: e, .. } => Some(sqlite_fault(e)),
            StoreError::Corrupt { .. } | StoreError::CorruptDatabase { .. } => {
                Some(StoreFault::Corrupt)
            }
            StoreError::NotCommitted { fault, .. } => Some(*fault),
            StoreError::Closed => Some(StoreFault::Closed),
            StoreError::Panicked | StoreError::Encode(_) => Some(StoreFault::Other),
            StoreError::Missing(_)
            | StoreError::ForeignDatabase { .. }
            | StoreError::NewerSchema { .. }
            | StoreError::InvalidInput { .. }
            | StoreError::SessionClosed { .. }
            | StoreError::IdempotencyKeyConflict { .. }
            | StoreError::PaymentConflict { .. }
            | StoreError::UnknownPayment { .. }
            | StoreError::BackupExists(_)
            // Another database or the CRM: says nothing about this store's health.
            | StoreError::Provider { .. } => None,
        }
    }

    /// Whether the store cannot take writes at all (as opposed to refusing one request).
    pub fn is_store_fault(&self) -> bool {
        matches!(
            self.fault(),
            Some(
                StoreFault::DiskFull
                    | StoreFault::Io
                    | StoreFault::ReadOnly
                    | StoreFault::Busy
                    | StoreFault::Corrupt
                    | StoreFault::NotCommitted
                    | StoreFault::Closed
            )
        )
    }

    /// The error SQLite gives when the disk is full (the store's test hook refuses writes so).
    pub(crate) fn disk_full() -> Self {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            Some("database or disk is full".into()),
        ))
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        StoreError::InvalidInput {
            what,
            reason: reason.into(),
        }
    }

    pub(crate) fn corrupt(what: &'static str, reason: impl ToString) -> Self {
        StoreError::Corrupt {
            what,
            reason: reason.to_string(),
        }
    }
}

/// What an SQLite error says of the database.
pub(crate) fn sqlite_fault(e: &rusqlite::Error) -> StoreFault {
    use rusqlite::ErrorCode as C;
    match e {
        rusqlite::Error::SqliteFailure(e, _) => match e.code {
            C::DiskFull => StoreFault::DiskFull,
            C::SystemIoFailure | C::CannotOpen | C::FileLockingProtocolFailed => StoreFault::Io,
            C::ReadOnly | C::PermissionDenied => StoreFault::ReadOnly,
            C::DatabaseBusy | C::DatabaseLocked => StoreFault::Busy,
            C::DatabaseCorrupt | C::NotADatabase => StoreFault::Corrupt,
            C::ConstraintViolation => StoreFault::Constraint,
            _ => StoreFault::Other,
        },
        _ => StoreFault::Other,
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Sqlite(e)
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Encode(e)
    }
}

/// The store's result type.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
