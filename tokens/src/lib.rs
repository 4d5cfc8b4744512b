//! Bearer JWT verification against the JWKS of configured issuers: the rules
//! the sidecar and the gateway share, so both accept and refuse exactly the
//! same tokens.
//!
//! The rules, in order (each failure is a [`TokenError`] naming the reason):
//! size limit; three base64url parts (JWE and unsecured JWS refused); the
//! header's `alg` among the issuer's allowed asymmetric algorithms; no
//! `jku`/`jwk`/`x5u`/`x5c`/`crit` header (keys come only from the issuer's
//! JWKS); the configured `typ`; `iss` naming a configured issuer; a key of
//! *that* issuer chosen by `kid` whose type and `alg` fit the header's `alg`
//! (an unknown `kid` triggers one rate-limited JWKS refetch); the signature;
//! `exp` required, `nbf` honoured, both with leeway; `aud` containing a
//! configured audience.
//!
//! Opaque tokens (no `.`) are instead looked up at the introspection
//! endpoint of the issuer configured for it (RFC 7662); see
//! [`IntrospectionConfig`].
//!
//! [`Signer`] is the issuing side: keys the authserver (and the test issuer)
//! sign with, published as JWKs these rules accept.

mod cache;
mod config;
mod error;
mod introspection;
mod issuer;
mod keys;
mod signer;
#[cfg(feature = "testing")]
pub mod testing;
mod verified;
mod verifier;

pub use config::{IntrospectionConfig, IssuerConfig};
pub use error::{ConfigError, TokenError};
pub use issuer::IssuerStatus;
pub use signer::{Signer, SignerError};
pub use verified::{Verified, qualify};
pub use verifier::{START_WAIT, Verifier, pre_signature, verify_with_keys};
