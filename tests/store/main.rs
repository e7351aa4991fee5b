//! The SQLite store: journal, membership, migrations, and the `lanehub members`/`db` commands.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod journal;
mod members;
mod migrations;
