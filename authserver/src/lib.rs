//! Portcullis authserver: an OAuth 2.0 / OpenID Connect provider.
//!
//! Layers, innermost first: `model` (records), `store` (durable state on
//! PostgreSQL or SQLite) and `ephemeral` (Redis or in-process); `crypto`,
//! `password` and `keys` (secrets at rest, signing keys); the flows as
//! domain logic with `now` as a parameter and no HTTP types (`authorize`,
//! `login`, `mfa`, `account`, `consent`, `logout`, `oauth`, `admin`);
//! `http` and `server` (the surface); `dev` (the `--dev` bootstrap).
//!
//! Public here is what the binary, the tests and the benchmarks use: the
//! CLI and server, the configuration, the stores, the records, the key
//! material and the pure second-factor algorithms ([`factors`]).

mod account;
mod admin;
mod admin_api;
pub mod app;
mod audit;
mod authorize;
mod backchannel;
pub mod cli;
pub mod config;
mod consent;
pub mod crypto;
mod dev;
mod device;
mod directory;
pub mod ephemeral;
pub mod error;
mod federation;
mod feed;
mod form;
mod http;
mod issue;
pub mod keys;
mod linking;
mod login;
mod logout;
mod metrics;
mod mfa;
pub mod model;
mod oauth;
mod outbound;
mod pages;
pub mod password;
mod proxy;
mod relying_party;
pub mod scim;
pub mod server;
mod service;
pub mod session;
mod sms;
pub mod store;
mod token;
mod upstream;

/// The second-factor algorithms that need no server (the benchmarks'
/// subject): RFC 6238 codes and recovery codes.
pub mod factors {
    pub use crate::mfa::{recovery, totp};
}

#[cfg(test)]
mod testing;
