//! Gateway integration tests: the real binary in front of a real upstream,
//! with a real token issuer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod proxy;
