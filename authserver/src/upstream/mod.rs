//! The upstream identity providers as configured (`[[federation.providers]]`),
//! each with its metadata discovered on first use and kept; how a
//! sign-in with one goes is `federation`.

use openidconnect::core::CoreProviderMetadata;

use crate::config::{FederationConfig, ProviderConfig};

pub mod github;
pub mod oidc;

/// Every configured provider.
#[derive(Debug, Default)]
pub struct Upstreams {
    providers: Vec<Upstream>,
}

/// One provider: its configuration, and its metadata once discovered (a
/// failed discovery is tried again at the next sign-in).
#[derive(Debug)]
pub struct Upstream {
    pub config: ProviderConfig,
    metadata: tokio::sync::OnceCell<CoreProviderMetadata>,
}

impl Upstreams {
    pub fn new(config: &FederationConfig) -> Self {
        Self {
            providers: config
                .providers
                .iter()
                .map(|c| Upstream {
                    config: c.clone(),
                    metadata: tokio::sync::OnceCell::new(),
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
    /// The provider's metadata, discovered once (`oidc::discover`).
    pub async fn metadata(
        &self,
        http: &reqwest::Client,
        dev: bool,
    ) -> Result<&CoreProviderMetadata, String> {
        self.metadata
            .get_or_try_init(|| oidc::discover(http, &self.config, dev))
            .await
    }
}
