//! The authserver's errors. Start-up and admin failures are [`Error`];
//! protocol failures are [`OAuthError`] (RFC 6749 §5.2 codes), turned into
//! responses in one place (`http.rs`).

use bootstrap::ConfigError;

use crate::crypto::CryptoError;
use crate::ephemeral::EphemeralError;
use crate::keys::KeyError;
use crate::password::PasswordError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("ephemeral store: {0}")]
    Ephemeral(#[from] EphemeralError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
}

/// An OAuth error response: `error`, `error_description`, and the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_request", d)
    }

    /// A 401; the response carries a Basic challenge (RFC 6749 §5.2,
    /// RFC 7235 §3.1).
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(401, "invalid_client", d)
    }

    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", d)
    }

    pub fn unauthorized_client(d: impl Into<String>) -> Self {
        Self::new(400, "unauthorized_client", d)
    }

    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(400, "unsupported_grant_type", d)
    }

    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(400, "invalid_scope", d)
    }

    /// RFC 8628 §3.5: the person has not finished signing in yet.
    pub fn authorization_pending() -> Self {
        Self::new(
            400,
            "authorization_pending",
            "the user has not finished signing in",
        )
    }

    /// RFC 8628 §3.5: polled sooner than the interval allows.
    pub fn slow_down(interval: u64) -> Self {
        Self::new(
            400,
            "slow_down",
            format!("poll at most every {interval} seconds"),
        )
    }

    pub fn expired_token(d: impl Into<String>) -> Self {
        Self::new(400, "expired_token", d)
    }

    pub fn access_denied(d: impl Into<String>) -> Self {
        Self::new(400, "access_denied", d)
    }

    /// A failure of ours. The detail goes to the log, not to the client.
    pub fn server_error(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "request failed");
        Self::new(
            500,
            "server_error",
            "the server could not complete the request",
        )
    }

    pub fn unavailable(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "dependency unavailable");
        Self::new(
            503,
            "temporarily_unavailable",
            "the server is temporarily unavailable",
        )
    }
}

impl From<StoreError> for OAuthError {
    /// Only a store that cannot answer is a 503: a record that vanished
    /// under the request (a user or client deleted meanwhile) or already
    /// exists is about the request, and a corrupt record is our fault.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::invalid_grant(format!("{what} not found")),
            StoreError::Conflict(what) => Self::invalid_request(format!("{what} already exists")),
            StoreError::Invalid(what) | StoreError::Stale(what) => Self::invalid_request(what),
            StoreError::Corrupt(_) => Self::server_error(&e),
            StoreError::Url { .. } | StoreError::Database(_) | StoreError::Migrate(_) => {
                Self::unavailable(&e)
            }
        }
    }
}

impl From<EphemeralError> for OAuthError {
    fn from(e: EphemeralError) -> Self {
        Self::unavailable(&e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_store_that_cannot_answer_is_unavailable() {
        let status = |e: StoreError| OAuthError::from(e).status;
        assert_eq!(status(StoreError::NotFound("user `u1`".into())), 400);
        assert_eq!(status(StoreError::Conflict("client `web`".into())), 400);
        assert_eq!(status(StoreError::Corrupt("client `web`".into())), 500);
        let unreachable = StoreError::Url {
            url: "postgres://db".into(),
            reason: "unreachable".into(),
        };
        assert_eq!(status(unreachable), 503);
    }
}
