//! The `authorization_code` grant (RFC 6749 §4.1, PKCE RFC 7636): a code
//! is checked before it is taken, and a replay revokes what it issued.

use super::*;

/// What a used code issued, so a replay can take it back (RFC 6749 §4.1.2).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct CodeIssued {
    pub(super) jti: String,
    pub(super) exp: i64,
    pub(super) family: Option<String>,
}

/// The mark a redeemed code leaves: whose it was, and (once minted) what
/// it issued. Only that client's replay voids what was issued.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct UsedCode {
    pub(super) client_id: String,
    pub(super) issued: Option<CodeIssued>,
}

pub(super) async fn authorization_code(
    app: &App,
    client: &Client,
    form: &Form,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    require_grant_type(client, GrantType::AuthorizationCode)?;
    let code = form.require("code")?;
    let keep = Duration::from_secs(
        app.config
            .tokens
            .refresh_seconds
            .max(app.config.tokens.access_seconds),
    );
    // Another client's code, or one presented without its PKCE verifier or
    // redirect URI, is refused without being used up: whoever holds a
    // leaked code can neither use it nor void it.
    let key = keys::code(code);
    let Some(bytes) = app.ephemeral.get(&key).await? else {
        return Err(code_replayed(app, client, code, source, now).await?);
    };
    let grant: authorize::CodeGrant =
        serde_json::from_slice(&bytes).map_err(|e| OAuthError::server_error(&e))?;
    if grant.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "authorization code was issued to another client",
        ));
    }
    match form.get("redirect_uri") {
        Some(uri) if uri == grant.redirect_uri => {}
        None if !grant.redirect_uri_given => {}
        _ => {
            return Err(OAuthError::invalid_grant(
                "`redirect_uri` differs from the authorization request",
            ));
        }
    }
    match (&grant.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            if !authorize::pkce_shaped(verifier) || authorize::s256(verifier) != *challenge {
                return Err(OAuthError::invalid_grant("PKCE verification failed"));
            }
        }
        (Some(_), None) => return Err(OAuthError::invalid_grant("missing `code_verifier`")),
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "`code_verifier` without a code challenge",
            ));
        }
        (None, None) => {}
    }
    // Marked used (only if no mark is there) before it is taken: of two
    // exchanges racing, the second finds the mark and is a replay (see
    // `code_replayed`), whatever the interleaving.
    let pending = UsedCode {
        client_id: client.id.clone(),
        issued: None,
    };
    let pending = serde_json::to_vec(&pending).map_err(|e| OAuthError::server_error(&e))?;
    if !app
        .ephemeral
        .put_new(&keys::used_code(code), &pending, keep)
        .await?
    {
        return Err(code_replayed(app, client, code, source, now).await?);
    }
    if app.ephemeral.take(&key).await?.is_none() {
        return Err(OAuthError::invalid_grant(
            "authorization code is invalid or expired",
        ));
    }
    let user = match app.store.user_by_id(&grant.user_id).await? {
        Some(u) if !u.disabled => u,
        _ => return Err(OAuthError::invalid_grant("the user is no longer active")),
    };
    let auth = issue::AuthFacts {
        auth_time: grant.auth_time,
        amr: grant.amr.clone(),
        acr: grant.acr.clone(),
        sid: grant.sid.clone(),
    };
    let (response, claims, family) = issue_for_user(
        app,
        client,
        &user,
        &grant.scopes,
        &auth,
        grant.nonce.as_deref(),
        now,
    )
    .await?;
    let issued = CodeIssued {
        jti: claims.jti.clone(),
        exp: claims.exp,
        family,
    };
    let marker = UsedCode {
        client_id: client.id.clone(),
        issued: Some(issued.clone()),
    };
    let bytes = serde_json::to_vec(&marker).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(&keys::used_code(code), &bytes, keep)
        .await?;
    // A replay that came while we were minting left a flag: what we issued
    // is void, for this caller too.
    if app
        .ephemeral
        .get(&keys::replayed_code(code))
        .await?
        .is_some()
    {
        revoke_issued(app, &issued, now).await?;
        return Err(OAuthError::invalid_grant(
            "authorization code was used twice; its tokens are revoked",
        ));
    }
    let event = AuditEvent::new(now, user.id.clone(), "token.issue")
        .target(claims.jti.clone())
        .source(source)
        .client(client.id.clone())
        .detail(json!({"grant_type": "authorization_code", "scope": claims.scope}));
    app.audit.record(event).await?;
    Ok(response)
}

pub(super) async fn revoke_issued(
    app: &App,
    issued: &CodeIssued,
    now: i64,
) -> Result<(), OAuthError> {
    issue::revoke_access(app, &[(issued.jti.clone(), issued.exp)], now).await?;
    if let Some(family) = &issued.family {
        issue::revoke_family(app, family, now).await?;
    }
    Ok(())
}

/// A code that is not (or no longer) redeemable. If it was used, and the
/// client it was issued to presents it again, whoever holds it may be an
/// attacker: what the first exchange issued stops working (RFC 6749
/// §4.1.2). Another client's replay changes nothing. Every interleaving
/// with a concurrent first exchange is covered: either the exchange sees
/// our flag after writing its tokens' record, or we see that record when
/// we look again after flagging.
pub(super) async fn code_replayed(
    app: &App,
    client: &Client,
    code: &str,
    source: Option<IpAddr>,
    now: i64,
) -> Result<OAuthError, OAuthError> {
    let used_key = keys::used_code(code);
    let read =
        |bytes: Option<Vec<u8>>| bytes.and_then(|b| serde_json::from_slice::<UsedCode>(&b).ok());
    let invalid = || OAuthError::invalid_grant("authorization code is invalid or expired");
    let Some(mark) = read(app.ephemeral.get(&used_key).await?) else {
        return Ok(invalid());
    };
    if mark.client_id != client.id {
        return Ok(invalid());
    }
    let issued = |bytes: Option<Vec<u8>>| read(bytes).and_then(|m| m.issued);
    match mark.issued {
        Some(done) => revoke_issued(app, &done, now).await?,
        None => {
            app.ephemeral
                .put(&keys::replayed_code(code), b"1", Duration::from_secs(600))
                .await?;
            if let Some(done) = issued(app.ephemeral.get(&used_key).await?) {
                revoke_issued(app, &done, now).await?;
            }
        }
    }
    let event = AuditEvent::new(now, format!("client:{}", client.id), "token.code_replay")
        .failed()
        .source(source)
        .client(client.id.clone());
    app.audit.record(event).await?;
    Ok(OAuthError::invalid_grant(
        "authorization code was already used; its tokens are revoked",
    ))
}
