//! Shared test helpers: the fixtures and tensor comparisons of the `fomm` crate's tests, and the
//! live-loop helpers.
#![allow(dead_code)]

pub mod live;
pub mod scenes;

#[path = "../../crates/fomm/tests/common/mod.rs"]
mod fixtures;
#[allow(unused_imports)]
pub use fixtures::*;
