//! The token, introspection, revocation and userinfo endpoints' logic
//! (RFC 6749, 7636, 7662, 7009, 7523 for `private_key_jwt`, OIDC Core),
//! free of HTTP types: handlers pass the form body and the `Authorization`
//! header in and get JSON or an [`OAuthError`] back.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{AuditEvent, Client, ClientAuth};
use crate::token::AccessClaims;
use crate::{authorize, issue};

/// How the client tried to authenticate.
enum Presented<'a> {
    Basic {
        id: String,
        secret: String,
    },
    Post {
        id: &'a str,
        secret: &'a str,
    },
    Assertion {
        assertion: &'a str,
        id: Option<&'a str>,
    },
    Public {
        id: &'a str,
    },
}

const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn presented<'a>(form: &'a Form, authorization: Option<&str>) -> Result<Presented<'a>, OAuthError> {
    let basic = authorization
        .map(|h| {
            let encoded = h
                .strip_prefix("Basic ")
                .or_else(|| h.strip_prefix("basic "))
                .ok_or_else(|| OAuthError::invalid_client("unsupported Authorization scheme"))?;
            let bad = || OAuthError::invalid_client("malformed Basic credentials");
            let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
            let text = String::from_utf8(decoded).map_err(|_| bad())?;
            let (id, secret) = text.split_once(':').ok_or_else(bad)?;
            // RFC 6749 §2.3.1: both parts are form-urlencoded first.
            let unescape = |s: &str| {
                form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Ok::<_, OAuthError>((unescape(id), unescape(secret)))
        })
        .transpose()?;
    let secret = form.get("client_secret");
    let assertion = form.get("client_assertion");
    let methods = usize::from(basic.is_some())
        + usize::from(secret.is_some())
        + usize::from(assertion.is_some());
    if methods > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method used",
        ));
    }
    let id = form.get("client_id");
    if let Some((basic_id, secret)) = basic {
        if id.is_some_and(|id| id != basic_id) {
            return Err(OAuthError::invalid_request(
                "`client_id` differs from the Basic credentials",
            ));
        }
        return Ok(Presented::Basic {
            id: basic_id,
            secret,
        });
    }
    if let Some(assertion) = assertion {
        if form.get("client_assertion_type") != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::invalid_request(format!(
                "`client_assertion_type` must be `{JWT_BEARER_ASSERTION}`"
            )));
        }
        return Ok(Presented::Assertion { assertion, id });
    }
    let id = id.ok_or_else(|| OAuthError::invalid_client("no client authentication"))?;
    Ok(match secret {
        Some(secret) => Presented::Post { id, secret },
        None => Presented::Public { id },
    })
}

/// Identifies the client by the kind of credential it registered (a
/// secret, a key, or none); any mismatch or wrong credential is
/// `invalid_client`, never a hint which part was wrong.
pub async fn authenticate(
    app: &App,
    form: &Form,
    authorization: Option<&str>,
    source: Option<IpAddr>,
    now: i64,
) -> Result<std::sync::Arc<Client>, OAuthError> {
    let presented = presented(form, authorization)?;
    let id = match &presented {
        Presented::Basic { id, .. } => id.clone(),
        Presented::Post { id, .. } | Presented::Public { id } => (*id).to_owned(),
        Presented::Assertion { assertion, id } => assertion_subject(assertion, *id)?,
    };
    let failed = || OAuthError::invalid_client("client authentication failed");
    let client = app.client(&id).await?;
    let verified = match (&client, &presented) {
        // A client with a secret may present it either way (as Keycloak
        // and most providers accept): the secret is the same proof.
        (Some(c), Presented::Basic { secret, .. }) if has_secret(c) => {
            secret_matches(app, c, secret)
        }
        (Some(c), Presented::Post { secret, .. }) if has_secret(c) => {
            secret_matches(app, c, secret)
        }
        (Some(c), Presented::Public { .. }) => c.auth_method == ClientAuth::None,
        (Some(c), Presented::Assertion { assertion, .. })
            if c.auth_method == ClientAuth::PrivateKeyJwt =>
        {
            assertion_valid(app, c, assertion, now).await?
        }
        _ => false,
    };
    match client {
        Some(c) if verified => Ok(c),
        _ => {
            let event = AuditEvent::new(now, format!("client:{id}"), "client.authenticate")
                .failed()
                .source(source)
                .client(id.clone());
            app.audit.record(event).await?;
            Err(failed())
        }
    }
}

fn has_secret(client: &Client) -> bool {
    matches!(
        client.auth_method,
        ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost
    )
}

fn secret_matches(app: &App, client: &Client, secret: &str) -> bool {
    client
        .secret_digest
        .as_deref()
        .is_some_and(|d| app.secrets.matches(secret, d))
}

#[derive(Deserialize)]
struct AssertionClaims {
    iss: String,
    sub: String,
    jti: String,
    exp: i64,
}

/// The `sub` of a client assertion, read before its signature is checked
/// only to find which client's keys to check it with.
fn assertion_subject(assertion: &str, id: Option<&str>) -> Result<String, OAuthError> {
    let bad = || OAuthError::invalid_client("malformed client assertion");
    let payload = assertion.split('.').nth(1).ok_or_else(bad)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| bad())?;
    let claims: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let sub = claims["sub"].as_str().ok_or_else(bad)?.to_owned();
    if id.is_some_and(|id| id != sub) {
        return Err(OAuthError::invalid_client(
            "`client_id` differs from the assertion's `sub`",
        ));
    }
    Ok(sub)
}

/// RFC 7523 §3: signed by one of the client's registered keys with an
/// asymmetric algorithm; `iss` = `sub` = client id; `aud` this issuer or
/// its token endpoint; unexpired; `jti` never seen before.
async fn assertion_valid(
    app: &App,
    client: &Client,
    assertion: &str,
    now: i64,
) -> Result<bool, OAuthError> {
    let Some(jwks) = client
        .jwks
        .as_deref()
        .and_then(|j| serde_json::from_str::<JwkSet>(j).ok())
    else {
        return Ok(false);
    };
    let Ok(header) = jsonwebtoken::decode_header(assertion) else {
        return Ok(false);
    };
    let asymmetric = [
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::EdDSA,
    ];
    if !asymmetric.contains(&header.alg) {
        return Ok(false);
    }
    let jwk = match header.kid.as_deref() {
        Some(kid) => jwks.find(kid),
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    };
    let Some(key) = jwk.and_then(|j| DecodingKey::from_jwk(j).ok()) else {
        return Ok(false);
    };
    let mut validation = Validation::new(header.alg);
    let token_endpoint = format!("{}/token", app.issuer);
    validation.set_audience(&[app.issuer.as_str(), token_endpoint.as_str()]);
    validation.set_issuer(&[client.id.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = 30;
    let Ok(data) = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation) else {
        return Ok(false);
    };
    let claims = data.claims;
    if claims.sub != client.id || claims.iss != client.id || claims.exp > now + 3600 {
        return Ok(false);
    }
    // Single use: remember the jti until the assertion could no longer pass.
    let ttl = Duration::from_secs(u64::try_from(claims.exp - now + 60).unwrap_or(60));
    let key = format!("assertion:{}:{}", client.id, claims.jti);
    Ok(app.ephemeral.put_new(&key, b"1", ttl).await?)
}

/// The scopes granted: those asked for, all allowed to the client; without
/// a `scope` parameter, everything the client is registered for.
fn granted_scopes(client: &Client, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(client.scopes.clone());
    };
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !scope
            .chars()
            .all(|c| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c))
        {
            return Err(OAuthError::invalid_scope(format!(
                "`{scope}` is not a valid scope token"
            )));
        }
        if !client.scopes.iter().any(|s| s == scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{scope}` is not allowed for this client"
            )));
        }
        if !granted.iter().any(|s| s == scope) {
            granted.push(scope.to_owned());
        }
    }
    Ok(granted)
}

/// `POST /token`.
pub async fn token(
    app: &App,
    form: &Form,
    authorization: Option<&str>,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    let grant = form.require("grant_type")?;
    let client = authenticate(app, form, authorization, source, now).await?;
    match grant {
        "client_credentials" => client_credentials(app, &client, form, source, now).await,
        "authorization_code" => authorization_code(app, &client, form, source, now).await,
        "refresh_token" => refresh(app, &client, form, source, now).await,
        other => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type `{other}` is not supported"
        ))),
    }
}

fn require_grant_type(client: &Client, grant: &str) -> Result<(), OAuthError> {
    if client.grant_types.iter().any(|g| g == grant) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!(
            "client is not registered for {grant}"
        )))
    }
}

fn token_response(access: &str, claims: &AccessClaims, lifetime: i64) -> Value {
    let mut response = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
    });
    if !claims.scope.is_empty() {
        response["scope"] = json!(claims.scope);
    }
    response
}

/// What a used code issued, so a replay can take it back (RFC 6749 §4.1.2).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct CodeIssued {
    jti: String,
    exp: i64,
    family: Option<String>,
}

/// The mark a redeemed code leaves: whose it was, and (once minted) what
/// it issued. Only that client's replay voids what was issued.
#[derive(serde::Serialize, serde::Deserialize)]
struct UsedCode {
    client_id: String,
    issued: Option<CodeIssued>,
}

/// The mark a rotated refresh token leaves: its family, and whose it was.
#[derive(serde::Serialize, serde::Deserialize)]
struct UsedRefresh {
    family: String,
    client_id: String,
}

async fn authorization_code(
    app: &App,
    client: &Client,
    form: &Form,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    require_grant_type(client, "authorization_code")?;
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
    let key = authorize::code_key(code);
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
        .put_new(&authorize::used_code_key(code), &pending, keep)
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
    };
    let (access, claims) =
        issue::access_token(app, client, Some(&user), &grant.scopes, Some(&auth), now).await?;
    let lifetime = claims.exp - now;
    let mut response = token_response(&access, &claims, lifetime);
    if grant.scopes.iter().any(|s| s == "openid") {
        let id = issue::id_token(
            app,
            &issue::IdTokenInput {
                client,
                user: &user,
                scopes: &grant.scopes,
                auth: &auth,
                nonce: grant.nonce.as_deref(),
                access_token: &access,
            },
            now,
        )?;
        response["id_token"] = json!(id);
    }
    let mut family = None;
    if client.grant_types.iter().any(|g| g == "refresh_token") {
        let (refresh, f) =
            issue::refresh_token(app, None, client, &user, &grant.scopes, &auth, now).await?;
        response["refresh_token"] = json!(refresh);
        family = Some(f);
    }
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
        .put(&authorize::used_code_key(code), &bytes, keep)
        .await?;
    // A replay that came while we were minting left a flag: what we issued
    // is void, for this caller too.
    if app.ephemeral.get(&replayed_key(code)).await?.is_some() {
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

fn replayed_key(code: &str) -> String {
    format!("{}:replayed", authorize::used_code_key(code))
}

async fn revoke_issued(app: &App, issued: &CodeIssued, now: i64) -> Result<(), OAuthError> {
    revoke_jti(app, &issued.jti, issued.exp, now).await?;
    if let Some(family) = &issued.family {
        app.ephemeral.delete(&issue::family_key(family)).await?;
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
async fn code_replayed(
    app: &App,
    client: &Client,
    code: &str,
    source: Option<IpAddr>,
    now: i64,
) -> Result<OAuthError, OAuthError> {
    let used_key = authorize::used_code_key(code);
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
                .put(&replayed_key(code), b"1", Duration::from_secs(600))
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

async fn refresh(
    app: &App,
    client: &Client,
    form: &Form,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    require_grant_type(client, "refresh_token")?;
    let token = form.require("refresh_token")?;
    let key = issue::refresh_key(token);
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
                .put_new(&issue::used_refresh_key(token), &used, ttl)
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
        let used = app.ephemeral.get(&issue::used_refresh_key(token)).await?;
        let used = used.and_then(|b| serde_json::from_slice::<UsedRefresh>(&b).ok());
        if !marked
            && let Some(UsedRefresh { family, client_id }) = used
            && client_id == client.id
        {
            // Reuse of a rotated token by its client: someone has a copy.
            // End the family. (Another client's replay changes nothing.)
            app.ephemeral.delete(&issue::family_key(&family)).await?;
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
        .get(&issue::family_key(&grant.family))
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
            app.ephemeral
                .delete(&issue::family_key(&grant.family))
                .await?;
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

async fn client_credentials(
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
    if !client.grant_types.iter().any(|g| g == "client_credentials") {
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

async fn revoke_jti(app: &App, jti: &str, exp: i64, now: i64) -> Result<(), OAuthError> {
    let ttl = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0).max(1));
    app.ephemeral.put(&revoked_key(jti), b"1", ttl).await?;
    Ok(())
}

fn revoked_key(jti: &str) -> String {
    format!("revoked:{jti}")
}

/// The client still exists, and so does the user (not disabled) when the
/// token acts for one: deleting or disabling ends their tokens' validity.
async fn still_active(app: &App, claims: &AccessClaims) -> Result<bool, OAuthError> {
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
    if let Some(bytes) = app.ephemeral.get(&issue::refresh_key(token)).await?
        && let Ok(grant) = serde_json::from_slice::<issue::RefreshGrant>(&bytes)
    {
        let live = app
            .ephemeral
            .get(&issue::family_key(&grant.family))
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
        .get(&revoked_key(&claims.jti))
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
    if let Some(bytes) = app.ephemeral.get(&issue::refresh_key(token)).await?
        && let Ok(grant) = serde_json::from_slice::<issue::RefreshGrant>(&bytes)
    {
        if grant.client_id == client.id {
            app.ephemeral
                .delete(&issue::family_key(&grant.family))
                .await?;
            app.ephemeral.delete(&issue::refresh_key(token)).await?;
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
        revoke_jti(app, &claims.jti, claims.exp, now).await?;
        let event = AuditEvent::new(now, format!("client:{}", client.id), "token.revoke")
            .target(claims.jti)
            .source(source)
            .client(client.id.clone());
        app.audit.record(event).await?;
    }
    Ok(())
}

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
        .get(&revoked_key(&claims.jti))
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
