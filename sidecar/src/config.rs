//! The sidecar's configuration: `sidecar.toml`, then `PORTCULLIS_SIDECAR__*`
//! variables, then command-line flags. Every key is documented in
//! `sidecar/sidecar.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bootstrap::ConfigError;
use bootstrap::telemetry::{LogFormat, TracingConfig};
use serde::Deserialize;

use decision::EngineOptions;
use decision::decision_log::LogConfig;
use decision::envoy;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Policy directory: schema, policies, entities, routes.
    pub policies: PathBuf,
    /// HTTP API (`/v1/*`, health, metrics).
    pub http: SocketAddr,
    /// Envoy ext_authz v3 gRPC.
    pub grpc: SocketAddr,
    /// Bearer token for the admin API; unset turns the admin API off.
    pub admin_token: Option<String>,
    /// Largest request body accepted by the HTTP API (413 beyond).
    pub max_body_bytes: usize,
    /// Reload when a file in the policy directory changes.
    pub watch: bool,
    pub log_level: String,
    pub log_format: LogFormat,
    /// Seconds to finish in-flight requests after SIGTERM.
    pub shutdown_grace_secs: u64,
    /// Threads serving requests; 0 means one per CPU core.
    pub workers: usize,
    pub cache: CacheConfig,
    pub decision_log: LogConfig,
    pub claims: ClaimsConfig,
    /// Issuers whose bearer tokens the sidecar verifies itself, for callers
    /// that send the `authorization` header rather than verified claims.
    pub issuers: Vec<tokens::IssuerConfig>,
    /// The authserver's change feed: users and groups for decisions, and
    /// revocations for the tokens verified here.
    pub feed: feed::FeedConfig,
    /// OpenTelemetry export (off by default); a caller's `traceparent`
    /// (gRPC metadata) is continued unless `accept_traceparent = false`.
    pub tracing: TracingConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// 0 turns the decision cache off.
    pub max_entries: u64,
    pub ttl_ms: u64,
}

/// Where verified claims are found in an ext_authz `CheckRequest`: Envoy's
/// jwt_authn filter with `payload_in_metadata: <key>` puts them in
/// `metadata_context.filter_metadata["envoy.filters.http.jwt_authn"][<key>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaimsConfig {
    pub metadata_namespace: String,
    pub metadata_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            policies: PathBuf::from("policies"),
            http: SocketAddr::from(([127, 0, 0, 1], 8081)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 9191)),
            admin_token: None,
            max_body_bytes: 1 << 20,
            watch: true,
            log_level: "info".into(),
            log_format: LogFormat::Json,
            shutdown_grace_secs: 10,
            workers: 0,
            cache: CacheConfig::default(),
            decision_log: LogConfig::default(),
            claims: ClaimsConfig::default(),
            issuers: Vec::new(),
            feed: feed::FeedConfig::default(),
            tracing: TracingConfig::default(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            ttl_ms: 5_000,
        }
    }
}

impl Default for ClaimsConfig {
    fn default() -> Self {
        Self {
            metadata_namespace: envoy::JWT_AUTHN_NAMESPACE.into(),
            metadata_key: envoy::JWT_PAYLOAD_KEY.into(),
        }
    }
}

/// Shortest admin token accepted: a guessable token is worse than none.
const MIN_ADMIN_TOKEN_LEN: usize = 24;

impl Config {
    /// Load from an optional file and the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config: Self = bootstrap::load("SIDECAR", file, std::env::vars())?;
        // An empty token (e.g. an unset deployment variable) means "off".
        if config.admin_token.as_deref() == Some("") {
            config.admin_token = None;
        }
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tracing.validate()?;
        if let Some(token) = &self.admin_token
            && token.len() < MIN_ADMIN_TOKEN_LEN
        {
            return Err(ConfigError::invalid(
                "admin_token",
                format!(
                    "must be at least {MIN_ADMIN_TOKEN_LEN} characters (or unset to turn the admin API off)"
                ),
            ));
        }
        if self.workers > 256 {
            return Err(ConfigError::invalid(
                "workers",
                "at most 256 (0 = one per core)",
            ));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "max_body_bytes",
                "must be greater than 0",
            ));
        }
        if !(0.0..=1.0).contains(&self.decision_log.sample_allows) {
            return Err(ConfigError::invalid(
                "decision_log.sample_allows",
                "must be between 0.0 and 1.0",
            ));
        }
        if self.decision_log.queue == 0 {
            return Err(ConfigError::invalid(
                "decision_log.queue",
                "must be greater than 0",
            ));
        }
        if self.claims.metadata_namespace.is_empty() || self.claims.metadata_key.is_empty() {
            return Err(ConfigError::invalid(
                "claims",
                "`metadata_namespace` and `metadata_key` must not be empty",
            ));
        }
        if let Err(e) = tokens::IssuerConfig::check_all(&self.issuers) {
            return Err(ConfigError::invalid(
                format!("issuers[{}].{}", e.index, e.field),
                e.message,
            ));
        }
        self.feed
            .validate()
            .map_err(|e| ConfigError::invalid(format!("feed.{}", e.key), e.message))?;
        if self.http == self.grpc && self.http.port() != 0 {
            return Err(ConfigError::invalid("grpc", "must differ from `http`"));
        }
        Ok(())
    }

    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            cache_entries: self.cache.max_entries,
            cache_ttl: Duration::from_millis(self.cache.ttl_ms),
        }
    }
}
