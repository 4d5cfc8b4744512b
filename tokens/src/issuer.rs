//! One trusted issuer: its configuration, and its JWKS kept fresh.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::introspection::IntrospectionConfig;
use crate::keys::KeySet;

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

/// Claims naming who a token is for or from, and the groups and roles it
/// puts them in: all of them are the issuer's names.
const QUALIFIED_CLAIMS: [&str; 5] = ["sub", "client_id", "azp", "groups", "roles"];

/// Qualify a verified payload's names with its issuer's prefix: one
/// issuer's `bob` is not another's, and neither is its `admin` role.
pub fn qualify(claims: &mut serde_json::Map<String, serde_json::Value>, prefix: Option<&str>) {
    let Some(prefix) = prefix else {
        return;
    };
    for name in QUALIFIED_CLAIMS {
        match claims.get_mut(name) {
            Some(serde_json::Value::String(s)) => s.insert_str(0, prefix),
            Some(serde_json::Value::Array(items)) => {
                for item in items {
                    if let serde_json::Value::String(s) = item {
                        s.insert_str(0, prefix);
                    }
                }
            }
            _ => {}
        }
    }
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

const ASYMMETRIC: [Algorithm; 9] = [
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

/// What `/v1/status` and readiness report about an issuer's keys.
#[derive(Debug, Clone, Serialize, Default)]
pub struct IssuerStatus {
    pub issuer: String,
    pub keys: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetched_at: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

pub(crate) struct Issuer {
    pub config: IssuerConfig,
    pub algorithms: Vec<Algorithm>,
    pub keys: ArcSwap<KeySet>,
    /// Held while fetching, so concurrent refetches collapse into one; holds
    /// when the last fetch caused by an unknown `kid` started.
    fetching: tokio::sync::Mutex<Option<Instant>>,
    status: Mutex<IssuerStatus>,
    pub http: reqwest::Client,
}

/// What OpenID discovery tells about an issuer.
#[derive(Deserialize)]
pub(crate) struct Discovery {
    issuer: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
}

impl Issuer {
    pub fn new(config: IssuerConfig, algorithms: Vec<Algorithm>, http: reqwest::Client) -> Self {
        let status = IssuerStatus {
            issuer: config.issuer.clone(),
            ..Default::default()
        };
        Self {
            config,
            algorithms,
            keys: ArcSwap::from_pointee(KeySet::default()),
            fetching: tokio::sync::Mutex::new(None),
            status: Mutex::new(status),
            http,
        }
    }

    pub fn status(&self) -> IssuerStatus {
        self.status
            .lock()
            .map(|s| s.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Fetch the JWKS now. With `miss_gap` (a fetch caused by an unknown
    /// `kid`), skip it when another such fetch finished less than that ago.
    /// Callers arriving during a fetch wait for it instead of starting one.
    pub async fn refresh(&self, miss_gap: Option<Duration>) {
        let mut last_miss = self.fetching.lock().await;
        if let Some(gap) = miss_gap {
            if last_miss.is_some_and(|t| t.elapsed() < gap) {
                return;
            }
            *last_miss = Some(Instant::now());
        }
        let result = self.fetch().await;
        let mut status = self.status.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(set) => {
                status.keys = set.keys.len();
                status.fetched_at = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_secs());
                status.last_error = None;
                self.keys.store(Arc::new(set));
            }
            Err(e) => {
                // Keep serving with the keys we have.
                tracing::warn!(issuer = %self.config.issuer, error = %e, "JWKS refresh failed");
                status.last_error = Some(e);
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, String> {
        let uri = match &self.config.jwks_uri {
            Some(uri) => uri.clone(),
            None => self.discover().await?.jwks_uri,
        };
        let body = self.get(&uri).await?;
        KeySet::parse(&body).map_err(|e| format!("{uri}: {e}"))
    }

    pub async fn discover(&self) -> Result<Discovery, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let body = self.get(&url).await?;
        let doc: Discovery =
            serde_json::from_slice(&body).map_err(|e| format!("{url}: discovery: {e}"))?;
        if doc.issuer != self.config.issuer {
            return Err(format!(
                "{url}: discovery names issuer `{}`, expected `{}`",
                doc.issuer, self.config.issuer
            ));
        }
        Ok(doc)
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        const LIMIT: usize = 1 << 20;
        let mut response = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("{url}: HTTP {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            if body.len() + chunk.len() > LIMIT {
                return Err(format!("{url}: response larger than {LIMIT} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
