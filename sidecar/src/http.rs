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

/// Envoy's ext_authz in HTTP mode. Allowed: 200 with the identity headers
/// (which Envoy copies upstream when `allowed_upstream_headers` matches
/// them) and `x-envoy-auth-headers-to-remove` naming the owned headers not
/// set. Denied: 401 or 403 with the JSON body and challenge, which Envoy
/// returns to the client. The body of the original request is not read.
async fn envoy_http(
    State(state): State<ApiState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let full = uri.path_and_query().map_or("/", |p| p.as_str());
    let Some(path) = full
        .strip_prefix(ENVOY_HTTP_PREFIX)
        .filter(|p| p.starts_with('/'))
    else {
        return ApiError::bad_request(format!(
            "`{full}` is not an original path under `{ENVOY_HTTP_PREFIX}/`"
        ))
        .into_response();
    };
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let question = Question {
        method: method.as_str(),
        path,
        host: text(header::HOST),
        source: None,
        request_id: text(header::HeaderName::from_static("x-request-id")),
        sent_owned: headers
            .keys()
            .map(header::HeaderName::as_str)
            .filter(|h| decision::headers::is_owned(h))
            .collect(),
    };
    let identity = state.authn.bearer(text(header::AUTHORIZATION)).await;
    match ext_authz::answer(&state.engine, identity, question) {
        Answer::Allow { set, mut remove } => {
            let mut response = StatusCode::OK.into_response();
            let out = response.headers_mut();
            for (name, value) in set {
                match header::HeaderValue::from_bytes(value.as_bytes()) {
                    Ok(value) => {
                        out.insert(name, value);
                    }
                    // Not set, so the client's value must not survive.
                    Err(_) => remove.push(name.to_owned()),
                }
            }
            if let Ok(value) = header::HeaderValue::from_str(&remove.join(","))
                && !remove.is_empty()
            {
                out.insert("x-envoy-auth-headers-to-remove", value);
            }
            response
        }
        Answer::Deny(denial) => {
            let status = StatusCode::from_u16(denial.status).unwrap_or(StatusCode::FORBIDDEN);
            let mut response = (status, denial.body).into_response();
            let out = response.headers_mut();
            out.insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            if let Some(challenge) = denial.challenge
                && let Ok(value) = header::HeaderValue::from_str(&challenge)
            {
                out.insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
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
        Self {
            challenge: Some(decision::challenge::invalid_token(&rejected.0)),
            ..Self::new(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                rejected.0.clone(),
            )
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
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de)
            .map(JsonBody)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    ApiError::bad_request(format!("invalid JSON body: {inner}"))
                } else {
                    ApiError::bad_request(format!("invalid JSON body at `{path}`: {inner}"))
                }
            })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    method: String,
    path: String,
    host: Option<String>,
    source: Option<IpAddr>,
    claims: Option<serde_json::Map<String, Value>>,
    /// The request's `Authorization` header, verified here against the
    /// configured issuers; an alternative to `claims`.
    authorization: Option<String>,
    request_id: Option<String>,
    time: Option<i64>,
}

async fn check(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Json<Value>, ApiError> {
    let claims = match (&body.claims, &body.authorization) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `claims` or `authorization`, not both",
            ));
        }
        (Some(claims), None) => Some(
            Claims::from_json(claims)
                .map_err(|e| ApiError::bad_request(format!("`claims`: {e}")))?,
        ),
        (None, Some(_)) if state.authn.verifier().is_none() => {
            return Err(ApiError::bad_request(
                "`authorization` needs `issuers` in the sidecar's configuration",
            ));
        }
        (None, authorization) => state
            .authn
            .bearer(authorization.as_deref())
            .await
            .map_err(|r| ApiError::invalid_token(&r))?,
    };
    if body.method.is_empty() || !body.method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ApiError::bad_request(
            "`method` must be an upper-case HTTP method",
        ));
    }
    let decision = state.engine.check(&CheckRequest {
        method: &body.method,
        path: &body.path,
        host: body.host.as_deref(),
        source: body.source,
        claims: claims.as_ref(),
        request_id: body.request_id.as_deref(),
        time: body.time,
    });
    let mut out = decision_json(&decision);
    if decision.allowed() {
        let identity: serde_json::Map<String, Value> = claims
            .as_ref()
            .map(headers::identity)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), Value::String(v)))
            .collect();
        out["headers"] = Value::Object(identity);
    }
    Ok(Json(out))
}

fn decision_json(decision: &Decision) -> Value {
    let o = &decision.outcome;
    let mut out = json!({
        "decision": if o.allowed { "Allow" } else { "Deny" },
        "determiningPolicies": o.policies,
        "errors": o.errors,
    });
    if let Some(reason) = &o.reason {
        out["reason"] = Value::String(reason.clone());
    }
    out
}

fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok())
}

async fn is_authorized(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DirectRequest>,
) -> Result<Json<Value>, ApiError> {
    let decision = state.engine.is_authorized(body, request_id(&headers))?;
    Ok(Json(decision_json(&decision)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    requests: Vec<DirectRequest>,
}

async fn is_authorized_batch(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<Json<Value>, ApiError> {
    if body.requests.is_empty() || body.requests.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "`requests` must hold 1 to {MAX_BATCH} requests"
        )));
    }
    let mut results = Vec::with_capacity(body.requests.len());
    for (i, request) in body.requests.into_iter().enumerate() {
        let decision = state
            .engine
            .is_authorized(request, request_id(&headers))
            .map_err(|e| {
                let ApiError {
                    status,
                    code,
                    message,
                    ..
                } = ApiError::from(e);
                ApiError::new(status, code, format!("`requests[{i}]`: {message}"))
            })?;
        results.push(decision_json(&decision));
    }
    Ok(Json(json!({ "results": results })))
}

async fn policies(State(state): State<ApiState>) -> Json<Value> {
    let snap = state.engine.snapshot();
    Json(json!({ "version": snap.bundle.version, "policies": snap.bundle.sources }))
}

async fn schema(State(state): State<ApiState>) -> Response {
    let snap = state.engine.snapshot();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        snap.bundle.schema_text.clone(),
    )
        .into_response()
}

async fn status(State(state): State<ApiState>) -> Json<Value> {
    let issuers = state
        .authn
        .verifier()
        .map(tokens::Verifier::status)
        .unwrap_or_default();
    let snap = state.engine.snapshot();
    let b = &snap.bundle;
    let loaded_at = b
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    Json(json!({
        "version": b.version,
        "generation": snap.generation,
        "loaded_at": loaded_at,
        "policies": b.sources.len(),
        "entities": b.entity_count(),
        "directory": b.dir,
        "reload": state.engine.status(),
        "issuers": issuers,
    }))
}

async fn ready(State(state): State<ApiState>) -> Response {
    // A sidecar that started has a validated policy set; it stays ready even
    // when a later reload is refused. Tokens it verifies itself need keys.
    if let Some(verifier) = state.authn.verifier()
        && !verifier.ready()
    {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the keys of a configured issuer have not been fetched yet",
        )
        .into_response();
    }
    Json(json!({"status": "ready", "version": state.engine.snapshot().bundle.version}))
        .into_response()
}

async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            bootstrap::telemetry::METRICS_CONTENT_TYPE,
        )],
        bootstrap::telemetry::render_metrics(&state.engine.metrics().registry),
    )
        .into_response()
}

/// The admin API is off without a configured token; with one, the bearer
/// must match (compared in constant time).
fn admin(state: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = &state.admin_token else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "the admin API is off: no `admin_token` configured",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "admin bearer token missing or wrong",
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

async fn reload(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    let engine = state.engine.clone();
    let result = tokio::task::spawn_blocking(move || engine.reload())
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "reload task failed",
            )
        })?;
    match result {
        Ok(changed) => Ok(Json(json!({
            "status": if changed { "reloaded" } else { "unchanged" },
            "version": state.engine.snapshot().bundle.version,
        }))),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policies",
            e.to_string(),
        )),
    }
}

async fn get_entity(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((type_name, id)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    state
        .engine
        .entity(&type_name, &id)
        .map(Json)
        .ok_or_else(|| ApiError::from(Error::NotFound(format!("entity `{type_name}::{id:?}`"))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityBody {
    uid: Option<Value>,
    #[serde(default = "empty_object")]
    attrs: Value,
    #[serde(default)]
    parents: Vec<Value>,
    tags: Option<Value>,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

async fn put_entity(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((type_name, id)): Path<(String, String)>,
    JsonBody(body): JsonBody<EntityBody>,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    let uid = json!({"type": type_name, "id": id});
    if let Some(given) = &body.uid {
        let key = decision::bundle::entity_key(&json!({"uid": given}));
        if key != Some((type_name.clone(), id.clone())) {
            return Err(ApiError::bad_request(
                "`uid` in the body does not match the URL",
            ));
        }
    }
    let mut entity = json!({"uid": uid, "attrs": body.attrs, "parents": body.parents});
    if let Some(tags) = body.tags {
        entity["tags"] = tags;
    }
    let engine = state.engine.clone();
    blocking(move || engine.put_entities(vec![entity])).await?;
    let stored = state.engine.entity(&type_name, &id).unwrap_or(Value::Null);
    Ok(Json(
        json!({"entity": stored, "version": state.engine.snapshot().bundle.version}),
    ))
}

async fn put_entities(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<Vec<Value>>,
) -> Result<Json<Value>, ApiError> {
    admin(&state, &headers)?;
    let count = body.len();
    let engine = state.engine.clone();
    blocking(move || engine.put_entities(body)).await?;
    Ok(Json(
        json!({"written": count, "version": state.engine.snapshot().bundle.version}),
    ))
}

async fn delete_entity(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path((type_name, id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    admin(&state, &headers)?;
    let engine = state.engine.clone();
    blocking(move || engine.delete_entity(&type_name, &id)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Entity writes fsync; keep them off the async workers.
async fn blocking(f: impl FnOnce() -> Result<(), Error> + Send + 'static) -> Result<(), ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "write task failed",
            )
        })?
        .map_err(ApiError::from)
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
    }
}
