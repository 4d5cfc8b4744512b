//! Token revocation (RFC 7009) and the revoked-`jti` marks introspection reads.

use super::*;

/// `POST /revoke` (RFC 7009): a client revokes its own tokens; unknown,
/// invalid or foreign tokens get the same 200.
pub async fn revoke(
    app: &App,
    form: &Form,
    authorization: Option<&str>,
    source: Option<IpAddr>,
    now: i64,
) -> Result<(), OAuthError> {
    let client = authenticate(app, form, authorization, source, now).await?;
    let token = form.require("token")?;
    // `token_type_hint` is only a hint (RFC 7009 §2.1): both kinds are
    // looked up whatever it says.
    // A refresh token ends its whole family (RFC 7009 §2.1).
    if let Some(bytes) = app.ephemeral.get(&keys::refresh(token)).await?
        && let Ok(grant) = serde_json::from_slice::<issue::RefreshGrant>(&bytes)
    {
        if grant.client_id == client.id {
            issue::revoke_family(app, &grant.family, now).await?;
            app.ephemeral.delete(&keys::refresh(token)).await?;
            let event = AuditEvent::new(now, format!("client:{}", client.id), "token.revoke")
                .target(grant.family)
                .source(source)
                .client(client.id.clone())
                .detail(json!({"token_type": "refresh_token"}));
            app.audit.record(event).await?;
        }
        return Ok(());
    }
    if let Some(claims) = issue::read_access(app, token, now).await?
        && claims.client_id == client.id
    {
        issue::revoke_access(app, &[(claims.jti.clone(), claims.exp)], now).await?;
        let event = AuditEvent::new(now, format!("client:{}", client.id), "token.revoke")
            .target(claims.jti)
            .source(source)
            .client(client.id.clone());
        app.audit.record(event).await?;
    }
    Ok(())
}
