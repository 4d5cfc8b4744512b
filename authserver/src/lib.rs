//! Portcullis authserver: an OAuth 2.0 / OpenID Connect provider.
//!
//! Layers, outermost last: `model` (records), `store` (durable state on
//! PostgreSQL or SQLite) and `ephemeral` (Redis or in-process), then the
//! protocol and the HTTP surface.

pub mod crypto;
pub mod ephemeral;
pub mod model;
pub mod password;
pub mod store;
