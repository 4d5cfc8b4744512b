//! The OIDC userinfo endpoint.

use super::*;

/// Why `/userinfo` refused a bearer token (RFC 6750 §3.1).
#[derive(Debug)]
pub enum BearerError {
    InvalidToken,
    InsufficientScope,
    Unavailable(OAuthError),
}

impl From<OAuthError> for BearerError {
    fn from(e: OAuthError) -> Self {
        Self::Unavailable(e)
    }
}

impl From<crate::ephemeral::EphemeralError> for BearerError {
    fn from(e: crate::ephemeral::EphemeralError) -> Self {
        Self::Unavailable(e.into())
    }
}

impl From<crate::store::StoreError> for BearerError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Unavailable(e.into())
    }
}

/// `GET /userinfo` (OIDC Core §5.3): the claims the token's scopes release.
pub async fn userinfo(app: &App, bearer: Option<&str>, now: i64) -> Result<Value, BearerError> {
    let token = bearer.ok_or(BearerError::InvalidToken)?;
    let claims = issue::read_access(app, token, now)
        .await?
        .ok_or(BearerError::InvalidToken)?;
    if app
        .ephemeral
        .get(&keys::revoked(&claims.jti))
        .await?
        .is_some()
    {
        return Err(BearerError::InvalidToken);
    }
    let scopes: Vec<String> = claims.scope.split(' ').map(str::to_owned).collect();
    if !scopes.iter().any(|s| s == "openid") {
        return Err(BearerError::InsufficientScope);
    }
    let user = match app.store.user_by_id(&claims.sub).await? {
        Some(u) if !u.disabled => u,
        _ => return Err(BearerError::InvalidToken),
    };
    let mut out = json!({"sub": user.id});
    issue::profile_claims(&user, &scopes, &mut out);
    Ok(out)
}
