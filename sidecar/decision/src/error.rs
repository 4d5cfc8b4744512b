//! The decision contract's errors (mapped to HTTP and gRPC by the sidecar
//! service), and Cedar diagnostics rendered as one line each.

use std::fmt::Write as _;

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

/// `file:line:column: message` for a Cedar diagnostic, with its help text.
pub fn diagnostic(file: &str, text: &str, err: &dyn miette::Diagnostic) -> String {
    let mut out = String::new();
    let offset = err.labels().and_then(|mut l| l.next()).map(|l| l.offset());
    match offset {
        Some(offset) if !text.is_empty() => {
            let (line, col) = line_col(text, offset);
            let _ = write!(out, "{file}:{line}:{col}: {}", flatten(err));
        }
        _ => {
            let _ = write!(out, "{file}: {}", flatten(err));
        }
    }
    if let Some(help) = err.help() {
        let _ = write!(out, " (help: {help})");
    }
    // Parse errors come as a list; report each related one too.
    if let Some(related) = err.related() {
        for r in related {
            out.push('\n');
            out.push_str(&diagnostic(file, text, r));
        }
    }
    out
}

/// An error and its sources on one line.
pub fn flatten(err: &dyn std::error::Error) -> String {
    let mut msg = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !msg.contains(&next) {
            msg.push_str(": ");
            msg.push_str(&next);
        }
        source = s.source();
    }
    msg
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
