//! Consistent copies of the database while lanehub runs, with `VACUUM INTO`.
//!
//! `VACUUM INTO` reads one snapshot (a WAL read transaction), so writers go on undisturbed and
//! the copy holds exactly the transactions committed before it started. The copy is written to
//! a temporary name, synced, checked and only then renamed into place, so a crash never leaves
//! a half-written file under the requested name. The copy is created with mode 0600: it holds
//! what the database holds.

use std::path::{Path, PathBuf};

use chrono::Utc;
use rusqlite::{Connection, OpenFlags};

use super::error::{Result, StoreError};
use super::schema::{APPLICATION_ID, PRIVATE_FILE_MODE, as_corrupt, schema_version, set_private};

/// What a backup produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    pub path: PathBuf,
    pub schema_version: u32,
    pub bytes: u64,
}

impl std::fmt::Display for BackupReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "backup written to {} ({} bytes, schema {})",
            self.path.display(),
            self.bytes,
            self.schema_version
        )
    }
}

/// Opens an existing database for a backup without migrating or otherwise changing it.
pub(crate) fn open_source(path: &Path) -> Result<Connection> {
    if !path.is_file() {
        return Err(StoreError::Missing(path.to_owned()));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let app_id: u32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    if app_id != APPLICATION_ID {
        return Err(StoreError::ForeignDatabase {
            path: path.to_owned(),
            found: app_id,
        });
    }
    Ok(conn)
}

/// Copies the database behind `conn` to `dest` (a new file, or a directory to put a
/// timestamped `lanehub-….db` in) and checks the copy.
pub(crate) fn backup(conn: &Connection, dest: &Path) -> Result<BackupReport> {
    let dest = if dest.is_dir() {
        dest.join(format!(
            "lanehub-{}.db",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ))
    } else {
        dest.to_owned()
    };
    if dest.exists() {
        return Err(StoreError::BackupExists(dest));
    }
    let file_name = dest
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| StoreError::invalid("backup path", "expected a file name in UTF-8"))?;
    let partial = dest.with_file_name(format!(".{file_name}.{}.partial", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| StoreError::Io { path, error }
    };
    let partial_str = partial
        .to_str()
        .ok_or_else(|| StoreError::invalid("backup path", "expected a UTF-8 path"))?;
    if partial.exists() {
        // Left by an earlier backup of this process id that crashed; never a user's file.
        std::fs::remove_file(&partial).map_err(io(&partial))?;
    }
    // Created empty and private first: VACUUM INTO writes into an empty file and keeps its mode,
    // so the copy (phone numbers, consents) is never readable by others, whatever the umask.
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, PRIVATE_FILE_MODE);
    options.open(&partial).map_err(io(&partial))?;
    let result = set_private(&partial)
        .and_then(|()| {
            conn.execute("VACUUM INTO ?1", [partial_str])
                .map_err(|e| match conn.path() {
                    // Reading every page, VACUUM meets damage the page check would have named.
                    Some(source) => as_corrupt(e.into(), Path::new(source)),
                    None => e.into(),
                })
        })
        .and_then(|_| check_copy(&partial))
        .and_then(|version| {
            // VACUUM INTO does not sync its output; make the copy durable before naming it.
            std::fs::File::open(&partial)
                .and_then(|f| f.sync_all())
                .map_err(io(&partial))?;
            std::fs::rename(&partial, &dest).map_err(io(&dest))?;
            let bytes = std::fs::metadata(&dest).map_err(io(&dest))?.len();
            Ok(BackupReport {
                path: dest.clone(),
                schema_version: version,
                bytes,
            })
        });
    if result.is_err() {
        // Best effort: the error being returned matters more than a leftover temporary file.
        let _ = std::fs::remove_file(&partial);
    }
    result
}

fn check_copy(path: &Path) -> Result<u32> {
    let copy = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let verdict: String = copy.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    if verdict != "ok" {
        return Err(StoreError::corrupt("backup copy", verdict));
    }
    schema_version(&copy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema::{self, OpenMode};

    #[test]
    fn copies_into_a_new_file_or_a_directory_and_never_overwrites() {
        let (dir, conn) = schema::scratch();
        conn.execute_batch("INSERT INTO settings VALUES ('k', 'v', 't')")
            .unwrap();
        let dest = dir.path().join("copy.db");
        let report = backup(&conn, &dest).unwrap();
        assert_eq!(report.path, dest);
        assert_eq!(report.schema_version, schema::SCHEMA_VERSION);
        let copy = Connection::open(&dest).unwrap();
        let v: String = copy
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, "v");

        assert_eq!(backup(&conn, &dest).unwrap_err().kind(), "backup_exists");

        let into_dir = dir.path().join("backups");
        std::fs::create_dir(&into_dir).unwrap();
        let report = backup(&conn, &into_dir).unwrap();
        assert_eq!(report.path.parent(), Some(into_dir.as_path()));
        let names: Vec<_> = std::fs::read_dir(&into_dir).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn a_damaged_source_is_named_corrupt_and_leaves_no_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("src.db");
        let conn = schema::open(&path, OpenMode::Create).unwrap();
        conn.execute_batch("INSERT INTO settings VALUES ('k', 'v', 't')")
            .unwrap();
        drop(conn);
        let root: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'settings'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let at = (root as usize - 1) * 4096;
        bytes[at..at + 16].fill(0x7f);
        std::fs::write(&path, &bytes).unwrap();

        let source = open_source(&path).unwrap();
        let dest = dir.path().join("copy.db");
        let err = backup(&source, &dest).unwrap_err();
        assert_eq!(err.kind(), "corrupt_database", "{err}");
        assert!(
            err.to_string()
                .contains(&format!("database {} is corrupt", path.display())),
            "{err}"
        );
        assert!(!dest.exists());
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !name.starts_with("src.db"))
            .collect();
        assert!(left.is_empty(), "no copy or temporary file: {left:?}");
    }

    #[test]
    fn source_must_be_a_lanehub_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        assert_eq!(open_source(&path).unwrap_err().kind(), "missing");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x)")
            .unwrap();
        assert_eq!(open_source(&path).unwrap_err().kind(), "foreign_database");
    }
}
