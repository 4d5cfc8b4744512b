//! SCIM 2.0 (RFC 7643, RFC 7644): provisioning users and groups.
//!
//! `filter.rs` parses filters and PATCH paths, `schema.rs` is what the
//! server supports, `resource.rs` reads and writes resources, `patch.rs`
//! applies PATCH; the store runs the queries (`store/scim/`), the HTTP
//! surface is `http/scim.rs`.

pub mod error;
pub mod filter;
pub mod patch;
pub mod projection;
pub mod resource;
pub mod schema;
pub mod time;

pub use error::ScimError;
