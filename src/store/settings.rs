//! A small key/value table for state lanehub learns at run time, such as the webhook
//! registration id and its secret (Vipps shows the secret only once).
//!
//! Values are stored as given and never logged; secret values go in and out as `SecretString`.

use chrono::Utc;
use rusqlite::{Connection, OptionalExtension, params};

use super::error::Result;
use super::{check_label, format_time};

/// Stores `value` under `key`, replacing any earlier value.
pub(crate) fn put(conn: &Connection, key: &str, value: &str) -> Result<()> {
    check_label("setting key", key, 64)?;
    conn.prepare_cached(
        "INSERT INTO settings (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    )?
    .execute(params![key, value, format_time(&Utc::now())])?;
    Ok(())
}

/// The value stored under `key`.
pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<String>> {
    check_label("setting key", key, 64)?;
    Ok(conn
        .prepare_cached("SELECT value FROM settings WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()?)
}

/// Removes `key`; returns whether it was there.
pub(crate) fn delete(conn: &Connection, key: &str) -> Result<bool> {
    check_label("setting key", key, 64)?;
    Ok(conn
        .prepare_cached("DELETE FROM settings WHERE key = ?1")?
        .execute([key])?
        > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    #[test]
    fn put_get_replace_delete() {
        let (_dir, conn) = schema::scratch();
        assert_eq!(get(&conn, "webhook.id").unwrap(), None);
        put(&conn, "webhook.id", "a").unwrap();
        put(&conn, "webhook.id", "b").unwrap();
        assert_eq!(get(&conn, "webhook.id").unwrap().as_deref(), Some("b"));
        assert!(delete(&conn, "webhook.id").unwrap());
        assert!(!delete(&conn, "webhook.id").unwrap());
        assert_eq!(
            put(&conn, "bad key", "x").unwrap_err().kind(),
            "invalid_input"
        );
    }
}
