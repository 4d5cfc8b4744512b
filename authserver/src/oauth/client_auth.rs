//! Client authentication at the token, introspection and revocation
//! endpoints: `client_secret_basic`, `client_secret_post`,
//! `private_key_jwt` (RFC 7523) or none for public clients.

use super::*;

/// How the client tried to authenticate.
pub(super) enum Presented<'a> {
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

pub(super) const JWT_BEARER_ASSERTION: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

pub(super) fn presented<'a>(
    form: &'a Form,
    authorization: Option<&str>,
) -> Result<Presented<'a>, OAuthError> {
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

pub(super) fn has_secret(client: &Client) -> bool {
    matches!(
        client.auth_method,
        ClientAuth::ClientSecretBasic | ClientAuth::ClientSecretPost
    )
}

pub(super) fn secret_matches(app: &App, client: &Client, secret: &str) -> bool {
    client
        .secret_digest
        .as_deref()
        .is_some_and(|d| app.secrets.matches(secret, d))
}

#[derive(Deserialize)]
pub(super) struct AssertionClaims {
    pub(super) iss: String,
    pub(super) sub: String,
    pub(super) jti: String,
    pub(super) exp: i64,
}

/// The `sub` of a client assertion, read before its signature is checked
/// only to find which client's keys to check it with.
pub(super) fn assertion_subject(assertion: &str, id: Option<&str>) -> Result<String, OAuthError> {
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
pub(super) async fn assertion_valid(
    app: &App,
    client: &Client,
    assertion: &str,
    now: i64,
) -> Result<bool, OAuthError> {
    let Some(jwks) = client.jwks.as_deref() else {
        return Ok(false);
    };
    let audiences = [app.issuer.clone(), format!("{}/token", app.issuer)];
    let at = u64::try_from(now).unwrap_or(0);
    // The `tokens` rules, as for every bearer token we accept: asymmetric
    // algorithms only, keys from the registered JWKS, signature, `exp`
    // and `nbf` with 30 s leeway, `iss` and `aud`.
    let Ok(claims) = tokens::verify_with_keys(assertion, jwks, &client.id, &audiences, 30, at)
    else {
        return Ok(false);
    };
    let Ok(claims) = serde_json::from_value::<AssertionClaims>(Value::Object(claims)) else {
        return Ok(false);
    };
    if claims.sub != client.id || claims.iss != client.id || claims.exp > now + 3600 {
        return Ok(false);
    }
    // Single use: remember the jti until the assertion could no longer pass.
    let ttl = Duration::from_secs(u64::try_from(claims.exp - now + 60).unwrap_or(60));
    let key = keys::client_assertion(&client.id, &claims.jti);
    Ok(app.ephemeral.put_new(&key, b"1", ttl).await?)
}
