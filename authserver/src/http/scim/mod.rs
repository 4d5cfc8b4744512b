//! SCIM 2.0 over HTTP at `/scim/v2` (RFC 7644): the service's discovery
//! documents here, the resources in [`resources`], bulk in [`bulk`].
//! Requests and answers are `application/scim+json` (plain JSON is read
//! too); every failure is the SCIM error resource; a bearer token with the
//! `scim` scope is required.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::app::{App, now};
use crate::model::Actor;
use crate::scim::ScimError;
use crate::scim::schema::{self, Resource};
use crate::service::{self, Refused};

mod bulk;
mod resources;
mod search;

pub const CONTENT_TYPE: &str = "application/scim+json";

/// Advertised in `ServiceProviderConfig` and enforced.
pub const MAX_RESULTS: i64 = 1000;
pub const BULK_MAX_OPERATIONS: usize = 1000;
pub const BULK_MAX_PAYLOAD: usize = 1024 * 1024;

type Shared = State<Arc<App>>;

pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(resource_types))
        .route("/scim/v2/ResourceTypes/{name}", get(resource_type))
        .route("/scim/v2/Schemas", get(schemas))
        .route("/scim/v2/Schemas/{id}", get(one_schema))
        .route(
            "/scim/v2/Users",
            get(resources::list_users).post(resources::create_user),
        )
        .route("/scim/v2/Users/.search", post(resources::search_users))
        .route(
            "/scim/v2/Users/{id}",
            get(resources::get_user)
                .put(resources::replace_user)
                .patch(resources::patch_user)
                .delete(resources::delete_user),
        )
        .route(
            "/scim/v2/Groups",
            get(resources::list_groups).post(resources::create_group),
        )
        .route("/scim/v2/Groups/.search", post(resources::search_groups))
        .route(
            "/scim/v2/Groups/{id}",
            get(resources::get_group)
                .put(resources::replace_group)
                .patch(resources::patch_group)
                .delete(resources::delete_group),
        )
        .route("/scim/v2/Bulk", post(bulk::bulk))
        .route("/scim/v2/.search", post(search::search_all))
        .route("/scim/v2/{*rest}", axum::routing::any(search::unknown))
        // Bodies past the bulk limit are read to be refused in SCIM's form.
        .layer(DefaultBodyLimit::max(BULK_MAX_PAYLOAD * 2))
}

/// The collection URL resources are located under.
pub fn base(app: &App) -> String {
    format!("{}/scim/v2", app.issuer)
}

/// An answer in SCIM's media type.
pub fn answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    response
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::BAD_REQUEST);
        let mut response = answer(status, &self.body());
        let challenge = match self.status {
            401 => Some("Bearer realm=\"portcullis-scim\"".to_owned()),
            403 => Some(format!(
                "Bearer realm=\"portcullis-scim\", error=\"insufficient_scope\", scope=\"{}\"",
                service::SCIM
            )),
            _ => None,
        };
        if let Some(c) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, c);
        }
        response
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The provisioning client, or why it may not provision.
pub async fn caller(app: &App, headers: &HeaderMap) -> Result<String, ScimError> {
    match service::authenticate(app, bearer(headers), service::SCIM, now()).await {
        Ok(c) => Ok(c.name),
        Err(e @ (Refused::Missing | Refused::Invalid)) => {
            Err(ScimError::unauthorized(e.to_string()))
        }
        Err(e @ Refused::Scope(_)) => Err(ScimError::forbidden(e.to_string())),
        Err(e @ Refused::Unavailable) => Err(ScimError::unavailable(e.to_string())),
    }
}

/// The audit actor of a request: the caller, from where.
pub fn actor<'a>(app: &App, name: &'a str, peer: SocketAddr, headers: &HeaderMap) -> Actor<'a> {
    Actor {
        name,
        source: crate::proxy::client_address(peer.ip(), headers, &app.trusted_proxies),
    }
}

/// A request body as JSON.
pub fn json_body(body: &Bytes) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

async fn service_provider_config(State(app): Shared, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return e.into_response();
    }
    let base = base(&app);
    answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "documentationUri": "https://github.com/portcullis/portcullis/blob/main/README.md",
            "patch": {"supported": true},
            "bulk": {
                "supported": true,
                "maxOperations": BULK_MAX_OPERATIONS,
                "maxPayloadSize": BULK_MAX_PAYLOAD,
            },
            "filter": {"supported": true, "maxResults": MAX_RESULTS},
            "changePassword": {"supported": true},
            "sort": {"supported": true},
            "etag": {"supported": true},
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "An access token with the `scim` scope (client_credentials), or a service token from `authserver token add`",
                "specUri": "https://www.rfc-editor.org/rfc/rfc6750",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base}/ServiceProviderConfig"),
            },
        }),
    )
}

fn resource_type_document(resource: Resource, base: &str) -> Value {
    let extensions: Vec<Value> = resource
        .extensions()
        .iter()
        .map(|(id, _)| json!({"schema": id, "required": false}))
        .collect();
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": resource.name(),
        "name": resource.name(),
        "endpoint": format!("/{}", resource.endpoint()),
        "description": match resource {
            Resource::User => "User accounts: who signs in",
            Resource::Group => "Groups of users and groups",
        },
        "schema": resource.schema(),
        "schemaExtensions": extensions,
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base}/ResourceTypes/{}", resource.name()),
        },
    })
}

fn list_response(resources: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

async fn resource_types(State(app): Shared, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return e.into_response();
    }
    let base = base(&app);
    let all = [Resource::User, Resource::Group]
        .iter()
        .map(|r| resource_type_document(*r, &base))
        .collect();
    answer(StatusCode::OK, &list_response(all))
}

async fn resource_type(
    State(app): Shared,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return e.into_response();
    }
    match [Resource::User, Resource::Group]
        .iter()
        .find(|r| r.name() == name)
    {
        Some(r) => answer(StatusCode::OK, &resource_type_document(*r, &base(&app))),
        None => ScimError::not_found(format!("resource type `{name}` not found")).into_response(),
    }
}

async fn schemas(State(app): Shared, headers: HeaderMap) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return e.into_response();
    }
    answer(StatusCode::OK, &list_response(schema::schemas(&base(&app))))
}

async fn one_schema(State(app): Shared, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return e.into_response();
    }
    match schema::schemas(&base(&app))
        .into_iter()
        .find(|s| s["id"] == id)
    {
        Some(s) => answer(StatusCode::OK, &s),
        None => ScimError::not_found(format!("schema `{id}` not found")).into_response(),
    }
}

/// ETag versions in `If-Match` / `If-None-Match` (`W/"3"`, `"3"`); `*`
/// or nothing is no condition.
pub fn version_in(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<i64>, ScimError> {
    let Some(value) = headers.get(&name) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ScimError::invalid_syntax(format!("`{name}` is not text")))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    let tag = text.trim_start_matches("W/").trim_matches('"');
    tag.parse().map(Some).map_err(|_| {
        ScimError::precondition(format!(
            "`{name}: {text}` names no version of this resource"
        ))
    })
}

pub(super) fn with_etag(mut response: Response, version: i64, location: Option<&str>) -> Response {
    if let Ok(v) = HeaderValue::from_str(&crate::scim::resource::etag(version)) {
        response.headers_mut().insert(header::ETAG, v);
    }
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, l);
    }
    response
}

/// What every mutating handler gets first: the caller and the body.
pub async fn preamble(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(String, Value), ScimError> {
    let name = caller(app, headers).await?;
    let body = if body.is_empty() {
        Value::Null
    } else {
        json_body(body)?
    };
    Ok((name, body))
}

pub(super) type Peer = ConnectInfo<SocketAddr>;
