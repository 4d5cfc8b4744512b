//! The `[feed]` table a gateway and a sidecar read alike.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::follower::{FollowerConfig, OnStale};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// The authserver's base URL; unset: no feed is followed.
    pub url: Option<String>,
    /// A bearer token with the `feed` scope (`authserver token add NAME
    /// --scope feed`), or a file holding it.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    /// The `iss` of the tokens the revocations are about; default `url`.
    pub issuer: Option<String>,
    /// The issuer's `subject_prefix`, when several issuers share a gateway:
    /// applied to the directory's ids as to the tokens' subjects.
    pub subject_prefix: Option<String>,
    /// Follow users and groups (a decision engine applies them).
    pub entities: bool,
    /// Follow revocations (whoever verifies tokens refuses them).
    pub revocations: bool,
    /// How long one long poll waits at the authserver.
    pub wait_seconds: u64,
    /// After this long without an answer the feed is stale.
    pub stale_after_seconds: u64,
    /// Past the bound, entities keep serving by default (group changes
    /// wait); revocations fail closed (tokens of the issuer are refused
    /// with 503 until the feed answers again).
    pub on_stale_entities: OnStale,
    pub on_stale_revocations: OnStale,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            token_file: None,
            issuer: None,
            subject_prefix: None,
            entities: true,
            revocations: true,
            wait_seconds: 25,
            stale_after_seconds: 60,
            on_stale_entities: OnStale::KeepServing,
            on_stale_revocations: OnStale::FailClosed,
        }
    }
}

/// A `[feed]` key that is wrong, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("feed.{key}: {message}")]
pub struct FeedConfigError {
    pub key: &'static str,
    pub message: String,
}

fn invalid(key: &'static str, message: impl Into<String>) -> FeedConfigError {
    FeedConfigError {
        key,
        message: message.into(),
    }
}

impl FeedConfig {
    pub fn validate(&self) -> Result<(), FeedConfigError> {
        let Some(url) = &self.url else {
            return Ok(());
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(invalid("url", format!("`{url}` is not an http(s) URL")));
        }
        if self.token.is_some() == self.token_file.is_some() {
            return Err(invalid(
                "token",
                "set `token` or `token_file` (one of them)",
            ));
        }
        if !self.entities && !self.revocations {
            return Err(invalid("entities", "follow entities, revocations, or both"));
        }
        if !(1..=300).contains(&self.wait_seconds) {
            return Err(invalid("wait_seconds", "must be 1..=300"));
        }
        if self.stale_after_seconds <= self.wait_seconds {
            return Err(invalid(
                "stale_after_seconds",
                "must be longer than `wait_seconds` (a quiet long poll is not staleness)",
            ));
        }
        Ok(())
    }

    /// What the follower runs with; `None` when no feed is configured.
    pub fn follower(&self) -> Result<Option<FollowerConfig>, FeedConfigError> {
        let Some(url) = &self.url else {
            return Ok(None);
        };
        let token = match (&self.token, &self.token_file) {
            (Some(t), _) => t.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| invalid("token_file", format!("`{}`: {e}", path.display())))?
                .trim()
                .to_owned(),
            (None, None) => return Err(invalid("token", "missing")),
        };
        Ok(Some(FollowerConfig {
            url: url.clone(),
            token,
            entities: self.entities,
            revocations: self.revocations,
            wait: Duration::from_secs(self.wait_seconds),
            stale_after: Duration::from_secs(self.stale_after_seconds),
        }))
    }

    /// The issuer the revocations are about.
    pub fn issuer(&self) -> String {
        self.issuer
            .clone()
            .or_else(|| self.url.clone())
            .unwrap_or_default()
    }
}
