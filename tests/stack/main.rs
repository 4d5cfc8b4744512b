//! The whole stack as users meet it: `portcullis up` from the repository
//! root (`up`), every Envoy config in front of it (`envoy`), and a short run
//! of every k6 scenario against it (`k6`); SCIM changes reaching the
//! sidecar and the gateway through the change feed (`feed`); and the
//! production configs and manifests of `deploy/` (`deploy`), rendered by
//! kustomize and checked against their schemas (`overlays`). One test
//! binary, so the tests share one lock on the fixed ports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod deploy;
mod envoy;
mod feed;
mod k6;
mod overlays;
/// The gateway tests' browser for the authserver's sign-in pages.
#[path = "../../gateway/tests/it/signin.rs"]
mod signin;
mod support;
mod up;
