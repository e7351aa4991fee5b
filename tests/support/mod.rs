//! Shared helpers for the black-box tests. Each test binary uses only part of this module.
#![allow(dead_code)] // each test binary compiles this module and uses only part of it

pub mod openapi;
pub mod process;
