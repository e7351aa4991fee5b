//! Black-box tests of lanehub's HTTP surface through `spawn_app()` and the real binary.

mod cli;
mod health;
mod helpers;
#[allow(dead_code)] // only part of it is used here
#[path = "../support/process.rs"]
mod process;
mod terminal;
mod websocket;
