//! Portcullis sidecar: a Cedar policy decision point.
//!
//! The [`engine::Engine`] is the whole decision contract; the HTTP API
//! ([`http`]), the Envoy ext_authz server ([`grpc`]) and the gateway's
//! embedded mode are thin adapters over it.

pub mod authn;
pub mod bundle;
pub mod cache;
mod cedar_json;
pub mod claims;
pub mod decision_log;
pub mod engine;
pub mod error;
pub mod host;
pub mod mapping;
pub mod metrics;
pub mod path;

pub use claims::Claims;
pub use engine::{CheckRequest, Decision, DirectRequest, Engine, EngineOptions, Outcome};
pub use error::{Error, LoadError};
pub mod cli;
pub mod config;
pub mod ext_authz;
pub mod grpc;
pub mod headers;
pub mod http;
pub mod policy_test;
pub mod reload;
pub mod server;
