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

use crate::app::{App, now, now_ms};
use crate::authorize::{self, Next, Refusal};
use crate::error::OAuthError;
use crate::form::Form;
use crate::oauth::{self, BearerError};
use crate::pages;
use crate::session::{self, Cookies, Session};

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
        .route("/revoke", post(revoke))
        .route("/userinfo", get(userinfo).post(userinfo))
        .layer(axum::middleware::from_fn(cors));
    Router::new()
        .merge(cross_origin)
        .route("/authorize", get(authorize_get).post(authorize_post))
        .route("/authorize/resume", get(authorize_resume))
        .route("/login", post(login))
        .route("/consent", post(consent))
        .route("/logout", get(logout_get).post(logout_post))
        .route("/static/style.css", get(style))
        .merge(crate::admin_api::router())
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
/// label set stays bounded) and times it.
async fn count(
    State(app): Shared,
    matched: Option<axum::extract::MatchedPath>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let response = next.run(request).await;
    let endpoint = matched.as_ref().map_or("unmatched", |m| m.as_str());
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

/// Discovery (RFC 8414 and OpenID Connect Discovery), listing only what
/// this server implements.
fn metadata_document(issuer: &str) -> Value {
    let auth_methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt"
    ]);
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": crate::model::GrantType::ALL.map(crate::model::GrantType::as_str),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
            "at_hash", "preferred_username", "name", "email", "email_verified", "groups", "roles", "updated_at"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login", "consent"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
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
    source: Option<std::net::IpAddr>,
}

fn call(
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

async fn token(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&app, &headers, peer, &body)?;
    let out = oauth::token(&app, &c.form, c.authorization.as_deref(), c.source, now()).await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

async fn introspect(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&app, &headers, peer, &body)?;
    let out = oauth::introspect(&app, &c.form, c.authorization.as_deref(), c.source, now()).await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

async fn revoke(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = call(&app, &headers, peer, &body)?;
    oauth::revoke(&app, &c.form, c.authorization.as_deref(), c.source, now()).await?;
    Ok((no_store(), StatusCode::OK).into_response())
}

// ---- the browser flow ----

async fn style() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        pages::STYLE,
    )
}

/// `scheme://host[:port]` of an http(s) URI, or `scheme:` of a private-use
/// one: what CSP `form-action` must allow for the redirect after a form.
fn csp_source(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme == "http" || scheme == "https" {
        let authority = rest.strip_prefix("//")?.split(['/', '?', '#']).next()?;
        Some(format!("{scheme}://{authority}"))
    } else {
        Some(format!("{scheme}:"))
    }
}

/// An HTML page with the strict headers every page gets.
fn html(
    status: StatusCode,
    body: String,
    form_target: Option<&str>,
    set_cookies: &[String],
) -> Response {
    let extra = form_target
        .and_then(csp_source)
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'{extra}; \
         frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    for cookie in set_cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

fn error_page(status: StatusCode, message: &str) -> Response {
    html(status, pages::error("Sign-in problem", message), None, &[])
}

fn redirect(location: &str, set_cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in set_cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

fn cookie_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|v| v.to_str().ok())
}

/// The browser's session, if its cookie names a live one.
async fn browser_session(
    app: &App,
    headers: &HeaderMap,
) -> Result<Option<(String, Session)>, Response> {
    let Some(id) = Cookies::read(cookie_header(headers), app.cookies.session) else {
        return Ok(None);
    };
    match session::load(&app.ephemeral, id).await {
        Ok(s) => Ok(s.map(|s| (id.to_owned(), s))),
        Err(e) => Err(error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &OAuthError::unavailable(&e).description,
        )),
    }
}

/// A problem shown on our error page.
struct PageError(StatusCode, String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.0, &self.1)
    }
}

/// The CSRF token for this browser, and the cookie to set when it has none.
fn csrf(app: &App, headers: &HeaderMap) -> Result<(String, Vec<String>), PageError> {
    if let Some(cookie) = Cookies::read(cookie_header(headers), app.cookies.csrf) {
        return Ok((session::csrf_token(&app.mac, cookie), Vec::new()));
    }
    let value = crate::crypto::random_token::<24>().map_err(|e| {
        PageError(
            StatusCode::INTERNAL_SERVER_ERROR,
            OAuthError::server_error(&e).description,
        )
    })?;
    let token = session::csrf_token(&app.mac, &value);
    Ok((token, vec![app.cookies.set(app.cookies.csrf, &value, 3600)]))
}

fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
        Refusal::Redirect(location) => redirect(&location, &[]),
    }
}

/// Renders what comes next in the flow.
async fn render(app: &App, headers: &HeaderMap, next: Next, set: Vec<String>) -> Response {
    let (token, mut cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    cookies.extend(set);
    match next {
        Next::Redirect(location) => redirect(&location, &cookies),
        Next::Login {
            request_id,
            client,
            hint,
        } => {
            let target = authorize::load(app, &request_id)
                .await
                .ok()
                .map(|r| r.redirect_uri);
            let page = pages::login(&pages::LoginPage {
                client_name: &client.name,
                request_id: &request_id,
                csrf: &token,
                username: hint.as_deref().unwrap_or(""),
                error: None,
            });
            html(StatusCode::OK, page, target.as_deref(), &cookies)
        }
        Next::Consent {
            request_id,
            client,
            user,
            scopes,
        } => {
            let target = authorize::load(app, &request_id)
                .await
                .ok()
                .map(|r| r.redirect_uri);
            let page = pages::consent(&pages::ConsentPage {
                client_name: &client.name,
                client_id: &client.id,
                username: &user.username,
                scopes: &scopes,
                request_id: &request_id,
                csrf: &token,
            });
            html(StatusCode::OK, page, target.as_deref(), &cookies)
        }
    }
}

async fn authorize_with(app: &App, headers: &HeaderMap, query: &Form) -> Response {
    let id = match authorize::start(app, query).await {
        Ok(id) => id,
        Err(r) => return refusal(r),
    };
    let session = match browser_session(app, headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    match authorize::resume(
        app,
        &id,
        session.as_ref().map(|(i, s)| (i.as_str(), s)),
        false,
        now(),
    )
    .await
    {
        Ok(next) => render(app, headers, next, Vec::new()).await,
        Err(r) => refusal(r),
    }
}

async fn authorize_get(State(app): Shared, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(query) => authorize_with(&app, &headers, &query).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.description),
    }
}

async fn authorize_post(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    match Form::parse(&body) {
        Ok(form) => authorize_with(&app, &headers, &form).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.description),
    }
}

async fn authorize_resume(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(id) = query.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let session = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    match authorize::resume(
        &app,
        id,
        session.as_ref().map(|(i, s)| (i.as_str(), s)),
        false,
        now(),
    )
    .await
    {
        Ok(next) => render(&app, &headers, next, Vec::new()).await,
        Err(r) => refusal(r),
    }
}

/// A POSTed HTML form with a valid CSRF token, or the page that says why not.
fn checked_form(app: &App, headers: &HeaderMap, body: &Bytes) -> Result<Form, PageError> {
    let form = Form::parse(body).map_err(|e| PageError(StatusCode::BAD_REQUEST, e.description))?;
    let cookie = Cookies::read(cookie_header(headers), app.cookies.csrf);
    if !session::csrf_ok(&app.mac, cookie, form.get("csrf")) {
        return Err(PageError(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back to the application and start again.".into(),
        ));
    }
    Ok(form)
}

async fn login(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(id) = form.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let mut req = match authorize::load(&app, id).await {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    let username = form.get("username").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let outcome = if username.is_empty() || password.is_empty() {
        Ok(crate::login::Outcome::Failed)
    } else {
        crate::login::password(
            &app,
            username,
            password,
            &req.client_id,
            crate::proxy::client_address(peer.ip(), &headers, &app.trusted_proxies),
            now_ms(),
        )
        .await
    };
    let user = match outcome {
        Ok(crate::login::Outcome::Success(user)) => user,
        Ok(failed) => {
            let message = match failed {
                crate::login::Outcome::Locked => crate::login::LOCKED,
                _ => crate::login::FAILED,
            };
            let (token, cookies) = match csrf(&app, &headers) {
                Ok(t) => t,
                Err(e) => return e.into_response(),
            };
            let client_name = match app.store.client(&req.client_id).await {
                Ok(Some(c)) => c.name,
                _ => req.client_id.clone(),
            };
            let page = pages::login(&pages::LoginPage {
                client_name: &client_name,
                request_id: id,
                csrf: &token,
                username,
                error: Some(message),
            });
            let status = if matches!(failed, crate::login::Outcome::Locked) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            return html(status, page, Some(&req.redirect_uri), &cookies);
        }
        Err(e) => {
            return error_page(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                &e.description,
            );
        }
    };
    // A new session id at every login (no fixation); the old one ends.
    if let Ok(Some((old, _))) = browser_session(&app, &headers).await {
        let _ = session::end(&app.ephemeral, &old).await;
    }
    let new = Session {
        user_id: user.id.clone(),
        auth_time: now(),
        amr: vec!["pwd".into()],
        acr: "urn:portcullis:acr:pwd".into(),
    };
    let ttl = std::time::Duration::from_secs(app.config.login.session_seconds);
    let sid = match session::create(&app.ephemeral, &new, ttl).await {
        Ok(s) => s,
        Err(e) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &OAuthError::unavailable(&e).description,
            );
        }
    };
    app.metrics
        .sessions
        .add(new.auth_time + i64::try_from(app.config.login.session_seconds).unwrap_or(0));
    req.fresh_session = Some(authorize::session_digest(&sid));
    if let Err(r) = authorize::save(&app, id, &req).await {
        return refusal(r);
    }
    let cookie = app
        .cookies
        .set(app.cookies.session, &sid, app.config.login.session_seconds);
    let location = format!(
        "/authorize/resume?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("request", id)
            .finish()
    );
    redirect(&location, &[cookie])
}

async fn consent(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(id) = form.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let Some((session_id, session)) = (match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    }) else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "You are not signed in. Go back to the application and start again.",
        );
    };
    let result = match form.get("decision") {
        Some("allow") => authorize::grant(&app, id, &session_id, &session, now()).await,
        Some("deny") => authorize::deny(&app, id, &session.user_id, now())
            .await
            .map(Next::Redirect),
        _ => return error_page(StatusCode::BAD_REQUEST, "missing `decision`"),
    };
    match result {
        Ok(next) => render(&app, &headers, next, Vec::new()).await,
        Err(r) => refusal(r),
    }
}

async fn userinfo(State(app): Shared, headers: HeaderMap) -> Response {
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

/// Where to send the browser after logout, if the request names a
/// registered `post_logout_redirect_uri` of the client it identifies.
async fn logout_target(app: &App, form: &Form) -> Result<Option<String>, PageError> {
    let bad = |m: String| PageError(StatusCode::BAD_REQUEST, m);
    let hinted = match form.get("id_token_hint") {
        None => None,
        Some(h) => Some(
            crate::token::read_id_token_hint(&app.keys.current(), &app.issuer, h)
                .map(|(_, aud)| aud)
                .ok_or_else(|| bad("`id_token_hint` is not an ID token issued here".into()))?,
        ),
    };
    if let (Some(aud), Some(client_id)) = (&hinted, form.get("client_id"))
        && aud != client_id
    {
        return Err(bad(
            "`client_id` differs from the audience of `id_token_hint`".into(),
        ));
    }
    let Some(uri) = form.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    let Some(client_id) = hinted.or_else(|| form.get("client_id").map(str::to_owned)) else {
        return Err(bad(
            "`post_logout_redirect_uri` needs `id_token_hint` or `client_id`".into(),
        ));
    };
    let client = match app.store.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(bad(format!("unknown client `{client_id}`"))),
        Err(e) => {
            return Err(PageError(
                StatusCode::SERVICE_UNAVAILABLE,
                OAuthError::from(e).description,
            ));
        }
    };
    if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
        return Err(bad(format!(
            "`{uri}` is not a registered post-logout redirect URI of client `{client_id}`"
        )));
    }
    let mut params = Vec::new();
    if let Some(state) = form.get("state") {
        params.push(("state", state));
    }
    Ok(Some(if params.is_empty() {
        uri.to_owned()
    } else {
        authorize::redirect_with(uri, &params)
    }))
}

async fn finish_logout(app: &App, headers: &HeaderMap, target: Option<String>) -> Response {
    let mut user = None;
    if let Ok(Some((sid, s))) = browser_session(app, headers).await {
        let _ = session::end(&app.ephemeral, &sid).await;
        app.metrics
            .sessions
            .end(s.auth_time + i64::try_from(app.config.login.session_seconds).unwrap_or(0));
        user = Some(s.user_id);
    }
    if let Some(user) = user {
        let event = crate::model::AuditEvent::new(now(), user.clone(), "logout").target(user);
        if let Err(e) = app.audit.record(event).await {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &OAuthError::from(e).description,
            );
        }
    }
    let clear = app.cookies.set(app.cookies.session, "", 0);
    match target {
        Some(location) => redirect(&location, &[clear]),
        None => html(StatusCode::OK, pages::logged_out(), None, &[clear]),
    }
}

/// RP-initiated logout. With an `id_token_hint` for the signed-in user the
/// logout happens at once; otherwise the user confirms (a cross-site link
/// cannot sign anyone out).
async fn logout_get(State(app): Shared, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let form = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let target = match logout_target(&app, &form).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let session = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let hint_sub = form
        .get("id_token_hint")
        .and_then(|h| crate::token::read_id_token_hint(&app.keys.current(), &app.issuer, h))
        .map(|(sub, _)| sub);
    let confirmed = match &session {
        None => true,
        Some((_, s)) => hint_sub.as_deref() == Some(s.user_id.as_str()),
    };
    if confirmed {
        return finish_logout(&app, &headers, target).await;
    }
    let (token, cookies) = match csrf(&app, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let fields: Vec<(&str, &str)> = [
        "post_logout_redirect_uri",
        "state",
        "client_id",
        "id_token_hint",
    ]
    .into_iter()
    .filter_map(|k| form.get(k).map(|v| (k, v)))
    .collect();
    html(
        StatusCode::OK,
        pages::logout_confirm(&token, &fields),
        target.as_deref(),
        &cookies,
    )
}

async fn logout_post(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let target = match logout_target(&app, &form).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    finish_logout(&app, &headers, target).await
}

#[cfg(test)]
mod tests {
    use super::csp_source;

    #[test]
    fn form_action_sources() {
        assert_eq!(
            csp_source("https://app.example.com:8443/cb?x=1").as_deref(),
            Some("https://app.example.com:8443")
        );
        assert_eq!(
            csp_source("http://127.0.0.1:8000/_auth/callback").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            csp_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
    }
}
