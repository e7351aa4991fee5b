//! Reading query results into lanehub's types: one place says how a statement's rows are
//! collected and what a column that does not read back means (the file is corrupt, named by
//! `what`). A table's reader is one `fn(&Row) -> Result<T>` built from these columns.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Params, Row};
use serde::de::DeserializeOwned;

use super::error::{Result, StoreError};
use super::parse_time;

/// The rows `sql` returns, each read by `read` and gathered as the caller's type asks: a `Vec`
/// of every row, or an `Option` of the first. The first error ends the query.
pub(crate) fn query<T, G: Gather<T>>(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    read: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<G> {
    G::gather(conn.prepare_cached(sql)?.query_and_then(params, read)?)
}

/// What a query's rows are gathered into.
pub(crate) trait Gather<T>: Sized {
    fn gather(rows: impl Iterator<Item = Result<T>>) -> Result<Self>;
}

/// Every row.
impl<T> Gather<T> for Vec<T> {
    fn gather(rows: impl Iterator<Item = Result<T>>) -> Result<Self> {
        rows.collect()
    }
}

/// The first row, for a query by a key or with `LIMIT 1`; the rest are not read.
impl<T> Gather<T> for Option<T> {
    fn gather(mut rows: impl Iterator<Item = Result<T>>) -> Result<Self> {
        rows.next().transpose()
    }
}

/// Column `i`: text parsed as `T`.
pub(crate) fn parsed<T>(row: &Row<'_>, i: usize, what: &'static str) -> Result<T>
where
    T: FromStr<Err: ToString>,
{
    parse(what, &row.get::<_, String>(i)?)
}

/// Column `i`: NULL, or text parsed as `T`.
pub(crate) fn parsed_opt<T>(row: &Row<'_>, i: usize, what: &'static str) -> Result<Option<T>>
where
    T: FromStr<Err: ToString>,
{
    nullable(row, i, |text| parse(what, text))
}

/// Column `i`: a time as `format_time` writes it.
pub(crate) fn time(row: &Row<'_>, i: usize, what: &'static str) -> Result<DateTime<Utc>> {
    parse_time(what, &row.get::<_, String>(i)?)
}

/// Column `i`: NULL, or a time as `format_time` writes it.
pub(crate) fn time_opt(
    row: &Row<'_>,
    i: usize,
    what: &'static str,
) -> Result<Option<DateTime<Utc>>> {
    nullable(row, i, |text| parse_time(what, text))
}

/// Column `i`: JSON text decoded as `T`.
pub(crate) fn json<T: DeserializeOwned>(row: &Row<'_>, i: usize, what: &'static str) -> Result<T> {
    decode(what, &row.get::<_, String>(i)?)
}

/// Column `i`: NULL, or JSON text decoded as `T`.
pub(crate) fn json_opt<T: DeserializeOwned>(
    row: &Row<'_>,
    i: usize,
    what: &'static str,
) -> Result<Option<T>> {
    nullable(row, i, |text| decode(what, text))
}

fn nullable<T>(row: &Row<'_>, i: usize, read: impl FnOnce(&str) -> Result<T>) -> Result<Option<T>> {
    row.get::<_, Option<String>>(i)?
        .map(|text| read(&text))
        .transpose()
}

fn parse<T: FromStr<Err: ToString>>(what: &'static str, text: &str) -> Result<T> {
    text.parse().map_err(|e| StoreError::corrupt(what, e))
}

fn decode<T: DeserializeOwned>(what: &'static str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::corrupt(what, e))
}
