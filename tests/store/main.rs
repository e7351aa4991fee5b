//! The store: the SQLite journal, membership, migrations, the `lanehub members`/`db` commands,
//! and the shared clubs (PostgreSQL, the merchant's CRM) against real servers the tests start.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod journal;
mod members;
mod members_providers;
mod migrations;
