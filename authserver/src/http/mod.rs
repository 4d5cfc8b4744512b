//! The HTTP surface: routes, the one mapping of [`OAuthError`] to
//! responses, CORS and request metrics. Handlers live by resource:
//! [`discovery`] (metadata, JWKS), [`endpoints`] (token, introspection,
//! revocation, userinfo), [`authorization`] (the authorization endpoint, login and
//! consent pages), [`factor`] (the sign-in's steps and second factor), [`device`]
//! (RFC 8628's endpoint and user-code page), [`logout`]; [`browser`] holds what the pages share
//! (HTML, CSP, CSRF, the browser session).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tracing::Instrument;

use crate::app::{App, now, now_ms};
use crate::authorize::{self, Next, Refusal};
use crate::error::OAuthError;
use crate::form::Form;
use crate::oauth::{self, BearerError};
use crate::pages;
use crate::session::{self, Session};

mod account;
mod authorization;
mod browser;
mod device;
mod discovery;
mod endpoints;
mod factor;
mod federation;
mod feed;
mod logout;
mod scim;

use authorization::{authorize_get, authorize_post, authorize_resume, consent, login};
use browser::{
    SignInForm, browser_session, checked_form, csrf, error_page, html, redirect, refusal, render,
    style,
};
use discovery::{jwks, metadata};
use endpoints::{introspect, revoke, token, userinfo};
use logout::{logout_get, logout_post};

type Shared = State<Arc<App>>;

pub fn router(app: Arc<App>) -> Router {
    let limit = app.config.max_body_bytes;
    // What browser apps (public clients) call from their own origin: no
    // cookies here, so any origin may (CORS without credentials).
    let cross_origin = Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/.well-known/openid-configuration", get(metadata))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .route("/device_authorization", post(device::device_authorization))
        .route("/revoke", post(revoke))
        .route("/userinfo", get(userinfo).post(userinfo))
        .layer(axum::middleware::from_fn(cors));
    Router::new()
        .merge(cross_origin)
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/authorize/resume", get(authorize_resume))
        .route("/login", post(login))
        .route(
            "/login/factor",
            get(factor::factor_get).post(factor::factor_post),
        )
        .route("/login/enrol", post(factor::enrol_post))
        .route("/login/passkey", post(factor::passkey_post))
        .route("/login/federated/{provider}", get(federation::start))
        .route(
            "/login/federated/{provider}/callback",
            get(federation::callback).post(federation::saml_callback),
        )
        .route(
            "/login/federated/{provider}/metadata",
            get(federation::metadata),
        )
        .route("/account", get(account::account_get))
        .route("/account/{change}", post(account::account_post))
        .route("/consent", post(consent))
        .route("/device", get(device::device_get).post(device::device_post))
        .route("/logout", get(logout_get).post(logout_post))
        .route("/static/style.css", get(style))
        .route("/static/webauthn.js", get(browser::script))
        .merge(crate::admin_api::router())
        .merge(scim::router())
        .route("/feed/v1/changes", get(feed::changes))
        .route("/feed/v1/snapshot", get(feed::snapshot))
        .route("/introspect", post(introspect))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(app.clone(), count))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(app)
}

/// CORS for the cross-origin endpoints: preflights answered here; every
/// answer says any origin may read it (no credentials are involved).
async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let any = HeaderValue::from_static("*");
    if request.method() == axum::http::Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, any);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        return response;
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, any);
    response
}

/// Counts every request by its route template (never the raw path, so the
/// label set stays bounded) and times it; with tracing on, in a span of its
/// own (in the caller's trace only if `tracing.accept_traceparent`).
async fn count(
    State(app): Shared,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let endpoint = matched.as_ref().map_or("unmatched", |m| m.as_str());
    let span = request_span(&app, &request, endpoint);
    let response = next.run(request).instrument(span.clone()).await;
    span.record(
        "http.response.status_code",
        i64::from(response.status().as_u16()),
    );
    let metrics = &app.metrics;
    metrics
        .requests
        .with_label_values(&[method.as_str(), endpoint, response.status().as_str()])
        .inc();
    metrics
        .duration
        .with_label_values(&[method.as_str(), endpoint])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// The server span of one request (none without tracing), named by its
/// route template.
fn request_span(app: &App, request: &axum::extract::Request, endpoint: &str) -> tracing::Span {
    let tracing = &app.config.tracing;
    if tracing.otlp_endpoint.is_none() {
        return tracing::Span::none();
    }
    let method = request.method().as_str();
    let span = tracing::info_span!(
        "request",
        otel.name = %format_args!("{method} {endpoint}"),
        otel.kind = "server",
        http.request.method = method,
        http.route = endpoint,
        http.response.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    let parent = tracing
        .accepts_traceparent(false)
        .then(|| bootstrap::telemetry::extract(&bootstrap::telemetry::Headers(request.headers())));
    bootstrap::telemetry::join_trace(&span, parent);
    span
}

async fn metrics(State(app): Shared) -> Response {
    app.metrics.sweep(now());
    (
        [(
            header::CONTENT_TYPE,
            bootstrap::telemetry::METRICS_CONTENT_TYPE,
        )],
        bootstrap::telemetry::render_metrics(&app.metrics.registry),
    )
        .into_response()
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (status, no_store(), axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
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
