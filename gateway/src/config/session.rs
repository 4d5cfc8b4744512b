//! `[session]`: the gateway as an OpenID Connect client for browsers.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// The OpenID provider (the authserver); discovery finds its endpoints.
    pub issuer: String,
    /// This gateway's confidential client at the provider.
    pub client_id: String,
    pub client_secret: String,
    /// Registered at the provider; its path is the callback (usually
    /// `https://app.example.com/_auth/callback`). An https URI makes the
    /// cookies `Secure` and `__Host-` prefixed.
    pub redirect_uri: String,
    #[serde(default = "default_session_scopes")]
    pub scopes: Vec<String>,
    /// The `aud` of the provider's access tokens.
    #[serde(default = "default_access_audience")]
    pub access_audience: String,
    /// Seals cookies (AES-256-GCM, keys derived by HKDF): at least 32
    /// random bytes; every replica needs the same.
    pub cookie_secret: String,
    #[serde(default = "default_cookie_name")]
    pub cookie_name: String,
    /// A session ends this long after sign-in, refreshed or not.
    #[serde(default = "default_lifetime")]
    pub lifetime_secs: u64,
    /// Refresh the access token when it has less than this left.
    #[serde(default = "default_refresh_before")]
    pub refresh_before_secs: u64,
    /// Where the provider sends the browser after `/_auth/logout`.
    pub post_logout_redirect_uri: Option<String>,
    /// Where sessions live: `auto` (the cookie, or Redis when too large for
    /// one), `cookie`, or `redis` (the cookie only names the session, so a
    /// logout ends it on every replica). Redis needs `redis_url`.
    #[serde(default)]
    pub store: SessionStore,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStore {
    #[default]
    Auto,
    Cookie,
    Redis,
}

pub(super) fn default_session_scopes() -> Vec<String> {
    ["openid", "profile", "email", "offline_access"]
        .map(String::from)
        .to_vec()
}

pub(super) fn default_access_audience() -> String {
    "portcullis".into()
}

pub(super) fn default_cookie_name() -> String {
    "portcullis_session".into()
}

pub(super) fn default_lifetime() -> u64 {
    8 * 3600
}

pub(super) fn default_refresh_before() -> u64 {
    60
}

impl SessionConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let http_url = |field: &str, value: &str| match url::Url::parse(value) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
            _ => Err(ConfigError::invalid(
                format!("session.{field}"),
                "must be an absolute http(s) URL",
            )),
        };
        http_url("issuer", &self.issuer)?;
        let redirect = http_url("redirect_uri", &self.redirect_uri)?;
        if redirect.path() == "/" || redirect.path().starts_with("/_auth/logout") {
            return Err(ConfigError::invalid(
                "session.redirect_uri",
                "needs a callback path of its own, e.g. /_auth/callback",
            ));
        }
        if let Some(after) = &self.post_logout_redirect_uri {
            http_url("post_logout_redirect_uri", after)?;
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(ConfigError::invalid(
                "session",
                "`client_id` and `client_secret` are required",
            ));
        }
        if self.cookie_secret.len() < 32 {
            return Err(ConfigError::invalid(
                "session.cookie_secret",
                "needs at least 32 bytes (e.g. `openssl rand -base64 32`)",
            ));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err(ConfigError::invalid(
                "session.scopes",
                "must include `openid`",
            ));
        }
        if self.cookie_name.is_empty()
            || !self
                .cookie_name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::invalid(
                "session.cookie_name",
                "letters, digits, `_` and `-` only",
            ));
        }
        if self.lifetime_secs < 60 {
            return Err(ConfigError::invalid("session.lifetime_secs", "at least 60"));
        }
        Ok(())
    }
}
