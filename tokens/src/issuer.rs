//! One trusted issuer at run time: its JWKS kept fresh, its discovery.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};

use crate::config::IssuerConfig;
use crate::keys::KeySet;

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
                status.fetched_at = Some(crate::verified::now());
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
