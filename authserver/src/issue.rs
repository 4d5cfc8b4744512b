//! Minting tokens: access tokens (RFC 9068 JWTs, or opaque reference
//! tokens), ID tokens (OIDC Core §2) and refresh tokens (opaque, stored
//! hashed, rotated within a family).

use std::time::Duration;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::app::App;
use crate::config::AccessFormat;
use crate::crypto::random_token;
use crate::ephemeral::{EphemeralError, keys};
use crate::error::OAuthError;
use crate::model::{Client, User};
use crate::token::{ACCESS_TOKEN_TYP, AccessClaims, read_own};

/// How, and when, the user authenticated (from the session).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthFacts {
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    /// The browser session the sign-in made (OIDC `sid`): its tokens are
    /// revoked when it ends.
    #[serde(default)]
    pub sid: Option<String>,
}

/// What a refresh token stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshGrant {
    pub family: String,
    pub client_id: String,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub auth: AuthFacts,
    /// When the family ends, however often it rotates (Unix seconds).
    pub family_expires: i64,
}

fn secs(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Mints an access token for `client`, acting for `user` when there is
/// one: a signed JWT, or an opaque token whose claims stay here until it
/// expires (`tokens.access_format`).
pub async fn access_token(
    app: &App,
    client: &Client,
    user: Option<&User>,
    scopes: &[String],
    auth: Option<&AuthFacts>,
    now: i64,
) -> Result<(String, AccessClaims), OAuthError> {
    let claims = AccessClaims {
        iss: app.issuer.clone(),
        sub: user.map_or_else(|| client.id.clone(), |u| u.id.clone()),
        aud: app.config.audience.clone(),
        exp: now + secs(app.config.tokens.access_seconds),
        iat: now,
        jti: random_token::<16>(),
        client_id: client.id.clone(),
        scope: scopes.join(" "),
        groups: user.map(|u| u.groups.clone()).unwrap_or_default(),
        roles: user.map(|u| u.roles.clone()).unwrap_or_default(),
        auth_time: auth.map(|a| a.auth_time),
        sid: auth.and_then(|a| a.sid.clone()),
        acr: auth.map(|a| a.acr.clone()),
        amr: auth.map(|a| a.amr.clone()).unwrap_or_default(),
    };
    let token = match app.config.tokens.access_format {
        AccessFormat::Jwt => app
            .keys
            .current()
            .signer
            .sign(ACCESS_TOKEN_TYP, &claims)
            .map_err(|e| OAuthError::server_error(&e))?,
        AccessFormat::Opaque => {
            let token = random_token::<32>();
            let stored = serde_json::to_vec(&claims).map_err(|e| OAuthError::server_error(&e))?;
            let ttl = Duration::from_secs(app.config.tokens.access_seconds);
            app.ephemeral
                .put(&keys::opaque_access(&token), &stored, ttl)
                .await?;
            token
        }
    };
    app.metrics
        .tokens_issued
        .with_label_values(&["access"])
        .inc();
    Ok((token, claims))
}

/// The claims of an unexpired access token this server issued, in either
/// format (whatever the current setting, so switching formats does not end
/// tokens already out). Revocation is the caller's check.
pub async fn read_access(
    app: &App,
    token: &str,
    now: i64,
) -> Result<Option<AccessClaims>, EphemeralError> {
    if token.contains('.') {
        return Ok(read_own(&app.keys.current(), &app.issuer, token, now));
    }
    let Some(bytes) = app.ephemeral.get(&keys::opaque_access(token)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<AccessClaims>(&bytes)
        .ok()
        .filter(|c| c.exp > now))
}

/// The user's claims a scope releases (ID token and userinfo).
pub fn profile_claims(user: &User, scopes: &[String], out: &mut Value) {
    let has = |s: &str| scopes.iter().any(|x| x == s);
    if has("profile") {
        out["preferred_username"] = json!(user.username);
        if let Some(name) = &user.display_name {
            out["name"] = json!(name);
        }
        out["updated_at"] = json!(user.updated_at);
    }
    if has("email")
        && let Some(email) = &user.email
    {
        out["email"] = json!(email);
        // Addresses are set by administrators, not proven by the user.
        out["email_verified"] = json!(false);
    }
    if has("groups") {
        out["groups"] = json!(user.groups);
        out["roles"] = json!(user.roles);
    }
}

/// `at_hash`: the left half of the hash of the access token, with the hash
/// of the ID token's algorithm (SHA-512 for Ed25519).
fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let algorithm = match alg {
        Algorithm::EdDSA | Algorithm::RS512 | Algorithm::PS512 => &digest::SHA512,
        Algorithm::ES384 | Algorithm::RS384 | Algorithm::PS384 => &digest::SHA384,
        _ => &digest::SHA256,
    };
    let d = digest::digest(algorithm, access_token.as_bytes());
    let bytes = d.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

pub struct IdTokenInput<'a> {
    pub client: &'a Client,
    pub user: &'a User,
    pub scopes: &'a [String],
    pub auth: &'a AuthFacts,
    pub nonce: Option<&'a str>,
    pub access_token: &'a str,
}

pub fn id_token(app: &App, input: &IdTokenInput<'_>, now: i64) -> Result<String, OAuthError> {
    let published = app.keys.current();
    let mut claims = json!({
        "iss": app.issuer,
        "sub": input.user.id,
        "aud": input.client.id,
        "azp": input.client.id,
        "exp": now + secs(app.config.tokens.id_seconds),
        "iat": now,
        "auth_time": input.auth.auth_time,
        "acr": input.auth.acr,
        "amr": input.auth.amr,
        "at_hash": at_hash(published.signer.alg(), input.access_token),
    });
    if let Some(nonce) = input.nonce {
        claims["nonce"] = json!(nonce);
    }
    if let Some(sid) = &input.auth.sid {
        claims["sid"] = json!(sid);
    }
    profile_claims(input.user, input.scopes, &mut claims);
    app.metrics.tokens_issued.with_label_values(&["id"]).inc();
    published
        .signer
        .sign("JWT", &claims)
        .map_err(|e| OAuthError::server_error(&e))
}

/// A new refresh token in `family` (`(id, expires)`; a new family when
/// `None`). A family has an absolute lifetime: rotation does not extend it.
pub async fn refresh_token(
    app: &App,
    family: Option<(&str, i64)>,
    client: &Client,
    user: &User,
    scopes: &[String],
    auth: &AuthFacts,
    now: i64,
) -> Result<(String, String), OAuthError> {
    let token = random_token::<32>();
    let (family, expires) = match family {
        Some((f, expires)) => (f.to_owned(), expires),
        None => {
            let f = random_token::<16>();
            let expires = now + secs(app.config.tokens.refresh_seconds);
            let ttl = Duration::from_secs(app.config.tokens.refresh_seconds);
            app.ephemeral
                .put(&keys::refresh_family(&f), b"live", ttl)
                .await?;
            app.ephemeral
                .add_member(&keys::refresh_families_of_user(&user.id), &f, ttl)
                .await?;
            if let Some(sid) = &auth.sid {
                app.ephemeral
                    .add_member(&keys::refresh_families_of_session(sid), &f, ttl)
                    .await?;
            }
            (f, expires)
        }
    };
    let remaining = u64::try_from(expires - now).unwrap_or(0);
    if remaining == 0 {
        return Err(OAuthError::invalid_grant(
            "the refresh token family has expired",
        ));
    }
    let grant = RefreshGrant {
        family: family.clone(),
        client_id: client.id.clone(),
        user_id: user.id.clone(),
        scopes: scopes.to_vec(),
        auth: auth.clone(),
        family_expires: expires,
    };
    let bytes = serde_json::to_vec(&grant).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(
            &keys::refresh(&token),
            &bytes,
            Duration::from_secs(remaining),
        )
        .await?;
    app.metrics
        .tokens_issued
        .with_label_values(&["refresh"])
        .inc();
    app.metrics.refresh_tokens.add(expires);
    Ok((token, family))
}

/// Records that `claims` were minted in refresh-token `family`, so
/// revoking the family revokes them.
pub async fn tie_to_family(
    app: &App,
    family: &str,
    claims: &AccessClaims,
    now: i64,
) -> Result<(), EphemeralError> {
    let ttl = Duration::from_secs(u64::try_from(claims.exp - now).unwrap_or(0).max(1));
    app.ephemeral
        .add_member(
            &keys::family_access_tokens(family),
            &format!("{}:{}", claims.jti, claims.exp),
            ttl,
        )
        .await
}

/// Why a revocation could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error(transparent)]
    Ephemeral(#[from] EphemeralError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

impl From<RevokeError> for OAuthError {
    fn from(e: RevokeError) -> Self {
        match e {
            RevokeError::Ephemeral(e) => e.into(),
            RevokeError::Store(e) => e.into(),
        }
    }
}

/// Revokes access tokens (`(jti, exp)`): introspection answers inactive
/// from now on, and the change feed tells every gateway.
pub async fn revoke_access(
    app: &App,
    tokens: &[(String, i64)],
    now: i64,
) -> Result<(), RevokeError> {
    let mut feed = Vec::with_capacity(tokens.len());
    for (jti, exp) in tokens.iter().filter(|(_, exp)| *exp > now) {
        let ttl = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0).max(1));
        app.ephemeral.put(&keys::revoked(jti), b"1", ttl).await?;
        feed.push((json!({"revocation": "token", "jti": jti, "exp": exp}), *exp));
    }
    if !feed.is_empty() {
        app.store.append_revocations(now, &feed).await?;
    }
    Ok(())
}

/// Ends refresh-token `family` and revokes the access tokens minted in it.
pub async fn revoke_family(app: &App, family: &str, now: i64) -> Result<(), RevokeError> {
    app.ephemeral.delete(&keys::refresh_family(family)).await?;
    let index = keys::family_access_tokens(family);
    let minted: Vec<(String, i64)> = app
        .ephemeral
        .members(&index)
        .await?
        .iter()
        .filter_map(|m| {
            let (jti, exp) = m.rsplit_once(':')?;
            Some((jti.to_owned(), exp.parse().ok()?))
        })
        .collect();
    revoke_access(app, &minted, now).await?;
    Ok(app.ephemeral.delete(&index).await?)
}

/// Revokes every refresh-token family in the set `index` (a user's or a
/// session's), and the set.
async fn revoke_families(app: &App, index: &str, now: i64) -> Result<(), RevokeError> {
    for family in app.ephemeral.members(index).await? {
        revoke_family(app, &family, now).await?;
    }
    Ok(app.ephemeral.delete(index).await?)
}

/// Revokes every refresh-token family of `user_id` (a user who may no
/// longer sign in) and what was minted in them.
pub async fn end_refresh_families(app: &App, user_id: &str, now: i64) -> Result<(), RevokeError> {
    revoke_families(app, &keys::refresh_families_of_user(user_id), now).await
}

/// Revokes the refresh-token families a browser session's sign-in
/// started (the session ended).
pub async fn end_session_families(app: &App, sid: &str, now: i64) -> Result<(), RevokeError> {
    revoke_families(app, &keys::refresh_families_of_session(sid), now).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_is_the_left_half_of_the_digest() {
        // Expected value computed independently (Python hashlib:
        // urlsafe_b64encode(sha256(token)[:16])).
        let token = "jHkWEdUXMU1BwAsC4vtUsZwnNFqzQ6M2";
        assert_eq!(at_hash(Algorithm::RS256, token), "rRNI6_k9jsMPbGhz4yoXSQ");
        assert_eq!(at_hash(Algorithm::EdDSA, token).len(), 43);
    }
}
