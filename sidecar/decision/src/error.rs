//! The sidecar's errors. Mapped to HTTP in `http.rs` and to gRPC in `grpc.rs`.

/// A policy directory that cannot be loaded: every problem found, each
/// naming its file (and line and column where Cedar gives one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct LoadError(pub Vec<String>);

impl LoadError {
    pub fn one(message: impl Into<String>) -> Self {
        Self(vec![message.into()])
    }
}

/// Errors of the engine's API (requests, entity writes, reloads).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller sent something malformed or not conforming to the schema.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    /// The write would produce an entity set the schema rejects.
    #[error("{0}")]
    Invalid(LoadError),
    /// Writing `entities.json` failed; nothing was changed.
    #[error("cannot persist entities: {0}")]
    Storage(#[source] std::io::Error),
}

impl From<LoadError> for Error {
    fn from(e: LoadError) -> Self {
        Self::Invalid(e)
    }
}
