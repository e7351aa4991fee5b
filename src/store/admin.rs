//! The store's command-line operations: `members import`, `members export` and `backup`.
//!
//! They run in their own short-lived process, possibly while lanehub runs; SQLite's WAL lets
//! them share the file. They open their own connection synchronously (no actors here).
//! Export and backup never create a database; backup never migrates one.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::Utc;

use super::error::StoreError;
use super::member_csv::{CsvError, read_members, write_members};
use super::members::ImportCounts;
use super::outbox::{self, OutboxEntry};
use super::schema::{self, DATABASE_FILE, OpenMode};
use super::{BackupReport, backup, members};
use crate::config::StoreSettings;

/// Why a store command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{path}: {error}")]
    Csv { path: String, error: CsvError },
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
}

impl AdminError {
    /// A short, bounded label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            AdminError::Store(e) => e.kind(),
            AdminError::Csv { error, .. } => error.kind(),
            AdminError::Io { .. } => "io",
        }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    pub file: PathBuf,
    pub counts: ImportCounts,
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.counts;
        write!(
            f,
            "imported {}: {} new, {} updated, {} unchanged",
            self.file.display(),
            c.inserted,
            c.updated,
            c.unchanged
        )
    }
}

/// The database file of these settings.
pub fn database_path(settings: &StoreSettings) -> PathBuf {
    settings.data_dir.join(DATABASE_FILE)
}

/// Validates every row of `file`, then upserts all members in one transaction.
pub fn import_members(settings: &StoreSettings, file: &Path) -> Result<ImportReport, AdminError> {
    let shown = file.display().to_string();
    let reader = std::fs::File::open(file).map_err(|error| AdminError::Io {
        path: shown.clone(),
        error,
    })?;
    let rows = read_members(std::io::BufReader::new(reader), Utc::now())
        .map_err(|error| AdminError::Csv { path: shown, error })?;
    let mut conn = schema::open(&database_path(settings), OpenMode::Create)?;
    let counts = members::import(&mut conn, &rows)?;
    tracing::info!(
        inserted = counts.inserted,
        updated = counts.updated,
        unchanged = counts.unchanged,
        "members imported"
    );
    Ok(ImportReport {
        file: file.to_owned(),
        counts,
    })
}

/// Writes every member as CSV to `dest`, or to stdout for `None` or `-`; returns the count.
/// A file is created readable by its owner only: it holds phone numbers.
pub fn export_members(settings: &StoreSettings, dest: Option<&Path>) -> Result<usize, AdminError> {
    let conn = schema::open(&database_path(settings), OpenMode::Existing)?;
    let all = members::list(&conn)?;
    match dest.filter(|p| *p != Path::new("-")) {
        None => {
            let stdout = std::io::stdout();
            write_members(stdout.lock(), &all).map_err(|error| AdminError::Csv {
                path: "stdout".into(),
                error,
            })?;
        }
        Some(path) => {
            let shown = path.display().to_string();
            let io = |error| AdminError::Io {
                path: shown.clone(),
                error,
            };
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = std::io::BufWriter::new(options.open(path).map_err(io)?);
            write_members(&mut file, &all).map_err(|error| AdminError::Csv {
                path: shown.clone(),
                error,
            })?;
            file.flush().map_err(io)?;
        }
    }
    Ok(all.len())
}

/// Copies the database to `dest` (a new file, or a directory for a timestamped file).
pub fn backup_database(settings: &StoreSettings, dest: &Path) -> Result<BackupReport, AdminError> {
    let conn = backup::open_source(&database_path(settings))?;
    Ok(backup::backup(&conn, dest)?)
}

/// Every entry of the CRM outbox, oldest first (`lanehub members outbox`).
pub fn outbox_entries(settings: &StoreSettings) -> Result<Vec<OutboxEntry>, AdminError> {
    let conn = schema::open(&database_path(settings), OpenMode::Existing)?;
    Ok(outbox::list(&conn)?)
}

/// Makes the entry `id`, or every entry with `None`, due for delivery at once, refused ones
/// included (`lanehub members outbox retry`); returns how many.
pub fn outbox_retry(settings: &StoreSettings, id: Option<i64>) -> Result<u64, AdminError> {
    let conn = schema::open(&database_path(settings), OpenMode::Existing)?;
    Ok(outbox::retry(&conn, id, Utc::now())?)
}

/// Queues enrollments for the CRM in one transaction (`members import` with the `http`
/// provider): `(phone number, PUT body)` each, delivered by the running lanehub.
pub fn outbox_push_all(
    settings: &StoreSettings,
    entries: &[(crate::domain::Msisdn, serde_json::Value)],
) -> Result<usize, AdminError> {
    let mut conn = schema::open(&database_path(settings), OpenMode::Create)?;
    let now = Utc::now();
    super::atomically(&mut conn, |conn| {
        for (phone, body) in entries {
            outbox::push(conn, phone, body, &uuid::Uuid::new_v4().to_string(), now)?;
        }
        Ok(entries.len())
    })
    .map_err(AdminError::from)
}
