//! The authserver's configuration: `authserver.toml`, then
//! `PORTCULLIS_AUTHSERVER__*` variables, then command-line flags. Every key
//! is documented in `authserver/authserver.example.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;

use bootstrap::ConfigError;
use bootstrap::telemetry::{LogFormat, TracingConfig};
use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::crypto::MasterKey;
use crate::model::MAX_ACCESS_SECONDS;
use crate::password::Argon2Config;

mod federation;

pub use federation::{FederationConfig, ProviderConfig, ProviderKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The issuer identifier and public base URL (`iss`). Defaults to
    /// `http://<listen>` in dev mode; required otherwise.
    pub issuer: Option<String>,
    pub listen: SocketAddr,
    /// `postgres://…` or `sqlite:…`; defaults to SQLite under `data_dir`.
    pub database_url: Option<String>,
    pub database: DatabaseConfig,
    /// `redis://host:port` or `redis-cluster://host:port,host:port,…`;
    /// unset keeps ephemeral state in-process (one instance only).
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// Where the embedded defaults keep their files.
    pub data_dir: PathBuf,
    /// Base64 of 32 bytes; seals signing keys and second-factor secrets.
    pub master_key: Option<String>,
    /// A file holding the master key (alternative to `master_key`).
    pub master_key_file: Option<PathBuf>,
    /// Bearer token for the admin API; unset turns the admin API off.
    pub admin_token: Option<String>,
    /// Reverse proxies (addresses or CIDR blocks) whose `X-Forwarded-For`
    /// names the client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
    /// Algorithm of new signing keys: ES256, RS256, PS256 or EdDSA.
    pub signing_alg: String,
    /// `aud` of access tokens when the request names no resource.
    pub audience: String,
    pub tokens: TokenConfig,
    pub argon2: Argon2Config,
    pub login: LoginConfig,
    pub mfa: MfaConfig,
    pub feed: FeedConfig,
    pub device: DeviceConfig,
    pub federation: FederationConfig,
    pub max_body_bytes: usize,
    pub log_level: String,
    pub log_format: LogFormat,
    /// OpenTelemetry export (off by default).
    pub tracing: TracingConfig,
    pub shutdown_grace_secs: u64,
    /// Set by `--dev`: plain HTTP on loopback, generated master key and demo
    /// accounts. Not a config-file key.
    #[serde(skip)]
    pub dev: bool,
}

/// `[database]`: how each process uses the database's connections.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseConfig {
    /// Connections at most per process: replicas × this must stay under
    /// the server's `max_connections`.
    pub pool_size: u32,
    /// How long a request waits for a connection before it gets 503.
    pub acquire_timeout_ms: u64,
    /// PostgreSQL cancels a statement that runs longer (0: never).
    pub statement_timeout_ms: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        let pool = crate::store::Pool::default();
        Self {
            pool_size: pool.size,
            acquire_timeout_ms: millis(pool.acquire_timeout),
            statement_timeout_ms: millis(pool.statement_timeout),
        }
    }
}

impl DatabaseConfig {
    pub fn pool(&self) -> crate::store::Pool {
        crate::store::Pool {
            size: self.pool_size,
            acquire_timeout: std::time::Duration::from_millis(self.acquire_timeout_ms),
            statement_timeout: std::time::Duration::from_millis(self.statement_timeout_ms),
        }
    }
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    pub access_seconds: u64,
    pub id_seconds: u64,
    pub refresh_seconds: u64,
    pub code_seconds: u64,
    /// How often a running server re-reads signing keys (rotations made by
    /// another instance or by `authserver keys rotate`).
    pub key_refresh_seconds: u64,
    /// `jwt` (RFC 9068, verified offline against the JWKS) or `opaque`
    /// (reference tokens: random strings that resource servers look up at
    /// `/introspect`, so revocation takes effect at once).
    pub access_format: AccessFormat,
}

/// What an access token is on the wire.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessFormat {
    #[default]
    Jwt,
    Opaque,
}

/// The change feed sidecars and gateways follow.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedConfig {
    /// How long changes are kept: a follower further behind starts from a
    /// snapshot. Revocations are kept until what they revoke expires.
    pub retention_seconds: u64,
    /// The longest a follower's request waits for a change (long poll).
    pub max_wait_seconds: u64,
}

impl Default for FeedConfig {
    fn default() -> Self {
        Self {
            retention_seconds: 24 * 3600,
            max_wait_seconds: 30,
        }
    }
}

/// The device authorization grant (RFC 8628).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeviceConfig {
    /// How long a device code and its user code are valid.
    pub code_seconds: u64,
    /// The least time between a device's polls (each `slow_down` adds 5).
    pub interval_seconds: u64,
    /// User codes entered per source address within `login.window_seconds`
    /// before `/device` refuses more.
    pub max_failures_per_address: u64,
}

impl Default for DeviceConfig {
    fn default() -> Self {
        Self {
            code_seconds: 600,
            interval_seconds: 5,
            max_failures_per_address: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginConfig {
    pub session_seconds: u64,
    /// Failed logins per account within `window_seconds` before lockout.
    pub max_failures_per_account: u64,
    /// Failed logins per source address within `window_seconds`.
    pub max_failures_per_address: u64,
    pub window_seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            issuer: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            database: DatabaseConfig::default(),
            redis_url: None,
            redis_prefix: "portcullis:auth:".into(),
            data_dir: PathBuf::from("data"),
            master_key: None,
            master_key_file: None,
            admin_token: None,
            trusted_proxies: Vec::new(),
            signing_alg: "ES256".into(),
            audience: "portcullis".into(),
            tokens: TokenConfig::default(),
            argon2: Argon2Config::default(),
            login: LoginConfig::default(),
            mfa: MfaConfig::default(),
            feed: FeedConfig::default(),
            device: DeviceConfig::default(),
            federation: FederationConfig::default(),
            max_body_bytes: 64 * 1024,
            log_level: "info".into(),
            log_format: LogFormat::Json,
            tracing: TracingConfig::default(),
            shutdown_grace_secs: 10,
            dev: false,
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_seconds: 600,
            id_seconds: 600,
            refresh_seconds: 30 * 24 * 3600,
            code_seconds: 60,
            key_refresh_seconds: 30,
            access_format: AccessFormat::Jwt,
        }
    }
}

/// Second factors.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MfaConfig {
    /// The name authenticator apps show next to the account.
    pub totp_issuer: String,
    /// `acr` of a sign-in with a password only.
    pub password_acr: String,
    /// `acr` of a sign-in with a second factor (what `acr_values` and
    /// step-up policies ask for).
    pub acr: String,
    /// How long a user has to enter the second factor after the password.
    pub pending_seconds: u64,
    /// How long a started enrolment waits for its confirming code.
    pub enrolment_seconds: u64,
    /// Removing a factor or making new recovery codes needs a sign-in no
    /// older than this.
    pub recent_seconds: i64,
    /// WebAuthn relying party id; the issuer's host unless set (dev mode on
    /// loopback: `localhost`, any port).
    pub webauthn_rp_id: Option<String>,
    /// Origins besides the issuer's that pages with passkeys are served from.
    pub webauthn_origins: Vec<String>,
    /// Authenticator models (AAGUIDs) allowed to register; empty: any.
    pub aaguid_allow: Vec<String>,
    /// Authenticator models refused at registration.
    pub aaguid_deny: Vec<String>,
    /// How SMS codes are sent: `off`, `log` (dev mode only) or `webhook`.
    pub sms_sender: SmsSender,
    /// The webhook SMS codes are POSTed to.
    pub sms_webhook_url: Option<String>,
    /// The HMAC key that signs each webhook call (at least 16 characters).
    pub sms_webhook_secret: Option<String>,
    /// How long an SMS code is valid.
    pub sms_code_seconds: u64,
    /// Codes sent per user, and per number, in an hour.
    pub sms_per_hour: u64,
}

/// How SMS codes leave the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsSender {
    /// SMS is not offered.
    #[default]
    Off,
    /// Development: the message goes to the log.
    Log,
    /// A signed JSON POST to `sms_webhook_url`.
    Webhook,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            totp_issuer: "Portcullis".into(),
            password_acr: "urn:portcullis:acr:pwd".into(),
            acr: "urn:portcullis:acr:mfa".into(),
            pending_seconds: 300,
            enrolment_seconds: 600,
            recent_seconds: 600,
            webauthn_rp_id: None,
            webauthn_origins: Vec::new(),
            aaguid_allow: Vec::new(),
            aaguid_deny: Vec::new(),
            sms_sender: SmsSender::Off,
            sms_webhook_url: None,
            sms_webhook_secret: None,
            sms_code_seconds: 300,
            sms_per_hour: 5,
        }
    }
}

impl Default for LoginConfig {
    fn default() -> Self {
        Self {
            session_seconds: 8 * 3600,
            max_failures_per_account: 5,
            max_failures_per_address: 50,
            window_seconds: 900,
        }
    }
}

/// Shortest admin token accepted: a guessable token is worse than none.
const MIN_ADMIN_TOKEN_LEN: usize = 24;

impl Config {
    /// Load from an optional file and the process environment.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config: Self = bootstrap::load("AUTHSERVER", file, std::env::vars())?;
        for value in [
            &mut config.admin_token,
            &mut config.redis_url,
            &mut config.database_url,
            &mut config.master_key,
            &mut config.issuer,
        ] {
            // An empty value (an unset deployment variable) means unset.
            if value.as_deref() == Some("") {
                *value = None;
            }
        }
        Ok(config)
    }

    /// Checks everything that can be checked without I/O.
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
        self.signing_algorithm()?;
        self.proxies()?;
        self.federation
            .validate(self.dev)
            .map_err(|(key, message)| ConfigError::invalid(&key, message))?;
        if self.mfa.sms_sender == SmsSender::Log && !self.dev {
            return Err(ConfigError::invalid(
                "mfa.sms_sender",
                "`log` writes codes to the log: dev mode only; use `webhook`",
            ));
        }
        if self.mfa.acr.is_empty() || self.mfa.acr == self.mfa.password_acr {
            return Err(ConfigError::invalid(
                "mfa.acr",
                "must be set and differ from `mfa.password_acr`",
            ));
        }
        let issuer = self.issuer_url()?;
        if !self.dev && !issuer.starts_with("https://") {
            return Err(ConfigError::invalid(
                "issuer",
                format!("`{issuer}` must be an https:// URL outside dev mode"),
            ));
        }
        if self.master_key.is_some() && self.master_key_file.is_some() {
            return Err(ConfigError::invalid(
                "master_key",
                "set `master_key` or `master_key_file`, not both",
            ));
        }
        if !self.dev && self.master_key.is_none() && self.master_key_file.is_none() {
            return Err(ConfigError::invalid(
                "master_key",
                "required outside dev mode (base64 of 32 bytes, e.g. PORTCULLIS_AUTHSERVER__MASTER_KEY; `authserver keys master` makes one)",
            ));
        }
        if let Some(key) = &self.master_key {
            MasterKey::from_base64(key)
                .map_err(|e| ConfigError::invalid("master_key", e.to_string()))?;
        }
        self.argon2
            .validate()
            .map_err(|e| ConfigError::invalid("argon2", e))?;
        let t = &self.tokens;
        for (key, value, max) in [
            (
                "tokens.access_seconds",
                t.access_seconds,
                MAX_ACCESS_SECONDS.unsigned_abs(),
            ),
            ("tokens.id_seconds", t.id_seconds, 24 * 3600),
            ("tokens.refresh_seconds", t.refresh_seconds, 365 * 24 * 3600),
            ("tokens.code_seconds", t.code_seconds, 600),
            ("tokens.key_refresh_seconds", t.key_refresh_seconds, 3600),
            (
                "login.session_seconds",
                self.login.session_seconds,
                30 * 24 * 3600,
            ),
            ("login.window_seconds", self.login.window_seconds, 24 * 3600),
            (
                "login.max_failures_per_account",
                self.login.max_failures_per_account,
                1000,
            ),
            (
                "login.max_failures_per_address",
                self.login.max_failures_per_address,
                100_000,
            ),
            ("mfa.pending_seconds", self.mfa.pending_seconds, 3600),
            ("mfa.enrolment_seconds", self.mfa.enrolment_seconds, 3600),
            ("mfa.sms_code_seconds", self.mfa.sms_code_seconds, 900),
            ("mfa.sms_per_hour", self.mfa.sms_per_hour, 100),
            (
                "feed.retention_seconds",
                self.feed.retention_seconds,
                30 * 24 * 3600,
            ),
            ("feed.max_wait_seconds", self.feed.max_wait_seconds, 300),
            ("device.code_seconds", self.device.code_seconds, 3600),
            ("device.interval_seconds", self.device.interval_seconds, 60),
            (
                "device.max_failures_per_address",
                self.device.max_failures_per_address,
                1000,
            ),
        ] {
            if value == 0 || value > max {
                return Err(ConfigError::invalid(key, format!("must be 1..={max}")));
            }
        }
        if !(1..=86_400).contains(&self.mfa.recent_seconds) {
            return Err(ConfigError::invalid(
                "mfa.recent_seconds",
                "must be 1..=86400",
            ));
        }
        if self.audience.is_empty() {
            return Err(ConfigError::invalid("audience", "must not be empty"));
        }
        if self.max_body_bytes == 0 {
            return Err(ConfigError::invalid(
                "max_body_bytes",
                "must be greater than 0",
            ));
        }
        if let Some(url) = &self.database_url
            && !(url.starts_with("postgres://")
                || url.starts_with("postgresql://")
                || url.starts_with("sqlite:"))
        {
            return Err(ConfigError::invalid(
                "database_url",
                format!(
                    "`{}` is neither postgres:// nor sqlite:",
                    bootstrap::config::redact_url(url)
                ),
            ));
        }
        if self.database.pool_size == 0 {
            return Err(ConfigError::invalid(
                "database.pool_size",
                "must be at least 1",
            ));
        }
        if self.database.acquire_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "database.acquire_timeout_ms",
                "must be at least 1",
            ));
        }
        if let Some(url) = &self.redis_url
            && let Err(e) = bootstrap::redis::Redis::new(url, std::time::Duration::from_secs(1))
        {
            return Err(ConfigError::invalid("redis_url", e.to_string()));
        }
        Ok(())
    }

    pub fn signing_algorithm(&self) -> Result<Algorithm, ConfigError> {
        match self.signing_alg.as_str() {
            "ES256" => Ok(Algorithm::ES256),
            "RS256" => Ok(Algorithm::RS256),
            "PS256" => Ok(Algorithm::PS256),
            "EdDSA" => Ok(Algorithm::EdDSA),
            other => Err(ConfigError::invalid(
                "signing_alg",
                format!("`{other}` is not one of ES256, RS256, PS256, EdDSA"),
            )),
        }
    }

    /// The issuer URL without a trailing slash.
    pub fn issuer_url(&self) -> Result<String, ConfigError> {
        let issuer = match &self.issuer {
            Some(i) => i.trim_end_matches('/').to_owned(),
            None if self.dev => format!("http://{}", self.listen),
            None => {
                return Err(ConfigError::invalid(
                    "issuer",
                    "required outside dev mode (the public https:// URL of this server)",
                ));
            }
        };
        let rest = issuer
            .strip_prefix("https://")
            .or_else(|| issuer.strip_prefix("http://"));
        match rest {
            Some(host) if !host.is_empty() && !issuer.contains(['?', '#']) => Ok(issuer),
            _ => Err(ConfigError::invalid(
                "issuer",
                format!("`{issuer}` is not an http(s) URL without query or fragment"),
            )),
        }
    }

    pub fn proxies(&self) -> Result<Vec<bootstrap::net::Cidr>, ConfigError> {
        bootstrap::net::Cidr::parse_all("trusted_proxies", &self.trusted_proxies)
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{}", self.data_dir.join("authserver.db").display()))
    }
}
