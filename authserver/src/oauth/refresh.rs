//! The `refresh_token` grant: rotation, with reuse of a rotated token
//! revoking its whole family.

use super::*;

/// The mark a rotated refresh token leaves: its family, and whose it was.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct UsedRefresh {
    pub(super) family: String,
    pub(super) client_id: String,
}

pub(super) async fn refresh(
    app: &App,
    client: &Client,
    form: &Form,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    require_grant_type(client, GrantType::RefreshToken)?;
    let token = form.require("refresh_token")?;
    let key = keys::refresh(token);
    // Another client's refresh token is refused without being used up.
    let current = app.ephemeral.get(&key).await?;
    let grant = match &current {
        Some(bytes) => {
            let grant: issue::RefreshGrant =
                serde_json::from_slice(bytes).map_err(|e| OAuthError::server_error(&e))?;
            if grant.client_id != client.id {
                return Err(OAuthError::invalid_grant(
                    "refresh token was issued to another client",
                ));
            }
            Some(grant)
        }
        None => None,
    };
    // Marked used (only if no mark is there) before it is taken: a second
    // use racing this one finds the mark, as any later reuse does.
    let ttl = Duration::from_secs(app.config.tokens.refresh_seconds);
    let marked = match &grant {
        Some(grant) => {
            let used = UsedRefresh {
                family: grant.family.clone(),
                client_id: grant.client_id.clone(),
            };
            let used = serde_json::to_vec(&used).map_err(|e| OAuthError::server_error(&e))?;
            app.ephemeral
                .put_new(&keys::used_refresh(token), &used, ttl)
                .await?
        }
        None => false,
    };
    let taken = if marked {
        app.ephemeral.take(&key).await?
    } else {
        None
    };
    let (Some(grant), Some(_)) = (grant, taken) else {
        let used = app.ephemeral.get(&keys::used_refresh(token)).await?;
        let used = used.and_then(|b| serde_json::from_slice::<UsedRefresh>(&b).ok());
        if !marked
            && let Some(UsedRefresh { family, client_id }) = used
            && client_id == client.id
        {
            // Reuse of a rotated token by its client: someone has a copy.
            // End the family. (Another client's replay changes nothing.)
            issue::revoke_family(app, &family, now).await?;
            let event =
                AuditEvent::new(now, format!("client:{}", client.id), "token.refresh_reuse")
                    .failed()
                    .target(family)
                    .source(source)
                    .client(client.id.clone());
            app.audit.record(event).await?;
            return Err(OAuthError::invalid_grant(
                "refresh token was already used; its family is revoked",
            ));
        }
        return Err(OAuthError::invalid_grant(
            "refresh token is invalid, expired or revoked",
        ));
    };
    app.metrics.refresh_tokens.end(grant.family_expires);
    if app
        .ephemeral
        .get(&keys::refresh_family(&grant.family))
        .await?
        .is_none()
    {
        return Err(OAuthError::invalid_grant(
            "refresh token is invalid, expired or revoked",
        ));
    }
    let scopes = match form.get("scope") {
        None => grant.scopes.clone(),
        Some(asked) => {
            let asked: Vec<String> = asked
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s)) {
                return Err(OAuthError::invalid_scope(format!(
                    "scope `{extra}` was not granted originally"
                )));
            }
            asked
        }
    };
    let user = match app.store.user_by_id(&grant.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => {
            issue::revoke_family(app, &grant.family, now).await?;
            return Err(OAuthError::invalid_grant("the user is no longer active"));
        }
    };
    let (access, claims) =
        issue::access_token(app, client, Some(&user), &scopes, Some(&grant.auth), now).await?;
    let mut response = token_response(&access, &claims, claims.exp - now);
    if scopes.iter().any(|s| s == "openid") {
        let id = issue::id_token(
            app,
            &issue::IdTokenInput {
                client,
                user: &user,
                scopes: &scopes,
                auth: &grant.auth,
                nonce: None,
                access_token: &access,
            },
            now,
        )?;
        response["id_token"] = json!(id);
    }
    issue::tie_to_family(app, &grant.family, &claims, now).await?;
    let (next, _) = issue::refresh_token(
        app,
        Some((&grant.family, grant.family_expires)),
        client,
        &user,
        &grant.scopes,
        &grant.auth,
        now,
    )
    .await?;
    response["refresh_token"] = json!(next);
    let event = AuditEvent::new(now, user.id.clone(), "token.refresh")
        .target(claims.jti.clone())
        .source(source)
        .client(client.id.clone());
    app.audit.record(event).await?;
    Ok(response)
}
