//! The HTTP API on :8081: decisions (`/v1/check`, `/v1/is_authorized`),
//! read-only views, the admin API, health and metrics. Every error leaves as
//! `{"error": "<code>", "message": "..."}` with a 4xx/5xx status.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::authn::Authn;
use decision::claims::Claims;
use decision::error::Error;
use decision::ext_authz::Rejected;
use decision::ext_authz::{self, Answer, Question};
use decision::headers;
use decision::{CheckRequest, Decision, DirectRequest, Engine};

/// Envoy's ext_authz HTTP mode sends each request's method, path and
/// headers to this prefix plus the original path (`http_service.path_prefix`).
pub const ENVOY_HTTP_PREFIX: &str = "/ext_authz";

/// Largest batch `/v1/is_authorized/batch` takes.
pub const MAX_BATCH: usize = 100;

mod admin;
mod decide;
mod views;

use admin::{delete_entity, get_entity, put_entities, put_entity, reload};
use decide::{check, envoy_http, is_authorized, is_authorized_batch};
use views::{metrics, policies, ready, schema, status};

#[derive(Debug, Clone)]
pub struct ApiState {
    pub engine: Arc<Engine>,
    pub admin_token: Option<Arc<str>>,
    pub authn: Authn,
}

pub fn router(state: ApiState, max_body_bytes: usize) -> Router {
    Router::new()
        .route("/v1/check", post(check))
        .route("/v1/is_authorized", post(is_authorized))
        .route("/v1/is_authorized/batch", post(is_authorized_batch))
        .route("/v1/policies", get(policies))
        .route("/v1/schema", get(schema))
        .route("/v1/status", get(status))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/entities", put(put_entities))
        .route(
            "/v1/entities/{type}/{id}",
            get(get_entity).put(put_entity).delete(delete_entity),
        )
        .route(&format!("{ENVOY_HTTP_PREFIX}/"), any(envoy_http))
        .route(&format!("{ENVOY_HTTP_PREFIX}/{{*path}}"), any(envoy_http))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this endpoint",
            )
        })
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// The one mapping from errors to HTTP responses.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `WWW-Authenticate` for a 401; `challenge::bearer()` when none is given.
    challenge: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            challenge: None,
        }
    }

    fn invalid_token(rejected: &Rejected) -> Self {
        match rejected {
            Rejected::Token(why) => Self {
                challenge: Some(decision::challenge::invalid_token(why)),
                ..Self::new(StatusCode::UNAUTHORIZED, "invalid_token", why.clone())
            },
            Rejected::Unavailable(why) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", why.clone())
            }
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::BadRequest(m) => Self::bad_request(m),
            Error::NotFound(m) => {
                Self::new(StatusCode::NOT_FOUND, "not_found", format!("{m} not found"))
            }
            Error::Invalid(e) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_entities", e.to_string())
            }
            Error::Storage(e) => {
                tracing::error!(error = %e, "entity write failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "storage",
                    "entities could not be persisted; nothing changed",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            let challenge = self.challenge.unwrap_or_else(decision::challenge::bearer);
            if let Ok(challenge) = header::HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, challenge);
            }
        }
        response
    }
}

/// A JSON body parsed in our error shape: 413 past the size limit, 415 for a
/// non-JSON content type, 400 naming the field for malformed JSON.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected `Content-Type: application/json`",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "request body exceeds `max_body_bytes`",
                    )
                } else {
                    ApiError::bad_request(format!("cannot read body: {e}"))
                }
            })?;
        let refused = match serde_json::from_slice(&bytes) {
            Ok(body) => return Ok(JsonBody(body)),
            Err(e) => e,
        };
        // Tracking the path costs an allocation per key read, so only a
        // refused body is read again to say where it went wrong.
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let message = match serde_path_to_error::deserialize::<_, T>(de) {
            Err(e) if e.path().to_string() != "." => {
                format!("invalid JSON body at `{}`: {}", e.path(), e.inner())
            }
            _ => format!("invalid JSON body: {refused}"),
        };
        Err(ApiError::bad_request(message))
    }
}
