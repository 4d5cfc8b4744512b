//! Gateway integration tests: the real binary in front of a real upstream,
//! with a real token issuer and, where policies are asked, the real sidecar.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backchannel;
mod canonical;
mod config;
mod differential;
mod edge;
mod lifecycle;
mod passthrough;
mod proxy;
mod ratelimit;
mod session;
mod sidecar;
mod signin;
mod support;
mod tls;
mod tokens;
mod traces;
mod upstreams;
