//! Authserver integration tests: one binary (faster linking).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ephemeral;
mod protocol;
mod server;
mod store;
mod support;
