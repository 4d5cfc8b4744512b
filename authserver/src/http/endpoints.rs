//! The OAuth endpoints a client calls with a form body: token,
//! introspection, revocation; and userinfo with a bearer token.

use super::*;

/// The form body of an OAuth endpoint, with the caller's address and
/// `Authorization` header.
pub(super) struct Call {
    pub(super) form: Form,
    pub(super) authorization: Option<String>,
    pub(super) source: Option<std::net::IpAddr>,
}

pub(super) fn call(
    app: &App,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: &Bytes,
) -> Result<Call, OAuthError> {
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::trim);
    if !media.is_some_and(|m| m.eq_ignore_ascii_case("application/x-www-form-urlencoded")) {
        return Err(OAuthError::invalid_request(
            "body must be application/x-www-form-urlencoded",
        ));
    }
    let authorization = match headers.get(header::AUTHORIZATION) {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header"))?
                .to_owned(),
        ),
        None => None,
    };
    Ok(Call {
        form: Form::parse(body)?,
        authorization,
        source: crate::proxy::client_address(peer.ip(), headers, &app.trusted_proxies),
    })
}

pub(super) async fn token(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&app, &headers, peer, &body)?;
    let out = oauth::token(&app, &c.form, c.authorization.as_deref(), c.source, now()).await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

pub(super) async fn introspect(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&app, &headers, peer, &body)?;
    let out = oauth::introspect(&app, &c.form, c.authorization.as_deref(), c.source, now()).await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

pub(super) async fn revoke(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&app, &headers, peer, &body)?;
    oauth::revoke(&app, &c.form, c.authorization.as_deref(), c.source, now()).await?;
    Ok((no_store(), StatusCode::OK).into_response())
}

pub(super) async fn userinfo(State(app): Shared, headers: HeaderMap) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let challenge = |status: StatusCode, error: &str| {
        let mut response = (status, no_store()).into_response();
        let value = format!("Bearer realm=\"portcullis\", error=\"{error}\"");
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    };
    match oauth::userinfo(&app, bearer, now()).await {
        Ok(claims) => (no_store(), axum::Json(claims)).into_response(),
        Err(BearerError::InvalidToken) if bearer.is_none() => {
            let mut response = (StatusCode::UNAUTHORIZED, no_store()).into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis\""),
            );
            response
        }
        Err(BearerError::InvalidToken) => challenge(StatusCode::UNAUTHORIZED, "invalid_token"),
        Err(BearerError::InsufficientScope) => {
            challenge(StatusCode::FORBIDDEN, "insufficient_scope")
        }
        Err(BearerError::Unavailable(e)) => e.into_response(),
    }
}
