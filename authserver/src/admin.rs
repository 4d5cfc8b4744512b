//! Managing users, their second factors and clients: shared by the CLI,
//! `--dev` and the admin API, so each path validates and audits the same
//! way.

use serde::Serialize;

use crate::app::App;
use crate::crypto::random_token;
use crate::error::Error;
use crate::model::{Actor, Client, ClientAuth, GrantType, MfaPolicy, SecondFactor, User};
use crate::store::{NewUser, UserChange};

/// A user to add; the password is hashed here.
#[derive(Debug, Clone, Default)]
pub struct UserSpec {
    pub username: String,
    pub password: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
}

pub(crate) fn check_name(what: &str, name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@' | ':'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{what} `{name}` must be 1-128 characters of letters, digits and - _ . @ :"
        )))
    }
}

/// Shortest password accepted (NIST SP 800-63B's minimum).
pub const MIN_PASSWORD_LEN: usize = 8;

pub async fn add_user(
    app: &App,
    spec: UserSpec,
    actor: Actor<'_>,
    now: i64,
) -> Result<User, Error> {
    check_name("username", &spec.username)?;
    for g in spec.groups.iter().chain(&spec.roles) {
        check_name("group or role", g)?;
    }
    if spec.password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::Invalid(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let passwords = app.passwords.clone();
    let password = spec.password;
    let hash = tokio::task::spawn_blocking(move || passwords.hash(&password))
        .await
        .map_err(|e| Error::Invalid(format!("password hashing stopped: {e}")))??;
    let id = random_token::<16>();
    let new = NewUser {
        id: id.clone(),
        username: spec.username,
        email: spec.email,
        display_name: spec.display_name,
        password_hash: Some(hash),
        roles: spec.roles,
        groups: spec.groups,
        link: None,
    };
    let audit = actor.event(now, "user.create").target(id);
    Ok(app.store.create_user(&new, &audit).await?)
}

/// Sets a new password (dev bootstrap, `authserver user password`).
pub async fn set_password(
    app: &App,
    user: &User,
    password: String,
    actor: Actor<'_>,
    now: i64,
) -> Result<(), Error> {
    let hash = hash_password(app, password).await?;
    let audit = actor.event(now, "user.password").target(user.id.clone());
    Ok(app.store.set_password(&user.id, &hash, &audit).await?)
}

/// A password checked against the minimum length and hashed on the
/// blocking pool.
pub async fn hash_password(app: &App, password: String) -> Result<String, Error> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::Invalid(format!(
            "password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    let passwords = app.passwords.clone();
    Ok(
        tokio::task::spawn_blocking(move || passwords.hash(&password))
            .await
            .map_err(|e| Error::Invalid(format!("password hashing stopped: {e}")))??,
    )
}

/// The kinds of client `client add` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// Server-side web app: code flow, secret, refresh tokens.
    Web,
    /// Browser or native app: code flow with PKCE, no secret.
    Public,
    /// Machine to machine: client_credentials.
    Service,
    /// A device without a browser or keyboard (RFC 8628): the device
    /// grant, no secret, no redirect URI.
    Device,
}

#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub id: String,
    pub name: String,
    pub kind: ClientKind,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
    /// `private_key_jwt` with these public keys instead of a secret.
    pub jwks: Option<String>,
    /// A resource server, which may introspect any token.
    pub introspect: bool,
    /// Where logout tokens go when a session ends (OIDC Back-Channel
    /// Logout 1.0).
    pub backchannel_logout_uri: Option<String>,
}

/// What the operator is shown once: the secret is not stored in clear.
#[derive(Debug, Clone, Serialize)]
pub struct IssuedClient {
    pub client_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub token_endpoint_auth_method: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    pub scopes: Vec<String>,
}

/// A redirect URI fit for exact matching: absolute, no fragment; plain
/// HTTP only for loopback (RFC 8252 §8.3, OAuth 2.0 Security BCP).
pub fn check_redirect_uri(uri: &str) -> Result<(), Error> {
    let bad = |why: &str| Error::Invalid(format!("redirect URI `{uri}` {why}"));
    let parsed = url::Url::parse(uri).map_err(|_| bad("is not an absolute URI"))?;
    if parsed.fragment().is_some() || uri.contains('#') {
        return Err(bad("must not have a fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("must not carry user information"));
    }
    match parsed.scheme() {
        "https" if parsed.host().is_some() => Ok(()),
        "http" => match parsed.host() {
            Some(url::Host::Ipv4(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Ipv6(ip)) if ip.is_loopback() => Ok(()),
            Some(url::Host::Domain("localhost")) => Ok(()),
            _ => Err(bad("uses plain http:// on a non-loopback host")),
        },
        // Private-use schemes of native apps (com.example.app:/callback).
        scheme if scheme.contains('.') => Ok(()),
        _ => Err(bad(
            "must be https://, loopback http://, or a private-use scheme",
        )),
    }
}

/// A back-channel logout URI: absolute, https (plain http on loopback in
/// dev mode only: the server would otherwise post to its own host), no
/// fragment (OIDC Back-Channel Logout 1.0 §2.2).
pub fn check_backchannel_logout_uri(uri: &str, dev: bool) -> Result<(), Error> {
    let parsed = url::Url::parse(uri)
        .map_err(|_| Error::Invalid(format!("back-channel logout URI `{uri}` is not absolute")))?;
    if !(parsed.scheme() == "https" || dev && parsed.scheme() == "http") {
        return Err(Error::Invalid(format!(
            "back-channel logout URI `{uri}` must be https:// (http:// on loopback in dev mode)"
        )));
    }
    check_redirect_uri(uri)
}

pub async fn add_client(
    app: &App,
    spec: ClientSpec,
    actor: Actor<'_>,
    now: i64,
) -> Result<IssuedClient, Error> {
    check_name("client id", &spec.id)?;
    for uri in spec
        .redirect_uris
        .iter()
        .chain(&spec.post_logout_redirect_uris)
    {
        check_redirect_uri(uri)?;
    }
    for scope in &spec.scopes {
        check_name("scope", scope)?;
    }
    if let Some(uri) = &spec.backchannel_logout_uri {
        check_backchannel_logout_uri(uri, app.config.dev)?;
    }
    let (auth_method, grant_types) = match spec.kind {
        ClientKind::Web => (
            ClientAuth::ClientSecretBasic,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        ),
        ClientKind::Public => (
            ClientAuth::None,
            vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
        ),
        ClientKind::Service => (
            ClientAuth::ClientSecretBasic,
            vec![GrantType::ClientCredentials],
        ),
        ClientKind::Device => (
            ClientAuth::None,
            vec![GrantType::DeviceCode, GrantType::RefreshToken],
        ),
    };
    let public = matches!(spec.kind, ClientKind::Public | ClientKind::Device);
    if spec.introspect && public {
        return Err(Error::Invalid(
            "a public client cannot introspect: it has no credentials to prove a resource server"
                .into(),
        ));
    }
    let redirects = matches!(spec.kind, ClientKind::Web | ClientKind::Public);
    if !redirects && !spec.redirect_uris.is_empty() {
        return Err(Error::Invalid(format!(
            "client `{}` is not redirected to: it takes no redirect URIs",
            spec.id
        )));
    }
    if redirects && spec.redirect_uris.is_empty() {
        return Err(Error::Invalid(format!(
            "client `{}` needs at least one redirect URI",
            spec.id
        )));
    }
    let auth_method = match (&spec.jwks, spec.kind) {
        (Some(_), _) if public => {
            return Err(Error::Invalid("a public client has no keys".into()));
        }
        (Some(jwks), _) => {
            serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(jwks)
                .map_err(|e| Error::Invalid(format!("client JWKS: {e}")))?;
            ClientAuth::PrivateKeyJwt
        }
        (None, _) => auth_method,
    };
    let secret = match auth_method {
        ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost => Some(random_token::<32>()),
        ClientAuth::None | ClientAuth::PrivateKeyJwt => None,
    };
    let client = Client {
        id: spec.id.clone(),
        name: spec.name,
        secret_digest: secret.as_deref().map(|s| app.secrets.digest(s)),
        auth_method,
        redirect_uris: spec.redirect_uris.clone(),
        post_logout_redirect_uris: spec.post_logout_redirect_uris,
        grant_types: grant_types
            .into_iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
        scopes: spec.scopes.clone(),
        jwks: spec.jwks,
        require_consent: spec.kind != ClientKind::Service,
        introspect: spec.introspect,
        mfa: MfaPolicy::Optional,
        created_at: now,
        backchannel_logout_uri: spec.backchannel_logout_uri,
    };
    let audit = actor.event(now, "client.create").target(spec.id.clone());
    app.store.create_client(&client, &audit).await?;
    Ok(IssuedClient {
        client_id: spec.id,
        client_secret: secret,
        token_endpoint_auth_method: auth_method.as_str(),
        redirect_uris: spec.redirect_uris,
        scopes: spec.scopes,
    })
}

/// A new secret for an existing confidential client, shown once.
pub async fn reset_client_secret(
    app: &App,
    client: &Client,
    actor: Actor<'_>,
    now: i64,
) -> Result<String, Error> {
    if !matches!(
        client.auth_method,
        ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost
    ) {
        return Err(Error::Invalid(format!(
            "client `{}` does not use a secret",
            client.id
        )));
    }
    let secret = random_token::<32>();
    let audit = actor.event(now, "client.secret").target(client.id.clone());
    app.store
        .set_client_secret(&client.id, &app.secrets.digest(&secret), &audit)
        .await?;
    app.forget_client(&client.id);
    Ok(secret)
}

/// A user's second factors as an administrator sees them (never secrets).
#[derive(Debug, Serialize)]
pub struct FactorReport {
    pub user_id: String,
    pub mfa: MfaPolicy,
    pub factors: Vec<SecondFactor>,
    pub recovery_codes_left: i64,
}

pub async fn factors(app: &App, user: &User) -> Result<FactorReport, Error> {
    Ok(FactorReport {
        user_id: user.id.clone(),
        mfa: user.mfa,
        factors: app.store.factors(&user.id).await?,
        recovery_codes_left: app.store.recovery_codes_left(&user.id).await?,
    })
}

/// Removes every factor and recovery code of a user who lost them; with
/// `mfa = required` they enrol anew at their next sign-in. Returns how
/// many factors there were.
pub async fn reset_factors(
    app: &App,
    user: &User,
    actor: Actor<'_>,
    now: i64,
) -> Result<u64, Error> {
    let audit = actor.event(now, "mfa.reset").target(user.id.clone());
    Ok(app.store.reset_factors(&user.id, &audit).await?)
}

pub async fn set_user_mfa(
    app: &App,
    user: &User,
    mfa: MfaPolicy,
    actor: Actor<'_>,
    now: i64,
) -> Result<(), Error> {
    let audit = actor
        .event(now, "user.mfa")
        .target(user.id.clone())
        .detail(serde_json::json!({"mfa": mfa}));
    let change = UserChange {
        mfa: Some(mfa),
        ..UserChange::default()
    };
    Ok(app.store.update_user(&user.id, &change, &[audit]).await?)
}

pub async fn set_client_mfa(
    app: &App,
    client_id: &str,
    mfa: MfaPolicy,
    actor: Actor<'_>,
    now: i64,
) -> Result<(), Error> {
    let audit = actor
        .event(now, "client.mfa")
        .target(client_id.to_owned())
        .detail(serde_json::json!({"mfa": mfa}));
    app.store.set_client_mfa(client_id, mfa, &audit).await?;
    app.forget_client(client_id);
    Ok(())
}

/// Sets or clears where `client_id` hears of ended sessions.
pub async fn set_client_backchannel_logout(
    app: &App,
    client_id: &str,
    uri: Option<&str>,
    actor: Actor<'_>,
    now: i64,
) -> Result<(), Error> {
    if let Some(uri) = uri {
        check_backchannel_logout_uri(uri, app.config.dev)?;
    }
    let audit = actor
        .event(now, "client.backchannel_logout")
        .target(client_id.to_owned())
        .detail(serde_json::json!({"backchannel_logout_uri": uri}));
    app.store
        .set_client_backchannel_logout(client_id, uri, &audit)
        .await?;
    app.forget_client(client_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_backchannel_logout_uri, check_redirect_uri};

    #[test]
    fn back_channel_uris_are_https_outside_dev_mode() {
        let loopback = "http://127.0.0.1:8000/backchannel-logout";
        assert!(check_backchannel_logout_uri(loopback, true).is_ok());
        assert!(
            check_backchannel_logout_uri(loopback, false).is_err(),
            "the server would post to its own host"
        );
        assert!(check_backchannel_logout_uri("https://rp.example.com/bcl", false).is_ok());
        for bad in [
            "http://rp.example.com/bcl",
            "https://rp.example.com/bcl#x",
            "ftp://rp/x",
        ] {
            assert!(check_backchannel_logout_uri(bad, true).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_uris_must_be_safe_to_match_exactly() {
        for ok in [
            "https://app.example.com/callback",
            "http://127.0.0.1:3000/cb",
            "http://localhost/cb",
            "http://[::1]:8080/cb?x=1",
            "com.example.app:/oauth2redirect",
        ] {
            assert!(check_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "https://app.example.com/cb#frag",
            "http://app.example.com/cb",
            "http://127.0.0.1.evil.com/cb",
            "http://127.0.0.1:80@evil.com/cb",
            "https://user:pw@app.example.com/cb",
            "javascript:alert(1)",
            "https://",
            "/relative",
        ] {
            assert!(check_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
