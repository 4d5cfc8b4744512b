//! `POST /Bulk` (RFC 7644 §3.7): operations in order, each as its own
//! request would be; `bulkId:x` in a path or a value stands for the id of
//! the resource an earlier `POST` with `bulkId` `x` created; processing
//! stops after `failOnErrors` errors. The limits `ServiceProviderConfig`
//! advertises are enforced with a 413.

use std::collections::HashMap;

use super::resources::dispatch;
use super::*;

const BULK_REQUEST: &str = "urn:ietf:params:scim:api:messages:2.0:BulkRequest";
const BULK_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:BulkResponse";

fn field<'a>(o: &'a serde_json::Map<String, Value>, name: &str) -> Option<&'a Value> {
    o.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Replaces every `bulkId:x` string in `value` with the id `x` created.
fn resolve(value: &mut Value, created: &HashMap<String, String>) -> Result<(), ScimError> {
    match value {
        Value::String(s) => {
            if let Some(key) = s.strip_prefix("bulkId:") {
                let id = created.get(key).ok_or_else(|| {
                    ScimError::invalid_value(format!(
                        "`bulkId:{key}` names no resource created before this operation"
                    ))
                })?;
                *s = id.clone();
            }
        }
        Value::Array(items) => {
            for item in items {
                resolve(item, created)?;
            }
        }
        Value::Object(m) => {
            for v in m.values_mut() {
                resolve(v, created)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `/Users`, `/Users/{id}`, `/Groups/{id}` (ids resolved).
fn target(
    path: &str,
    created: &HashMap<String, String>,
) -> Result<(Resource, Option<String>), ScimError> {
    let trimmed = path.trim().trim_start_matches('/');
    let (collection, id) = match trimmed.split_once('/') {
        Some((c, id)) => (c, Some(id)),
        None => (trimmed, None),
    };
    let resource = [Resource::User, Resource::Group]
        .into_iter()
        .find(|r| r.endpoint().eq_ignore_ascii_case(collection))
        .ok_or_else(|| {
            ScimError::invalid_path(format!("`{path}` is not under /Users or /Groups"))
        })?;
    let id = match id {
        None => None,
        Some(id) => {
            let mut v = Value::String(id.to_owned());
            resolve(&mut v, created)?;
            v.as_str().map(str::to_owned)
        }
    };
    Ok((resource, id))
}

pub(super) async fn bulk(
    State(app): Shared,
    ConnectInfo(peer): Peer,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > BULK_MAX_PAYLOAD {
        return ScimError::too_large(format!(
            "the bulk request is {} bytes; the limit is {BULK_MAX_PAYLOAD}",
            body.len()
        ))
        .into_response();
    }
    match run(&app, peer, &headers, &body).await {
        Ok(v) => answer(StatusCode::OK, &v),
        Err(e) => e.into_response(),
    }
}

async fn run(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Value, ScimError> {
    let (name, body) = preamble(app, headers, body).await?;
    let who = actor(app, &name, peer, headers);
    let Value::Object(request) = body else {
        return Err(ScimError::invalid_syntax("a bulk request is a JSON object"));
    };
    let named = field(&request, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|x| x.as_str() == Some(BULK_REQUEST)));
    if !named {
        return Err(ScimError::invalid_syntax(format!(
            "a bulk request names the schema `{BULK_REQUEST}`"
        )));
    }
    let ops = field(&request, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("a bulk request needs `Operations`, a list"))?;
    if ops.len() > BULK_MAX_OPERATIONS {
        return Err(ScimError::too_large(format!(
            "{} operations; the limit is {BULK_MAX_OPERATIONS}",
            ops.len()
        )));
    }
    let fail_on = match field(&request, "failOnErrors") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            ScimError::invalid_value("`failOnErrors` must be a positive integer")
        })?),
    };
    let mut created: HashMap<String, String> = HashMap::new();
    let mut results = Vec::with_capacity(ops.len());
    let mut errors = 0u64;
    let base = base(app);
    for op in ops {
        if fail_on.is_some_and(|limit| errors >= limit) {
            break;
        }
        let o = op.as_object().cloned().unwrap_or_default();
        let method = field(&o, "method")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let bulk_id = field(&o, "bulkId")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let path = field(&o, "path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let mut entry = json!({"method": method});
        if let Some(b) = &bulk_id {
            entry["bulkId"] = json!(b);
        }
        let outcome = async {
            if method.eq_ignore_ascii_case("POST") && bulk_id.is_none() {
                return Err(ScimError::invalid_value("a bulk POST needs a `bulkId`"));
            }
            let (resource, id) = target(&path, &created)?;
            let mut data = field(&o, "data").cloned().unwrap_or(Value::Null);
            resolve(&mut data, &created)?;
            let if_match = match field(&o, "version").and_then(Value::as_str) {
                None => None,
                Some(v) => Some(
                    v.trim_start_matches("W/")
                        .trim_matches('"')
                        .parse()
                        .map_err(|_| {
                            ScimError::precondition(format!("version `{v}` names no version"))
                        })?,
                ),
            };
            let record =
                dispatch(app, &who, &method, resource, id.as_deref(), &data, if_match).await?;
            Ok((resource, record))
        }
        .await;
        match outcome {
            Ok((resource, Some(record))) => {
                let status = if method.eq_ignore_ascii_case("POST") {
                    "201"
                } else {
                    "200"
                };
                if let Some(b) = &bulk_id {
                    created.insert(b.clone(), record.id().to_owned());
                }
                entry["location"] =
                    json!(format!("{base}/{}/{}", resource.endpoint(), record.id()));
                entry["version"] = json!(crate::scim::resource::etag(record.version()));
                entry["status"] = json!(status);
            }
            Ok((_, None)) => entry["status"] = json!("204"),
            Err(e) => {
                errors += 1;
                entry["status"] = json!(e.status.to_string());
                entry["response"] = e.body();
            }
        }
        results.push(entry);
    }
    Ok(json!({"schemas": [BULK_RESPONSE], "Operations": results}))
}
