//! Starting an authorization request: the query of `GET /authorize`
//! validated (RFC 6749 §4.1.1, RFC 7636, OIDC Core §3.1.2.1), or a local
//! request for our own pages; either is stored for the sign-in to resume.

use super::*;

/// Validates the query of `GET /authorize` and stores the request.
pub async fn start(app: &App, query: &Form) -> Result<String, Refusal> {
    let client_id = query
        .get("client_id")
        .ok_or_else(|| Refusal::Page("the request names no client (`client_id`)".into()))?;
    let client = app
        .store
        .client(client_id)
        .await
        .map_err(OAuthError::from)?
        .ok_or_else(|| Refusal::Page(format!("unknown client `{client_id}`")))?;
    let (redirect_uri, given) = match query.get("redirect_uri") {
        Some(uri) if client.redirect_uris.iter().any(|r| r == uri) => (uri.to_owned(), true),
        Some(uri) => {
            return Err(Refusal::Page(format!(
                "`{uri}` is not a registered redirect URI of client `{client_id}`"
            )));
        }
        None => match client.redirect_uris.as_slice() {
            [only] => (only.clone(), false),
            _ => return Err(Refusal::Page("the request names no `redirect_uri`".into())),
        },
    };
    let mut req = AuthRequest {
        client_id: client.id.clone(),
        redirect_uri,
        redirect_uri_given: given,
        scopes: Vec::new(),
        state: query.get("state").map(str::to_owned),
        nonce: query.get("nonce").map(str::to_owned),
        code_challenge: None,
        prompt: None,
        max_age: None,
        login_hint: query.get("login_hint").map(str::to_owned),
        fresh_session: None,
        local: false,
        device: None,
        pending_link: None,
        acr_values: query
            .get("acr_values")
            .map(|v| {
                v.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default(),
    };
    // From here on the redirect URI is trusted: errors go back to it.
    let refuse = |req: &AuthRequest, error: &str, description: &str| {
        Refusal::Redirect(error_redirect(app, req, error, description))
    };
    if query.get("request").is_some() {
        return Err(refuse(
            &req,
            "request_not_supported",
            "request objects are not supported",
        ));
    }
    if query.get("request_uri").is_some() {
        return Err(refuse(
            &req,
            "request_uri_not_supported",
            "request_uri is not supported",
        ));
    }
    match query.get("response_type") {
        Some("code") => {}
        Some(other) => {
            return Err(refuse(
                &req,
                "unsupported_response_type",
                &format!("response_type `{other}` is not supported; use `code`"),
            ));
        }
        None => return Err(refuse(&req, "invalid_request", "missing `response_type`")),
    }
    if let Some(mode) = query.get("response_mode")
        && mode != "query"
    {
        return Err(refuse(
            &req,
            "invalid_request",
            &format!("response_mode `{mode}` is not supported"),
        ));
    }
    if !client.may_use(GrantType::AuthorizationCode) {
        return Err(refuse(
            &req,
            "unauthorized_client",
            "client is not registered for the authorization code flow",
        ));
    }
    let Some(scope) = query.get("scope") else {
        return Err(refuse(&req, "invalid_request", "missing `scope`"));
    };
    for s in scope.split(' ').filter(|s| !s.is_empty()) {
        if !client.scopes.iter().any(|c| c == s) {
            return Err(refuse(
                &req,
                "invalid_scope",
                &format!("scope `{s}` is not allowed for this client"),
            ));
        }
        if !req.scopes.iter().any(|x| x == s) {
            req.scopes.push(s.to_owned());
        }
    }
    match (
        query.get("code_challenge"),
        query.get("code_challenge_method"),
    ) {
        (Some(challenge), Some("S256")) if pkce_shaped(challenge) => {
            req.code_challenge = Some(challenge.to_owned());
        }
        (Some(_), Some("S256")) => {
            return Err(refuse(
                &req,
                "invalid_request",
                "`code_challenge` must be 43-128 unreserved characters",
            ));
        }
        (Some(_), None | Some("plain")) | (None, Some("plain")) => {
            return Err(refuse(
                &req,
                "invalid_request",
                "PKCE method `plain` is not allowed; use S256",
            ));
        }
        (_, Some(other)) => {
            return Err(refuse(
                &req,
                "invalid_request",
                &format!("unknown code_challenge_method `{other}`"),
            ));
        }
        (None, None) if client.is_public() => {
            return Err(refuse(
                &req,
                "invalid_request",
                "public clients must use PKCE (code_challenge with S256)",
            ));
        }
        (None, None) => {}
    }
    if let Some(prompt) = query.get("prompt") {
        let values: Vec<&str> = prompt.split(' ').filter(|s| !s.is_empty()).collect();
        if values.contains(&"none") && values.len() > 1 {
            return Err(refuse(
                &req,
                "invalid_request",
                "prompt `none` cannot be combined",
            ));
        }
        if let Some(bad) = values
            .iter()
            .find(|v| !matches!(**v, "none" | "login" | "consent"))
        {
            return Err(refuse(
                &req,
                "invalid_request",
                &format!("unsupported prompt `{bad}`"),
            ));
        }
        req.prompt = Some(values.join(" "));
    }
    if let Some(max_age) = query.get("max_age") {
        match max_age.parse::<i64>() {
            Ok(n) if n >= 0 => req.max_age = Some(n),
            _ => {
                return Err(refuse(
                    &req,
                    "invalid_request",
                    "`max_age` must be a non-negative integer",
                ));
            }
        }
    }
    let id = random_token::<24>();
    let bytes = serde_json::to_vec(&req).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(&keys::auth_request(&id), &bytes, REQUEST_TTL)
        .await
        .map_err(OAuthError::from)?;
    Ok(id)
}

/// The name sign-in pages show for a local request.
pub const LOCAL_NAME: &str = "your account";

/// A sign-in for one of our own pages at `path` (a local path, never a
/// URL): `fresh` asks for a new sign-in even with a session (before a
/// sensitive change).
pub async fn start_local(app: &App, path: &str, fresh: bool) -> Result<String, Refusal> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err(Refusal::Page(format!("`{path}` is not a local path")));
    }
    let req = AuthRequest {
        client_id: LOCAL_NAME.into(),
        redirect_uri: path.to_owned(),
        redirect_uri_given: true,
        scopes: Vec::new(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt: fresh.then(|| "login".to_owned()),
        max_age: None,
        login_hint: None,
        fresh_session: None,
        local: true,
        acr_values: Vec::new(),
        device: None,
        pending_link: None,
    };
    let id = random_token::<24>();
    let bytes = serde_json::to_vec(&req).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(&keys::auth_request(&id), &bytes, REQUEST_TTL)
        .await
        .map_err(OAuthError::from)?;
    Ok(id)
}

/// The sign-in of a device (RFC 8628) whose user code was typed on
/// `/device`: its client's request for its scopes, which settles the
/// device instead of minting a code. Consent is always asked.
pub async fn start_device(
    app: &App,
    typed: &str,
    source: Option<std::net::IpAddr>,
    now_ms: i64,
) -> Result<String, crate::device::EntryRefusal> {
    let (handle, grant) = crate::device::redeem(app, typed, source, now_ms).await?;
    let req = AuthRequest {
        client_id: grant.client_id,
        redirect_uri: "/device".into(),
        redirect_uri_given: false,
        scopes: grant.scopes,
        state: None,
        nonce: None,
        code_challenge: None,
        prompt: Some("consent".into()),
        max_age: None,
        login_hint: None,
        fresh_session: None,
        local: false,
        acr_values: Vec::new(),
        device: Some(handle),
        pending_link: None,
    };
    let id = random_token::<24>();
    let bytes = serde_json::to_vec(&req)
        .map_err(|e| crate::device::EntryRefusal::Unavailable(e.to_string()))?;
    app.ephemeral
        .put(&keys::auth_request(&id), &bytes, REQUEST_TTL)
        .await?;
    Ok(id)
}
