//! Black-box tests of lanehub's HTTP surface through `spawn_app()` and the real binary.

mod cli;
mod health;
mod helpers;
mod terminal;
mod websocket;
