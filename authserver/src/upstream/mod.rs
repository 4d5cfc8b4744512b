//! The upstream identity providers as configured (`[[federation.providers]]`),
//! each with its metadata and keys discovered on first use and read again
//! after [`REDISCOVER`] (keys rotate); how a sign-in with one goes is
//! `federation`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::CoreProviderMetadata;

use crate::config::{FederationConfig, ProviderConfig};

pub mod github;
pub mod oidc;

/// Every configured provider.
#[derive(Debug, Default)]
pub struct Upstreams {
    providers: Vec<Upstream>,
}

/// How long discovered metadata and keys are used before they are read
/// again.
pub const REDISCOVER: Duration = Duration::from_secs(3600);

/// One provider: its configuration, and its metadata once discovered (a
/// failed discovery is tried again at the next sign-in).
#[derive(Debug)]
pub struct Upstream {
    pub config: ProviderConfig,
    metadata: tokio::sync::Mutex<Option<(Instant, Arc<CoreProviderMetadata>)>>,
}

impl Upstreams {
    pub fn new(config: &FederationConfig) -> Self {
        Self {
            providers: config
                .providers
                .iter()
                .map(|c| Upstream {
                    config: c.clone(),
                    metadata: tokio::sync::Mutex::new(None),
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
    /// The provider's metadata (`oidc::discover`), read again once older
    /// than [`REDISCOVER`]; one discovery at a time.
    pub async fn metadata(
        &self,
        http: &reqwest::Client,
        dev: bool,
    ) -> Result<Arc<CoreProviderMetadata>, String> {
        let mut held = self.metadata.lock().await;
        if let Some((at, metadata)) = held.as_ref()
            && at.elapsed() < REDISCOVER
        {
            return Ok(metadata.clone());
        }
        let fresh = Arc::new(oidc::discover(http, &self.config, dev).await?);
        *held = Some((Instant::now(), fresh.clone()));
        Ok(fresh)
    }
}
