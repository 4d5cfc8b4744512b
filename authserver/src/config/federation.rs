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
    /// `oidc`: a generic OpenID Connect provider found by discovery;
    /// `github`: GitHub's OAuth apps (OAuth 2.0 without OpenID Connect).
    #[serde(default)]
    pub kind: ProviderKind,
    /// OpenID Connect: the issuer identifier (discovery is below it).
    /// GitHub: the web base, `https://github.com` unless set (GitHub
    /// Enterprise Server, a stand-in in tests).
    #[serde(default)]
    pub issuer: String,
    /// GitHub's API base: `https://api.github.com` unless set.
    pub api_url: Option<String>,
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
    Github,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

impl ProviderConfig {
    /// The web base or issuer, with the kind's default.
    pub fn base(&self) -> &str {
        match (self.kind, self.issuer.as_str()) {
            (ProviderKind::Github, "") => "https://github.com",
            (_, issuer) => issuer.trim_end_matches('/'),
        }
    }

    /// GitHub's API base.
    pub fn api(&self) -> &str {
        self.api_url
            .as_deref()
            .unwrap_or("https://api.github.com")
            .trim_end_matches('/')
    }
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
            for (name, url) in [("issuer", p.base()), ("api_url", p.api())] {
                if url::Url::parse(url).is_err() {
                    return Err((key(name), format!("`{url}` is not a URL")));
                }
                if !dev && !url.starts_with("https://") {
                    return Err((
                        key(name),
                        format!("`{url}` must be an https:// URL outside dev mode"),
                    ));
                }
            }
            if p.client_id.is_empty() {
                return Err((key("client_id"), "is required".into()));
            }
        }
        Ok(())
    }
}
