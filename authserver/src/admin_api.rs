//! The admin API (`/admin/v1/*`): users and their factors, clients, keys
//! and the audit log,
//! behind the configured admin bearer token; off (404) when none is set.
//! Its OpenAPI document is `authserver/openapi.json`, served at
//! `/admin/v1/openapi.json`. Every change goes through `admin.rs` or the
//! store, so it is validated and audited as from the CLI.

use std::sync::Arc;

use aws_lc_rs::constant_time;
use axum::Router;
use axum::body::Bytes;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::admin::{self, ClientKind, ClientSpec, UserSpec};
use crate::app::{App, now};
use crate::error::Error;
use crate::model::{Actor, MfaPolicy};
use crate::store::{StoreError, UserChange};

pub const OPENAPI: &str = include_str!("../openapi.json");

type Shared = State<Arc<App>>;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/admin/v1/openapi.json", get(openapi))
        .route("/admin/v1/users", get(list_users).post(create_user))
        .route(
            "/admin/v1/users/{id}",
            get(get_user).patch(update_user).delete(delete_user),
        )
        .route(
            "/admin/v1/users/{id}/factors",
            get(list_factors).delete(reset_factors),
        )
        .route("/admin/v1/clients", get(list_clients).post(create_client))
        .route(
            "/admin/v1/clients/{id}",
            get(get_client).patch(update_client).delete(delete_client),
        )
        .route("/admin/v1/clients/{id}/secret", post(new_secret))
        .route("/admin/v1/keys", get(list_keys))
        .route("/admin/v1/keys/rotate", post(rotate_keys))
        .route("/admin/v1/audit", get(audit))
}

/// An admin API failure: status and a message naming what is wrong.
pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let error = match self.0 {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::INTERNAL_SERVER_ERROR => "internal",
            _ => "invalid_request",
        };
        let mut response = (
            self.0,
            axum::Json(json!({"error": error, "message": self.1})),
        )
            .into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"portcullis-admin\""),
            );
        }
        response
    }
}

impl From<Error> for AdminError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid(m) => Self(StatusCode::BAD_REQUEST, m),
            Error::Store(StoreError::NotFound(what)) => {
                Self(StatusCode::NOT_FOUND, format!("{what} not found"))
            }
            Error::Store(StoreError::Conflict(what)) => {
                Self(StatusCode::CONFLICT, format!("{what} already exists"))
            }
            Error::Store(StoreError::Invalid(what)) => Self(StatusCode::BAD_REQUEST, what),
            Error::Store(StoreError::Stale(what)) => Self(StatusCode::PRECONDITION_FAILED, what),
            Error::Store(e) => {
                tracing::error!(error = %e, "admin API: database");
                Self(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the database is unavailable".into(),
                )
            }
            other => {
                tracing::error!(error = %other, "admin API failed");
                Self(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the server could not complete the request".into(),
                )
            }
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        Error::Store(e).into()
    }
}

/// The bearer must equal the configured admin token (compared as digests,
/// in constant time). No token configured: the API does not exist.
fn authorize(app: &App, headers: &HeaderMap) -> Result<(), AdminError> {
    let Some(expected) = &app.config.admin_token else {
        return Err(AdminError(
            StatusCode::NOT_FOUND,
            "the admin API is off: no `admin_token` configured".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            AdminError(
                StatusCode::UNAUTHORIZED,
                "missing admin bearer token".into(),
            )
        })?;
    let a = bootstrap::digest::sha256(given.trim().as_bytes());
    let b = bootstrap::digest::sha256(expected.as_bytes());
    constant_time::verify_slices_are_equal(&a, &b)
        .map_err(|_| AdminError(StatusCode::UNAUTHORIZED, "wrong admin bearer token".into()))
}

/// The admin, with the address the request came from.
fn admin(app: &App, headers: &HeaderMap, peer: SocketAddr) -> Actor<'static> {
    Actor {
        name: "admin",
        source: crate::proxy::client_address(peer.ip(), headers, &app.trusted_proxies),
    }
}

/// A JSON body of type `T`, or a 400 naming the problem.
fn body<T: serde::de::DeserializeOwned>(
    headers: &HeaderMap,
    bytes: &Bytes,
) -> Result<T, AdminError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(AdminError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "body must be application/json".into(),
        ));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        AdminError(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body{at}: {}", e.inner()),
        )
    })
}

async fn openapi(State(app): Shared, headers: HeaderMap) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response())
}

/// An integer query parameter within `range`, or its default.
fn int_param(
    query: Option<&str>,
    name: &str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
) -> Result<i64, AdminError> {
    let form = crate::form::Form::parse(query.unwrap_or("").as_bytes())
        .map_err(|e| AdminError(StatusCode::BAD_REQUEST, e.description))?;
    let value = match form.get(name) {
        None => default,
        Some(v) => v.parse().map_err(|_| {
            AdminError(
                StatusCode::BAD_REQUEST,
                format!("`{name}` must be an integer"),
            )
        })?,
    };
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(AdminError(
            StatusCode::BAD_REQUEST,
            format!("`{name}` must be in {}..={}", range.start(), range.end()),
        ))
    }
}

async fn list_users(
    State(app): Shared,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let offset = int_param(query.as_deref(), "offset", 0, 0..=i64::MAX)?;
    let limit = int_param(query.as_deref(), "limit", 100, 1..=1000)?;
    let users = app.store.users(offset, limit).await?;
    Ok(axum::Json(json!({"users": users})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewUserBody {
    username: String,
    password: String,
    email: Option<String>,
    display_name: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

async fn create_user(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let b: NewUserBody = body(&headers, &bytes)?;
    let spec = UserSpec {
        username: b.username,
        password: b.password,
        email: b.email,
        display_name: b.display_name,
        groups: b.groups,
        roles: b.roles,
    };
    let user = admin::add_user(&app, spec, admin(&app, &headers, peer), now()).await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

async fn get_user(
    State(app): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    match app.store.user_by_id(&id).await? {
        Some(user) => Ok(axum::Json(user).into_response()),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("user `{id}` not found"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserPatch {
    disabled: Option<bool>,
    password: Option<String>,
    mfa: Option<MfaPolicy>,
}

async fn update_user(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let patch: UserPatch = body(&headers, &bytes)?;
    let user = app
        .store
        .user_by_id(&id)
        .await?
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("user `{id}` not found")))?;
    // All changes, or none: one transaction.
    let actor = admin(&app, &headers, peer);
    let hash = match patch.password {
        Some(password) => Some(admin::hash_password(&app, password).await?),
        None => None,
    };
    let mut events = Vec::new();
    if hash.is_some() {
        events.push(actor.event(now(), "user.password").target(id.clone()));
    }
    if let Some(disabled) = patch.disabled {
        let action = if disabled {
            "user.disable"
        } else {
            "user.enable"
        };
        events.push(actor.event(now(), action).target(id.clone()));
    }
    if let Some(mfa) = patch.mfa {
        events.push(
            actor
                .event(now(), "user.mfa")
                .target(id.clone())
                .detail(json!({"mfa": mfa})),
        );
    }
    let change = UserChange {
        password_hash: hash.as_deref(),
        disabled: patch.disabled,
        mfa: patch.mfa,
    };
    app.store.update_user(&user.id, &change, &events).await?;
    if patch.disabled == Some(true) {
        crate::directory::sign_out(&app, &user.id, now()).await;
    }
    let user = app.store.user_by_id(&id).await?;
    Ok(axum::Json(user).into_response())
}

/// The user `id`, or a 404 naming it.
async fn user(app: &App, id: &str) -> Result<crate::model::User, AdminError> {
    app.store
        .user_by_id(id)
        .await?
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("user `{id}` not found")))
}

async fn list_factors(
    State(app): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let user = user(&app, &id).await?;
    Ok(axum::Json(admin::factors(&app, &user).await?).into_response())
}

/// An administrator's reset for a user who lost every factor.
async fn reset_factors(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let user = user(&app, &id).await?;
    let removed = admin::reset_factors(&app, &user, admin(&app, &headers, peer), now()).await?;
    Ok(axum::Json(json!({"user_id": id, "removed": removed})).into_response())
}

async fn delete_user(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let event = admin(&app, &headers, peer)
        .event(now(), "user.delete")
        .target(id.clone());
    app.store.delete_user(&id, &event).await?;
    crate::directory::sign_out(&app, &id, now()).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_clients(State(app): Shared, headers: HeaderMap) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    Ok(axum::Json(json!({"clients": app.store.clients().await?})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewClientBody {
    client_id: String,
    kind: String,
    name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    /// A JWK Set for `private_key_jwt`.
    jwks: Option<Value>,
    /// A resource server, which may introspect any token.
    #[serde(default)]
    introspect: bool,
    /// OIDC Back-Channel Logout 1.0.
    backchannel_logout_uri: Option<String>,
}

async fn create_client(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let b: NewClientBody = body(&headers, &bytes)?;
    let kind = match b.kind.as_str() {
        "web" => ClientKind::Web,
        "public" => ClientKind::Public,
        "service" => ClientKind::Service,
        "device" => ClientKind::Device,
        other => {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                format!("`kind` `{other}` is not one of web, public, service, device"),
            ));
        }
    };
    let spec = ClientSpec {
        name: b.name.unwrap_or_else(|| b.client_id.clone()),
        id: b.client_id,
        kind,
        redirect_uris: b.redirect_uris,
        post_logout_redirect_uris: b.post_logout_redirect_uris,
        scopes: b.scopes,
        jwks: b.jwks.map(|j| j.to_string()),
        introspect: b.introspect,
        backchannel_logout_uri: b.backchannel_logout_uri,
    };
    let issued = admin::add_client(&app, spec, admin(&app, &headers, peer), now()).await?;
    Ok((StatusCode::CREATED, axum::Json(issued)).into_response())
}

async fn get_client(
    State(app): Shared,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    match app.store.client(&id).await? {
        Some(client) => Ok(axum::Json(client).into_response()),
        None => Err(AdminError(
            StatusCode::NOT_FOUND,
            format!("client `{id}` not found"),
        )),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientPatch {
    mfa: Option<MfaPolicy>,
    /// A URI sets it, `null` clears it (absent: unchanged).
    #[serde(default, deserialize_with = "present")]
    backchannel_logout_uri: Option<Value>,
}

/// A field that is there, `null` included (serde reads a `null` `Option`
/// as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

async fn update_client(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let patch: ClientPatch = body(&headers, &bytes)?;
    if patch.mfa.is_none() && patch.backchannel_logout_uri.is_none() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "nothing to change: give `mfa` or `backchannel_logout_uri`".into(),
        ));
    }
    let uri = match &patch.backchannel_logout_uri {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(uri)) => Some(Some(uri.as_str())),
        Some(_) => {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                "`backchannel_logout_uri` must be a string or null".into(),
            ));
        }
    };
    if let Some(mfa) = patch.mfa {
        admin::set_client_mfa(&app, &id, mfa, admin(&app, &headers, peer), now()).await?;
    }
    if let Some(uri) = uri {
        admin::set_client_backchannel_logout(&app, &id, uri, admin(&app, &headers, peer), now())
            .await?;
    }
    let client = app.store.client(&id).await?;
    Ok(axum::Json(client).into_response())
}

async fn delete_client(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let event = admin(&app, &headers, peer)
        .event(now(), "client.delete")
        .target(id.clone());
    app.store.delete_client(&id, &event).await?;
    app.forget_client(&id);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn new_secret(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let client = app
        .store
        .client(&id)
        .await?
        .ok_or_else(|| AdminError(StatusCode::NOT_FOUND, format!("client `{id}` not found")))?;
    let secret =
        admin::reset_client_secret(&app, &client, admin(&app, &headers, peer), now()).await?;
    Ok(axum::Json(json!({"client_id": id, "client_secret": secret})).into_response())
}

async fn list_keys(State(app): Shared, headers: HeaderMap) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let keys: Vec<Value> = app
        .store
        .keys()
        .await?
        .into_iter()
        .map(|k| {
            json!({
                "kid": k.kid, "alg": k.alg, "state": k.state, "created_at": k.created_at,
                "activated_at": k.activated_at, "retired_at": k.retired_at,
            })
        })
        .collect();
    Ok(axum::Json(json!({"keys": keys})).into_response())
}

async fn rotate_keys(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let force = int_param(query.as_deref(), "force", 0, 0..=1)? == 1;
    let r = match app
        .keys
        .rotate(now(), admin(&app, &headers, peer), force)
        .await
    {
        Ok(r) => r,
        Err(e @ crate::keys::KeyError::TooSoon { .. }) => {
            return Err(AdminError(StatusCode::CONFLICT, e.to_string()));
        }
        Err(e) => return Err(Error::from(e).into()),
    };
    Ok(axum::Json(
        json!({"active": r.active, "next": r.next, "retired": r.retired, "removed": r.removed}),
    )
    .into_response())
}

async fn audit(
    State(app): Shared,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Response, AdminError> {
    authorize(&app, &headers)?;
    let limit = int_param(query.as_deref(), "limit", 100, 1..=1000)?;
    Ok(axum::Json(json!({"events": app.store.audit_events(limit).await?})).into_response())
}
