//! Portcullis authserver: an OAuth 2.0 / OpenID Connect provider.
//!
//! Layers, innermost first: `model` (records), `store` (durable state on
//! PostgreSQL or SQLite) and `ephemeral` (Redis or in-process); `crypto`,
//! `password` and `keys` (secrets at rest, signing keys); the flows as
//! domain logic with `now` as a parameter and no HTTP types (`authorize`,
//! `login`, `consent`, `logout`, `oauth`, `admin`); `http` and `server`
//! (the surface); `dev` (the `--dev` bootstrap).

pub mod admin;
pub mod admin_api;
pub mod app;
pub mod audit;
pub mod authorize;
pub mod cli;
pub mod config;
pub mod consent;
pub mod crypto;
pub mod dev;
pub mod ephemeral;
pub mod error;
pub mod form;
pub mod http;
pub mod issue;
pub mod keys;
pub mod login;
pub mod logout;
pub mod metrics;
pub mod model;
pub mod oauth;
pub mod pages;
pub mod password;
pub mod proxy;
pub mod server;
pub mod session;
pub mod store;
pub mod token;

#[cfg(test)]
mod testing;
