//! Integration tests: the real `sidecar` binary on ephemeral ports.
//! One test binary for the crate (faster to link); modules by concern.

// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod bearer;
mod cli;
mod entities;
mod envoy;
mod ext_authz;
mod policy_cases;
mod reload;
mod support;
mod traces;
