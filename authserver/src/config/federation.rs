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
    /// `google` and `entra`: the same with their defaults (Entra's tenants
    /// below); `github`: GitHub's OAuth apps (OAuth 2.0 without OpenID
    /// Connect); `saml`: a SAML 2.0 identity provider (its metadata below).
    #[serde(default)]
    pub kind: ProviderKind,
    /// OpenID Connect: the issuer identifier (discovery is below it);
    /// Google's and Entra's and GitHub's are the defaults (set it for
    /// GitHub Enterprise Server, a sovereign cloud, a stand-in in tests).
    #[serde(default)]
    pub issuer: String,
    /// GitHub's API base: `https://api.github.com` unless set.
    pub api_url: Option<String>,
    /// Entra: the directory (tenant id), or `common` / `organizations`
    /// for accounts of any tenant in `allowed_tenants`.
    pub tenant: Option<String>,
    /// Entra: the tenants (ids) whose accounts may sign in; a single-tenant
    /// provider allows its own.
    #[serde(default)]
    pub allowed_tenants: Vec<String>,
    /// Not for SAML, required for the others.
    #[serde(default)]
    pub client_id: String,
    pub client_secret: Option<String>,
    /// SAML: the IdP's metadata, from a file...
    pub metadata_file: Option<std::path::PathBuf>,
    /// ...or from a URL (https outside dev mode), read again hourly.
    pub metadata_url: Option<String>,
    /// SAML: our entity id at the IdP; by default the URL of our metadata
    /// (`{issuer}/login/federated/{id}/metadata`).
    pub entity_id: Option<String>,
    /// SAML: the NameID format that names an account, asked for and the
    /// only one taken (persistent unless set; never transient).
    #[serde(default = "default_name_id_format")]
    pub name_id_format: String,
    /// SAML: the attribute (its `Name`) with the address; the default is
    /// `mail`'s (urn:oid:0.9.2342.19200300.100.1.3).
    #[serde(default = "default_email_attribute")]
    pub email_attribute: String,
    /// SAML: the attribute with the display name (default: `displayName`'s,
    /// urn:oid:2.16.840.1.113730.3.1.241).
    #[serde(default = "default_name_attribute")]
    pub name_attribute: String,
    /// SAML says nothing of whether an address is verified: set this only
    /// for an IdP whose directory owns the addresses it sends (a company
    /// IdP for its own domains), so `allowed_domains` can apply.
    #[serde(default)]
    pub trust_email: bool,
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
    /// The claim (SAML: the attribute) that lists the account's groups at
    /// the provider.
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
    Google,
    Entra,
    Github,
    Saml,
}

fn default_scopes() -> Vec<String> {
    vec!["email".into(), "profile".into()]
}

impl ProviderConfig {
    /// The web base or issuer, with the kind's default.
    pub fn base(&self) -> &str {
        match (self.kind, self.issuer.as_str()) {
            (ProviderKind::Github, "") => "https://github.com",
            (ProviderKind::Google, "") => "https://accounts.google.com",
            (ProviderKind::Entra, "") => "https://login.microsoftonline.com",
            (ProviderKind::Entra | ProviderKind::Github, base) => base.trim_end_matches('/'),
            (_, issuer) => issuer,
        }
    }

    /// Entra's tenant segment, and whether it stands for many tenants.
    pub fn entra_tenant(&self) -> (&str, bool) {
        let tenant = self.tenant.as_deref().unwrap_or("organizations");
        (
            tenant,
            matches!(tenant, "common" | "organizations" | "consumers"),
        )
    }

    /// Whether an Entra account of tenant `tid` may sign in.
    pub fn tenant_allowed(&self, tid: &str) -> bool {
        let (tenant, many) = self.entra_tenant();
        if many {
            self.allowed_tenants
                .iter()
                .any(|t| t.eq_ignore_ascii_case(tid))
        } else {
            tenant.eq_ignore_ascii_case(tid)
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

fn default_name_id_format() -> String {
    "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into()
}

fn default_email_attribute() -> String {
    "urn:oid:0.9.2342.19200300.100.1.3".into()
}

fn default_name_attribute() -> String {
    "urn:oid:2.16.840.1.113730.3.1.241".into()
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
            if p.kind == ProviderKind::Saml {
                saml(p, dev).map_err(|(k, m)| (key(k), m))?;
                continue;
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
            if p.kind == ProviderKind::Entra && p.entra_tenant().1 && p.allowed_tenants.is_empty() {
                return Err((
                    key("allowed_tenants"),
                    "a multi-tenant Entra provider needs the tenant ids it accepts".into(),
                ));
            }
            if p.client_id.is_empty() {
                return Err((key("client_id"), "is required".into()));
            }
        }
        Ok(())
    }
}

/// A SAML provider's own rules: its metadata from exactly one place, a
/// NameID format that names someone twice.
fn saml(p: &ProviderConfig, dev: bool) -> Result<(), (&'static str, String)> {
    if p.name_id_format.ends_with(":transient") {
        return Err((
            "name_id_format",
            "a transient NameID names nobody twice: use persistent (or the IdP's stable one)"
                .into(),
        ));
    }
    match (&p.metadata_file, &p.metadata_url) {
        (Some(_), None) => Ok(()),
        (None, Some(url)) if url::Url::parse(url).is_err() => {
            Err(("metadata_url", format!("`{url}` is not a URL")))
        }
        (None, Some(url)) if !dev && !url.starts_with("https://") => Err((
            "metadata_url",
            format!("`{url}` must be an https:// URL outside dev mode"),
        )),
        (None, Some(_)) => Ok(()),
        _ => Err((
            "metadata_url",
            "a SAML provider needs its IdP's metadata: metadata_file or metadata_url, not both"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(text: &str) -> FederationConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn presets_fill_in_the_well_known_endpoints() {
        let c = parse(
            r#"
[[providers]]
id = "google"
name = "Google"
kind = "google"
client_id = "g"
[[providers]]
id = "entra"
name = "Microsoft"
kind = "entra"
tenant = "11111111-1111-1111-1111-111111111111"
client_id = "e"
[[providers]]
id = "github"
name = "GitHub"
kind = "github"
client_id = "h"
"#,
        );
        c.validate(false).unwrap();
        let bases: Vec<&str> = c.providers.iter().map(ProviderConfig::base).collect();
        assert_eq!(
            bases,
            [
                "https://accounts.google.com",
                "https://login.microsoftonline.com",
                "https://github.com"
            ]
        );
        let entra = &c.providers[1];
        assert!(entra.tenant_allowed("11111111-1111-1111-1111-111111111111"));
        assert!(!entra.tenant_allowed("22222222-2222-2222-2222-222222222222"));
        assert_eq!(c.providers[2].api(), "https://api.github.com");
    }

    #[test]
    fn what_cannot_work_is_refused_by_key() {
        let multi = parse(
            "[[providers]]\nid = \"e\"\nname = \"E\"\nkind = \"entra\"\ntenant = \"common\"\nclient_id = \"x\"",
        );
        let (key, _) = multi.validate(false).unwrap_err();
        assert_eq!(key, "federation.providers[0].allowed_tenants");
        let plain = parse(
            "[[providers]]\nid = \"p\"\nname = \"P\"\nissuer = \"http://idp.test\"\nclient_id = \"x\"",
        );
        assert_eq!(
            plain.validate(false).unwrap_err().0,
            "federation.providers[0].issuer"
        );
        plain.validate(true).unwrap();
        let twice = parse(
            "[[providers]]\nid = \"a\"\nname = \"A\"\nkind = \"google\"\nclient_id = \"x\"\n\
             [[providers]]\nid = \"a\"\nname = \"B\"\nkind = \"google\"\nclient_id = \"y\"",
        );
        assert!(twice.validate(false).unwrap_err().1.contains("twice"));
        let bad_id = parse(
            "[[providers]]\nid = \"a/b\"\nname = \"A\"\nkind = \"google\"\nclient_id = \"x\"",
        );
        assert_eq!(
            bad_id.validate(false).unwrap_err().0,
            "federation.providers[0].id"
        );
    }

    #[test]
    fn a_saml_provider_reads_its_metadata_from_one_place() {
        let saml = |source: &str| {
            parse(&format!(
                "[[providers]]\nid = \"s\"\nname = \"S\"\nkind = \"saml\"\n{source}"
            ))
        };
        saml("metadata_file = \"/etc/idp.xml\"")
            .validate(false)
            .unwrap();
        saml("metadata_url = \"https://idp.test/md\"")
            .validate(false)
            .unwrap();
        let plain = saml("metadata_url = \"http://idp.test/md\"");
        assert_eq!(
            plain.validate(false).unwrap_err().0,
            "federation.providers[0].metadata_url"
        );
        plain.validate(true).unwrap();
        let neither = saml("").validate(true).unwrap_err();
        assert!(
            neither.1.contains("metadata_file or metadata_url"),
            "{neither:?}"
        );
        let both = saml("metadata_file = \"a\"\nmetadata_url = \"https://b\"");
        assert!(both.validate(true).is_err());
        let transient = saml(
            "metadata_file = \"a\"\nname_id_format = \"urn:oasis:names:tc:SAML:2.0:nameid-format:transient\"",
        );
        assert_eq!(
            transient.validate(true).unwrap_err().0,
            "federation.providers[0].name_id_format"
        );
    }
}
