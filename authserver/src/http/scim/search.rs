//! Searching with a body: `POST /Users/.search`, `POST /Groups/.search`,
//! and `POST /.search` across both (RFC 7644 §3.4.3).

use axum::http::Uri;

use super::resources::{Shape, done, list, page};
use super::*;
use crate::directory;
use crate::scim::projection::{paths, paths_of};
use crate::scim::resource;

/// `POST /.search` (§3.4.3): the same parameters in a JSON body.
pub(super) async fn search(
    app: &App,
    resource: Resource,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ScimError> {
    let (_, body) = preamble(app, headers, body).await?;
    let Value::Object(fields) = body else {
        return Err(ScimError::invalid_syntax("a search body is a JSON object"));
    };
    let text = |name: &str| -> Option<String> {
        let v = fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1;
        match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    };
    let q = page(resource, text)?;
    let shape = Shape {
        attributes: paths(resource, &text("attributes").unwrap_or_default())?,
        excluded: paths(resource, &text("excludedAttributes").unwrap_or_default())?,
    };
    list(app, resource, &q, &shape).await
}

/// `POST /.search` at the root (§3.4.3): users, then groups, as one
/// collection; a filter or attribute one type does not have leaves that
/// type out.
async fn search_everything(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Response, ScimError> {
    let (_, body) = preamble(app, headers, body).await?;
    let Value::Object(fields) = body else {
        return Err(ScimError::invalid_syntax("a search body is a JSON object"));
    };
    let text = |name: &str| -> Option<String> {
        match fields.iter().find(|(k, _)| k.eq_ignore_ascii_case(name))?.1 {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => None,
        }
    };
    let base = base(app);
    let (mut skip, mut left) = (None::<i64>, None::<i64>);
    let mut total = 0;
    let mut items = Vec::new();
    let mut first_error = None;
    let mut answered = false;
    for resource in [Resource::User, Resource::Group] {
        let mut q = match page(resource, text) {
            Ok(q) => q,
            Err(e) => {
                first_error.get_or_insert(e);
                continue;
            }
        };
        let skip = skip.get_or_insert(q.start_index - 1);
        let left = left.get_or_insert(q.count);
        let wanted = *left;
        // Count first, then take what the page still has room for.
        q.count = 0;
        let type_total = match match resource {
            Resource::User => directory::users(app, &q).await.map(|(t, _)| t),
            Resource::Group => directory::groups(app, &q, false).await.map(|(t, _)| t),
        } {
            Ok(t) => {
                answered = true;
                t
            }
            Err(e) if e.status == 400 => {
                first_error.get_or_insert(e);
                continue;
            }
            Err(e) => return Err(e),
        };
        total += type_total;
        if *skip >= type_total || wanted == 0 {
            *skip = (*skip - type_total).max(0);
            continue;
        }
        q.start_index = *skip + 1;
        q.count = wanted;
        *skip = 0;
        let shape = Shape {
            attributes: paths_of(resource, &text("attributes").unwrap_or_default()),
            excluded: paths_of(resource, &text("excludedAttributes").unwrap_or_default()),
        };
        let docs: Vec<Value> = match resource {
            Resource::User => directory::users(app, &q)
                .await?
                .1
                .iter()
                .map(|u| resource::user_json(u, &base))
                .collect(),
            Resource::Group => directory::groups(app, &q, shape.members())
                .await?
                .1
                .iter()
                .map(|g| resource::group_json(g, &base))
                .collect(),
        };
        *left -= i64::try_from(docs.len()).unwrap_or(0);
        items.extend(docs.into_iter().map(|d| shape.apply(resource, d)));
    }
    if let (Some(e), false) = (first_error, answered) {
        return Err(e);
    }
    Ok(answer(
        StatusCode::OK,
        &json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:ListResponse"],
            "totalResults": total,
            "startIndex": text("startIndex").and_then(|s| s.parse::<i64>().ok()).unwrap_or(1).max(1),
            "itemsPerPage": items.len(),
            "Resources": items,
        }),
    ))
}

pub(super) async fn search_all(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    done(search_everything(&app, &headers, &body).await)
}

pub(super) async fn unknown(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(e) = caller(&app, &headers).await {
        return e.into_response();
    }
    ScimError::not_found(format!(
        "`{}` is no SCIM endpoint of this server",
        uri.path()
    ))
    .into_response()
}
