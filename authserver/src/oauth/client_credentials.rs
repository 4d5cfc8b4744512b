//! The `client_credentials` grant (RFC 6749 §4.4).

use super::*;

pub(super) async fn client_credentials(
    app: &App,
    client: &Client,
    form: &Form,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    if client.is_public() {
        return Err(OAuthError::unauthorized_client(
            "public clients cannot use client_credentials",
        ));
    }
    if !client.may_use(GrantType::ClientCredentials) {
        return Err(OAuthError::unauthorized_client(
            "client is not registered for client_credentials",
        ));
    }
    let scopes = granted_scopes(client, form.get("scope"))?;
    let (token, claims) = issue::access_token(app, client, None, &scopes, None, now).await?;
    let event = AuditEvent::new(now, format!("client:{}", client.id), "token.issue")
        .target(claims.jti.clone())
        .source(source)
        .client(client.id.clone())
        .detail(json!({"grant_type": "client_credentials", "scope": claims.scope}));
    app.audit.record(event).await?;
    Ok(token_response(&token, &claims, claims.exp - now))
}
