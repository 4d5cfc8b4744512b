//! Portcullis gateway: a Pingora reverse proxy that protects upstream apps
//! which have no auth code of their own. Routes (host + longest path
//! prefix) are `public`, `jwt` (bearer tokens: JWTs by the shared `tokens`
//! rules, opaque ones by introspection) or `session` (browsers signed in at
//! an OpenID provider); policy routes ask the sidecar or the embedded
//! engine. Every incoming `x-auth-*` header is removed and the verified
//! identity added. ARCHITECTURE.md maps the modules.

mod access_log;
mod admin;
mod authz;
pub mod cli;
pub mod config;
pub mod cookie;
mod direct;
pub mod echo;
mod header_deadline;
mod header_names;
pub mod inbound;
mod metrics;
mod proxy;
mod ratelimit;
mod refusal;
mod reply;
pub mod rewrite;
mod route;
mod seal;
mod session;
mod tls;
mod tunnel;
mod upstream;

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    u64::try_from(bootstrap::clock::unix_seconds()).unwrap_or(0)
}

/// SHA-256 of `bytes` (`bootstrap::digest`): the key of every cache that
/// must not hold a token.
pub use bootstrap::digest::sha256;
