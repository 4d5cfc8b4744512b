//! Portcullis gateway: a Pingora reverse proxy that protects upstream apps
//! which have no auth code of their own. This first cut routes by host and
//! longest path prefix, verifies bearer JWTs with the shared `tokens` rules
//! on `jwt` routes (401/403 with RFC 6750 challenges), strips every
//! incoming `x-auth-*` header and adds the verified identity.

pub mod admin;
pub mod config;
pub mod metrics;
pub mod proxy;
