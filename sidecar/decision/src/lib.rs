//! The decision contract: the one place a request is decided, whoever
//! asks. The sidecar service (HTTP API, Envoy ext_authz, reload) and the
//! gateway's embedded mode are adapters over it; this crate opens no
//! socket and knows no transport beyond Envoy's message types.
//!
//! - [`Engine`] decides a [`CheckRequest`] against the current [`bundle`]
//!   (policies, schema, entities, `routes.toml` [`mapping`]).
//! - [`path`] and [`host`] are the canonical rules every proxy applies
//!   before routing, so policy and upstream read the same request.
//! - [`headers`] are the identity headers an allow sets; [`ext_authz`] is
//!   the answer a proxy gets, [`envoy`] its ext_authz v3 encoding, and
//!   [`challenge`] the RFC 6750 challenges its refusals carry.

pub mod bundle;
mod cache;
mod cedar_json;
pub mod challenge;
pub mod claims;
pub mod decision_log;
pub mod directory;
mod engine;
pub mod envoy;
pub mod error;
pub mod ext_authz;
pub mod headers;
pub mod host;
pub mod mapping;
pub mod metrics;
mod outcome;
pub mod path;

pub use claims::Claims;
pub use engine::{CheckRequest, DirectRequest, Engine, EngineOptions, ReloadStatus, Snapshot};
pub use error::{Error, LoadError};
pub use metrics::Metrics;
pub use outcome::{Decision, Outcome, StepUp};
