//! Portcullis authserver: an OAuth 2.0 / OpenID Connect provider.
//!
//! Layers, innermost first: `model` (records), `store` (durable state on
//! PostgreSQL or SQLite) and `ephemeral` (Redis or in-process); `crypto`,
//! `password` and `keys` (secrets at rest, signing keys); `token`, `oauth`
//! and `admin` (protocol and management logic, no HTTP types); `http` and
//! `server` (the surface); `dev` (the `--dev` bootstrap).

pub mod admin;
pub mod admin_api;
pub mod app;
pub mod audit;
pub mod authorize;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod ephemeral;
pub mod error;
pub mod form;
pub mod http;
pub mod issue;
pub mod keys;
pub mod login;
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
