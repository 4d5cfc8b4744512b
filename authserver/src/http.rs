//! The HTTP surface: routes, the one mapping of [`OAuthError`] to responses,
//! and the form-body extractor that enforces the media type and size.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::{App, now};
use crate::error::OAuthError;
use crate::oauth::{self, Form};

type Shared = State<Arc<App>>;

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/introspect", post(introspect))
        .route("/revoke", post(revoke))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (status, no_store(), axum::Json(body)).into_response();
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"portcullis\""),
            );
        }
        response
    }
}

/// Token responses must not be cached (RFC 6749 §5.1).
fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// The metadata of RFC 8414, listing only what this server implements.
fn metadata_document(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "grant_types_supported": ["client_credentials"],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
    })
}

async fn metadata(State(app): Shared) -> impl IntoResponse {
    axum::Json(metadata_document(&app.issuer))
}

async fn jwks(State(app): Shared) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        app.keys.current().jwks.clone(),
    )
}

async fn readyz(State(app): Shared) -> Response {
    let store = app.store.ping().await;
    let ephemeral = app.ephemeral.ping().await;
    let body = json!({
        "database": store.as_ref().map_or_else(|e| e.to_string(), |()| "ok".into()),
        "ephemeral": ephemeral.as_ref().map_or_else(|e| e.to_string(), |()| "ok".into()),
    });
    let status = if store.is_ok() && ephemeral.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// The form body of an OAuth endpoint, with the caller's address and
/// `Authorization` header.
struct Call {
    form: Form,
    authorization: Option<String>,
    source: std::net::IpAddr,
}

fn call(headers: &HeaderMap, peer: SocketAddr, body: &Bytes) -> Result<Call, OAuthError> {
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
                .map_err(|_| OAuthError::invalid_client("malformed Authorization header", true))?
                .to_owned(),
        ),
        None => None,
    };
    Ok(Call {
        form: Form::parse(body)?,
        authorization,
        source: peer.ip(),
    })
}

async fn token(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&headers, peer, &body)?;
    let out = oauth::token(
        &app,
        &c.form,
        c.authorization.as_deref(),
        Some(c.source),
        now(),
    )
    .await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

async fn introspect(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&headers, peer, &body)?;
    let out = oauth::introspect(
        &app,
        &c.form,
        c.authorization.as_deref(),
        Some(c.source),
        now(),
    )
    .await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

async fn revoke(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&headers, peer, &body)?;
    oauth::revoke(
        &app,
        &c.form,
        c.authorization.as_deref(),
        Some(c.source),
        now(),
    )
    .await?;
    Ok((no_store(), StatusCode::OK).into_response())
}
