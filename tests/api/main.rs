//! Black-box tests of lanehub's HTTP surface through `spawn_app()` and the real binary.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod health;
mod socket_commands;
mod terminal;
mod websocket;
