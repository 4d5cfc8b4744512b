//! The upstream identity providers as configured (`[[federation.providers]]`),
//! each with its metadata and keys (OpenID Connect discovery, SAML
//! metadata) read on first use and again after [`REDISCOVER`] (keys
//! rotate); how a sign-in with one goes is `federation`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::CoreProviderMetadata;
use samael::service_provider::ServiceProvider;

use crate::config::{FederationConfig, ProviderConfig};

pub mod github;
pub mod oidc;
pub mod saml;

/// Every configured provider.
#[derive(Debug, Default)]
pub struct Upstreams {
    providers: Vec<Upstream>,
}

/// How long discovered metadata and keys are used before they are read
/// again.
pub const REDISCOVER: Duration = Duration::from_secs(3600);

/// One provider: its configuration, and its metadata once read (a failed
/// read is tried again at the next sign-in).
#[derive(Debug)]
pub struct Upstream {
    pub config: ProviderConfig,
    metadata: Cached<CoreProviderMetadata>,
    saml: Cached<ServiceProvider>,
}

/// What was read from a provider, and when; one reading at a time.
struct Cached<T>(tokio::sync::Mutex<Option<(Instant, Arc<T>)>>);

impl<T> std::fmt::Debug for Cached<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cached")
    }
}

impl<T> Cached<T> {
    fn new() -> Self {
        Self(tokio::sync::Mutex::new(None))
    }

    /// The value read, or a new reading once older than [`REDISCOVER`].
    async fn get(&self, read: impl Future<Output = Result<T, String>>) -> Result<Arc<T>, String> {
        let mut held = self.0.lock().await;
        if let Some((at, value)) = held.as_ref()
            && at.elapsed() < REDISCOVER
        {
            return Ok(value.clone());
        }
        let fresh = Arc::new(read.await?);
        *held = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}

impl Upstreams {
    pub fn new(config: &FederationConfig) -> Self {
        Self {
            providers: config
                .providers
                .iter()
                .map(|c| Upstream {
                    config: c.clone(),
                    metadata: Cached::new(),
                    saml: Cached::new(),
                })
                .collect(),
        }
    }

    /// `(id, name)` of each provider, for the login page's buttons.
    pub fn buttons(&self) -> Vec<(&str, &str)> {
        self.providers
            .iter()
            .map(|p| (p.config.id.as_str(), p.config.name.as_str()))
            .collect()
    }

    pub fn get(&self, id: &str) -> Option<&Upstream> {
        self.providers.iter().find(|p| p.config.id == id)
    }
}

impl Upstream {
    /// The provider's OpenID Connect metadata (`oidc::discover`).
    pub async fn metadata(
        &self,
        http: &reqwest::Client,
        dev: bool,
    ) -> Result<Arc<CoreProviderMetadata>, String> {
        self.metadata
            .get(oidc::discover(http, &self.config, dev))
            .await
    }

    /// Our SAML service provider for this IdP (`saml::load`), our assertion
    /// consumer being `acs_url`.
    pub async fn saml(
        &self,
        http: &reqwest::Client,
        issuer: &str,
        acs_url: &str,
    ) -> Result<Arc<ServiceProvider>, String> {
        self.saml
            .get(saml::load(http, &self.config, issuer, acs_url))
            .await
    }
}
