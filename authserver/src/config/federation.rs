//! `[[federation.providers]]`: the upstream identity providers users may
//! sign in with, each a button on the login page.

use std::collections::BTreeMap;

use serde::Deserialize;

/// Every upstream provider.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FederationConfig {
    pub providers: Vec<ProviderConfig>,
}

/// One upstream provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// In URLs and in the links kept: letters, digits, `-`, `_`.
    pub id: String,
    /// The button says "Sign in with {name}".
    pub name: String,
    /// `oidc`: a generic OpenID Connect provider found by discovery.
    #[serde(default)]
    pub kind: ProviderKind,
    /// The provider's issuer identifier (discovery is below it).
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    /// Asked for besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A first sign-in with no linked account creates one (just in time).
    #[serde(default)]
    pub jit: bool,
    /// When set, only accounts with a verified address in one of these
    /// domains are created just in time.
    #[serde(default)]
    pub allowed_domains: Vec<String>,
    /// The claim that lists the account's groups at the provider.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Upstream group → local group: at each sign-in the user is made a
    /// member of exactly the mapped local groups their upstream groups
    /// name (other memberships are untouched).
    #[serde(default)]
    pub group_map: BTreeMap<String, String>,
}

/// The protocols a provider can speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProviderKind {
    #[default]
    Oidc,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

impl FederationConfig {
    /// What can be checked without I/O: ids unique and URL-safe, issuers
    /// https outside dev mode.
    pub fn validate(&self, dev: bool) -> Result<(), (String, String)> {
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let key = |k: &str| format!("federation.providers[{i}].{k}");
            let ok_id = !p.id.is_empty()
                && p.id.len() <= 32
                && p.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok_id {
                return Err((key("id"), "must be 1-32 letters, digits, - or _".into()));
            }
            if !seen.insert(p.id.as_str()) {
                return Err((key("id"), format!("`{}` is used twice", p.id)));
            }
            if !dev && !p.issuer.starts_with("https://") {
                return Err((
                    key("issuer"),
                    format!("`{}` must be an https:// URL outside dev mode", p.issuer),
                ));
            }
            if url::Url::parse(&p.issuer).is_err() {
                return Err((key("issuer"), format!("`{}` is not a URL", p.issuer)));
            }
            if p.client_id.is_empty() {
                return Err((key("client_id"), "is required".into()));
            }
        }
        Ok(())
    }
}
