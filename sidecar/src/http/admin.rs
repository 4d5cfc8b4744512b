//! The admin API: policy reload and entity writes, behind the admin token.

use super::*;

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

pub(super) async fn reload(
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

pub(super) async fn get_entity(
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
pub(super) struct EntityBody {
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

pub(super) async fn put_entity(
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

pub(super) async fn put_entities(
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

pub(super) async fn delete_entity(
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
