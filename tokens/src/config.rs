//! How issuers are trusted, as a config file says it (`[[issuers]]`,
//! `[issuers.introspection]`), and the checks run before anything is built.

use jsonwebtoken::Algorithm;
use serde::Deserialize;

use crate::error::ConfigError;

/// How an issuer is trusted. In a config file: `[[issuers]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Must equal the tokens' `iss` exactly.
    pub issuer: String,
    /// Where the keys are. Without it, OpenID discovery on `issuer` finds it.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// A token is accepted when its `aud` holds one of these. Required: a
    /// token minted for another application must not pass here.
    pub audiences: Vec<String>,
    /// Allowed signing algorithms; asymmetric only.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Required JOSE `typ` (e.g. `at+jwt` for RFC 9068 access tokens);
    /// compared case-insensitively, with or without `application/`.
    #[serde(default)]
    pub token_type: Option<String>,
    /// How often the JWKS is refetched in the background.
    #[serde(default = "default_refresh")]
    pub refresh_seconds: u64,
    /// The least time between two fetches caused by unknown `kid`s, so
    /// tokens with random `kid`s cannot make us hammer the issuer.
    #[serde(default = "default_min_refetch")]
    pub min_refetch_seconds: u64,
    /// Opaque tokens are looked up here (RFC 7662). At most one issuer:
    /// an opaque token does not say who issued it.
    #[serde(default)]
    pub introspection: Option<IntrospectionConfig>,
    /// Put in front of this issuer's `sub`, `client_id`, `azp`, `groups`
    /// and `roles` once a token is verified (e.g. `partner:`), so two
    /// issuers' `bob` are two principals to policies and upstreams, and one
    /// issuer's `admin` role is not another's. Required for every issuer
    /// when more than one is configured; no prefix may begin another.
    #[serde(default)]
    pub subject_prefix: Option<String>,
}

fn default_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn default_leeway() -> u64 {
    30
}
fn default_refresh() -> u64 {
    300
}
fn default_min_refetch() -> u64 {
    10
}

pub(crate) const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

impl IssuerConfig {
    /// Check a list of issuers (as `[[issuers]]` in a config file) without
    /// building anything: services call it before binding a port.
    pub fn check_all(configs: &[Self]) -> Result<(), ConfigError> {
        Self::algorithms_of_all(configs).map(|_| ())
    }

    /// Check every issuer; returns each one's parsed algorithms.
    pub(crate) fn algorithms_of_all(configs: &[Self]) -> Result<Vec<Vec<Algorithm>>, ConfigError> {
        let mut out = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            if configs[..index].iter().any(|c| c.issuer == config.issuer) {
                return Err(ConfigError {
                    index,
                    field: "issuer",
                    message: format!("`{}` is configured twice", config.issuer),
                });
            }
            out.push(config.validate(index)?);
            if config.introspection.is_some()
                && configs[..index].iter().any(|c| c.introspection.is_some())
            {
                return Err(ConfigError {
                    index,
                    field: "introspection",
                    message:
                        "only one issuer can introspect: opaque tokens do not name their issuer"
                            .into(),
                });
            }
        }
        for (index, config) in configs.iter().enumerate() {
            let prefix = config.subject_prefix.as_deref();
            if prefix == Some("") || (configs.len() > 1 && prefix.is_none()) {
                return Err(ConfigError {
                    index,
                    field: "subject_prefix",
                    message: "with several issuers, each needs a non-empty `subject_prefix` (e.g. \"partner:\"), so that two issuers' subjects never name one principal".into(),
                });
            }
            if let Some(p) = prefix
                && let Some(other) = configs.iter().enumerate().find_map(|(j, c)| {
                    let q = c.subject_prefix.as_deref()?;
                    (j != index && (q.starts_with(p) || p.starts_with(q))).then_some(q)
                })
            {
                return Err(ConfigError {
                    index,
                    field: "subject_prefix",
                    message: format!(
                        "`{p}` and `{other}` overlap: one issuer's subjects could pass for the other's"
                    ),
                });
            }
        }
        Ok(out)
    }

    fn validate(&self, index: usize) -> Result<Vec<Algorithm>, ConfigError> {
        let err = |field, message: String| ConfigError {
            index,
            field,
            message,
        };
        let url_ok = |u: &str| u.starts_with("https://") || u.starts_with("http://");
        if !url_ok(&self.issuer) {
            return Err(err("issuer", "must be an http(s) URL".into()));
        }
        if let Some(uri) = &self.jwks_uri
            && !url_ok(uri)
        {
            return Err(err("jwks_uri", "must be an http(s) URL".into()));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(err(
                "audiences",
                "list at least one non-empty audience".into(),
            ));
        }
        if self.algorithms.is_empty() {
            return Err(err("algorithms", "list at least one algorithm".into()));
        }
        let mut algorithms = Vec::new();
        for name in &self.algorithms {
            let alg: Algorithm = name
                .parse()
                .map_err(|_| err("algorithms", format!("unknown algorithm `{name}`")))?;
            if !ASYMMETRIC.contains(&alg) {
                return Err(err(
                    "algorithms",
                    format!("`{name}` is symmetric; keys come from a public JWKS"),
                ));
            }
            algorithms.push(alg);
        }
        if self.leeway_seconds > 300 {
            return Err(err("leeway_seconds", "at most 300".into()));
        }
        if self.refresh_seconds < 10 {
            return Err(err("refresh_seconds", "at least 10".into()));
        }
        if let Some(introspection) = &self.introspection {
            introspection
                .validate()
                .map_err(|(field, message)| err(field, message))?;
        }
        Ok(algorithms)
    }
}

/// How an issuer's opaque tokens are checked. In a config file:
/// `[issuers.introspection]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct IntrospectionConfig {
    /// Without it, OpenID discovery on the issuer finds it.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// This service's client at the issuer (`client_secret_basic`).
    pub client_id: String,
    /// The secret itself, or `client_secret_file` (a mounted secret).
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<String>,
    /// How long an answer is trusted: the delay before a revocation at the
    /// issuer takes effect here. Never beyond the token's `exp`.
    #[serde(default = "default_cache_seconds")]
    pub cache_seconds: u64,
    /// How long a request waits for the issuer before it is refused (503).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_cache_seconds() -> u64 {
    30
}
fn default_timeout_ms() -> u64 {
    2000
}

impl IntrospectionConfig {
    /// Checks the settings; returns the field at fault and why.
    pub(crate) fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(endpoint) = &self.endpoint
            && !(endpoint.starts_with("https://") || endpoint.starts_with("http://"))
        {
            return Err(("introspection.endpoint", "must be an http(s) URL".into()));
        }
        if self.client_id.is_empty() {
            return Err(("introspection.client_id", "must not be empty".into()));
        }
        self.secret()
            .map_err(|e| ("introspection.client_secret", e))?;
        if !(1..=300).contains(&self.cache_seconds) {
            return Err(("introspection.cache_seconds", "between 1 and 300".into()));
        }
        if !(10..=30_000).contains(&self.timeout_ms) {
            return Err(("introspection.timeout_ms", "between 10 and 30000".into()));
        }
        Ok(())
    }

    pub(crate) fn secret(&self) -> Result<String, String> {
        match (&self.client_secret, &self.client_secret_file) {
            (Some(s), None) if !s.is_empty() => Ok(s.clone()),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\r', '\n']).to_owned())
                .map_err(|e| format!("client_secret_file `{path}`: {e}"))
                .and_then(|s| {
                    if s.is_empty() {
                        Err(format!("client_secret_file `{path}` is empty"))
                    } else {
                        Ok(s)
                    }
                }),
            _ => Err("set exactly one of `client_secret` and `client_secret_file`".into()),
        }
    }
}
