//! The records the authserver keeps: no SQL and no HTTP here.

use serde::{Deserialize, Serialize};

/// The longest an access token may live (`tokens.access_seconds`): how
/// long a user made active again still has older tokens refused.
pub const MAX_ACCESS_SECONDS: i64 = 24 * 3600;

/// A person who logs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Stable, opaque; the `sub` claim.
    pub id: String,
    /// As the user typed it; looked up case-insensitively.
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// argon2id PHC string; `None` for accounts without a password (federated).
    #[serde(skip)]
    pub password_hash: Option<String>,
    /// Names for the `roles` claim.
    pub roles: Vec<String>,
    /// Names of the groups the user belongs to, directly or through nested
    /// groups (the `groups` claim).
    pub groups: Vec<String>,
    pub disabled: bool,
    pub mfa: MfaPolicy,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What an upstream provider said about the person, verified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    pub provider: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub username: Option<String>,
    pub groups: Vec<String>,
    /// Whether `groups` is all of them (Entra leaves them out past a
    /// limit and says so): only then are mapped groups brought in line.
    pub groups_complete: bool,
    /// Google's `hd`: the Workspace domain the account belongs to.
    pub hosted_domain: Option<String>,
    /// What the provider reported (`amr`), before `fed` is added.
    pub amr: Vec<String>,
}

/// An account at an upstream identity provider, linked to a local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FederatedLink {
    /// The provider's `id` in `[[federation.providers]]`.
    pub provider: String,
    /// The provider's stable identifier of the account (`sub`, Entra's
    /// `tid:oid`, GitHub's numeric id).
    pub subject: String,
    pub user_id: String,
    /// The address the provider gave when the link was made.
    pub email: Option<String>,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// How a client proves who it is at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A public client (SPA, native): no secret; PKCE required.
    None,
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl ClientAuth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::None,
            Self::ClientSecretBasic,
            Self::ClientSecretPost,
            Self::PrivateKeyJwt,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

/// A registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    /// The `client_id`.
    pub id: String,
    pub name: String,
    /// Keyed digest of the client secret; `None` for public and
    /// `private_key_jwt` clients.
    #[serde(skip)]
    pub secret_digest: Option<Vec<u8>>,
    pub auth_method: ClientAuth,
    /// Matched exactly, never by prefix.
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    /// The scopes this client may ask for.
    pub scopes: Vec<String>,
    /// The client's public keys (a JWK Set) for `private_key_jwt`.
    pub jwks: Option<String>,
    pub require_consent: bool,
    /// A resource server: may introspect any token (RFC 7662 §4); others
    /// learn only about tokens whose audience names them.
    pub introspect: bool,
    pub mfa: MfaPolicy,
    pub created_at: i64,
    /// OIDC Back-Channel Logout 1.0: where logout tokens are POSTed when a
    /// session this client was issued tokens in ends.
    pub backchannel_logout_uri: Option<String>,
}

impl Client {
    pub fn is_public(&self) -> bool {
        self.auth_method == ClientAuth::None
    }

    /// Whether the client is registered for `grant`.
    pub fn may_use(&self, grant: GrantType) -> bool {
        self.grant_types.iter().any(|g| g == grant.as_str())
    }
}

/// The grant types this server implements: discovery advertises exactly
/// these and the token endpoint dispatches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
    /// RFC 8628: a device without a keyboard, a person signing in elsewhere.
    DeviceCode,
}

impl GrantType {
    pub const ALL: [Self; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
        Self::DeviceCode,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::DeviceCode => "urn:ietf:params:oauth:grant-type:device_code",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == name)
    }
}

/// Where a signing key is in its life: published before it signs, kept
/// published after it stops signing until its tokens have expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    Next,
    Active,
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Next, Self::Active, Self::Retired]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A token-signing key as stored: the private half sealed with the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    pub sealed_private_key: Vec<u8>,
    /// The public JWK, as published.
    pub public_jwk: String,
    pub state: KeyState,
    pub created_at: i64,
    pub activated_at: Option<i64>,
    pub retired_at: Option<i64>,
}

/// Whether signing in needs a second factor. Set per user and per client;
/// either one saying `required` requires it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MfaPolicy {
    /// Asked for when the user has enrolled one.
    #[default]
    Optional,
    /// Enrolment is forced at the next sign-in.
    Required,
}

impl MfaPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Optional => "optional",
            Self::Required => "required",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Optional, Self::Required]
            .into_iter()
            .find(|m| m.as_str() == s)
    }
}

/// What kind of second factor a credential is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FactorKind {
    /// An authenticator app (RFC 6238).
    Totp,
    /// A passkey or security key (WebAuthn).
    #[serde(rename = "webauthn")]
    WebAuthn,
    /// Codes by text message to a verified number (sealed in the secret).
    Sms,
}

impl FactorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Totp => "totp",
            Self::WebAuthn => "webauthn",
            Self::Sms => "sms",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Totp, Self::WebAuthn, Self::Sms]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A second factor enrolled by a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecondFactor {
    pub id: String,
    pub user_id: String,
    pub kind: FactorKind,
    /// The user's name for it ("phone", "YubiKey"); unique per user.
    pub label: String,
    /// The shared secret, sealed with the master key to this factor's id.
    #[serde(skip)]
    pub sealed_secret: Option<Vec<u8>>,
    /// Kind-specific public state, as JSON (WebAuthn: the credential with
    /// its public key, counter and backup state).
    #[serde(skip)]
    pub data: String,
    /// WebAuthn: the credential id (base64url), unique across users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential_id: Option<String>,
    /// TOTP: the last time step accepted; a code of that step or an
    /// earlier one is refused.
    #[serde(skip)]
    pub last_step: i64,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// One audited event. Written in the same transaction as the change it
/// describes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct AuditEvent {
    pub at: i64,
    /// Who did it: a user id, `client:<id>`, `admin`, or `anonymous`.
    pub actor: String,
    /// What happened, e.g. `user.create`, `login.failure`, `token.issue`.
    pub action: String,
    /// What it happened to.
    pub target: Option<String>,
    pub source_ip: Option<String>,
    pub client_id: Option<String>,
    /// `success` or `failure`.
    pub outcome: String,
    /// Further facts as a JSON object (never secrets).
    pub detail: serde_json::Value,
}

impl AuditEvent {
    pub fn new(at: i64, actor: impl Into<String>, action: impl Into<String>) -> Self {
        Self {
            at,
            actor: actor.into(),
            action: action.into(),
            outcome: "success".into(),
            detail: serde_json::Value::Object(serde_json::Map::new()),
            ..Self::default()
        }
    }

    pub fn target(mut self, target: impl Into<String>) -> Self {
        self.target = Some(target.into());
        self
    }

    pub fn failed(mut self) -> Self {
        self.outcome = "failure".into();
        self
    }

    pub fn source(mut self, ip: Option<std::net::IpAddr>) -> Self {
        self.source_ip = ip.map(|ip| ip.to_string());
        self
    }

    pub fn client(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = detail;
        self
    }
}

/// Who makes a change, for its audit event: `admin` from the admin API
/// (with the caller's address), `cli`, `dev-bootstrap`, `system`.
#[derive(Debug, Clone, Copy)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub source: Option<std::net::IpAddr>,
}

impl<'a> Actor<'a> {
    /// A local actor without a network address (CLI, bootstrap, system).
    pub fn local(name: &'a str) -> Self {
        Self { name, source: None }
    }

    pub fn event(&self, at: i64, action: &str) -> AuditEvent {
        AuditEvent::new(at, self.name, action).source(self.source)
    }
}
