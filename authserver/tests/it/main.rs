//! Authserver integration tests: one binary (faster linking).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod admin;
mod backchannel;
mod browser;
mod device;
mod ephemeral;
mod factors;
mod failover;
mod federation;
mod feed;
mod flow;
mod migrations;
mod passkeys;
mod protocol;
mod rp;
mod scim;
mod server;
mod store;
mod support;
