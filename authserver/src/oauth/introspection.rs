//! Token introspection (RFC 7662): only to clients allowed to ask.

use super::*;

/// The client still exists, and so does the user (not disabled) when the
/// token acts for one: deleting or disabling ends their tokens' validity.
pub(super) async fn still_active(app: &App, claims: &AccessClaims) -> Result<bool, OAuthError> {
    if app.client(&claims.client_id).await?.is_none() {
        return Ok(false);
    }
    if claims.sub == claims.client_id {
        return Ok(true);
    }
    Ok(app
        .store
        .user_by_id(&claims.sub)
        .await?
        .is_some_and(|u| !u.disabled))
}

/// `POST /introspect` (RFC 7662): the caller must be an authenticated
/// confidential client, and a resource server (`introspect`) or the
/// token's audience; otherwise, and for inactive tokens, the answer is only
/// `{"active": false}`.
pub async fn introspect(
    app: &App,
    form: &Form,
    authorization: Option<&str>,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    let client = authenticate(app, form, authorization, source, now).await?;
    if client.is_public() {
        return Err(OAuthError::invalid_client(
            "public clients cannot introspect",
        ));
    }
    let token = form.require("token")?;
    // A refresh token is described to the client that holds it only.
    if let Some(bytes) = app.ephemeral.get(&keys::refresh(token)).await?
        && let Ok(grant) = serde_json::from_slice::<issue::RefreshGrant>(&bytes)
    {
        let live = app
            .ephemeral
            .get(&keys::refresh_family(&grant.family))
            .await?
            .is_some();
        if !live || grant.client_id != client.id {
            return Ok(json!({"active": false}));
        }
        return Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "sub": grant.user_id,
            "scope": grant.scopes.join(" "),
            "iss": app.issuer,
        }));
    }
    let Some(claims) = issue::read_access(app, token, now).await? else {
        return Ok(json!({"active": false}));
    };
    // RFC 7662 §4: only a resource server, or the audience the token is
    // meant for, learns what it says; anyone else hears "inactive".
    if !client.introspect && claims.aud != client.id {
        return Ok(json!({"active": false}));
    }
    if app
        .ephemeral
        .get(&keys::revoked(&claims.jti))
        .await?
        .is_some()
        || !still_active(app, &claims).await?
    {
        return Ok(json!({"active": false}));
    }
    let mut out = serde_json::to_value(&claims).map_err(|e| OAuthError::server_error(&e))?;
    out["active"] = json!(true);
    out["token_type"] = json!("Bearer");
    Ok(out)
}
