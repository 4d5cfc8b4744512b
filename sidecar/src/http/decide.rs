//! The decision endpoints: Envoy's ext_authz in HTTP mode, `/v1/check`
//! (a gateway-shaped question) and `/v1/is_authorized` (Cedar's own).

use super::*;

/// Envoy's ext_authz in HTTP mode. Allowed: 200 with the identity headers
/// (which Envoy copies upstream when `allowed_upstream_headers` matches
/// them) and `x-envoy-auth-headers-to-remove` naming the owned headers not
/// set. Denied: 401 or 403 with the JSON body and challenge, which Envoy
/// returns to the client. The body of the original request is not read.
pub(super) async fn envoy_http(
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
    let identity = state
        .authn
        .identify(None, text(header::AUTHORIZATION))
        .await;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckBody {
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

pub(super) async fn check(
    State(state): State<ApiState>,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Json<Value>, ApiError> {
    let claims = match (&body.claims, &body.authorization) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "give `claims` or `authorization`, not both",
            ));
        }
        (Some(_), None) | (None, None) => {
            body.claims
                .as_ref()
                .map(Claims::from_json)
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("`claims`: {e}")))?
        }
        (None, Some(_)) if state.authn.verifier().is_none() => {
            return Err(ApiError::bad_request(
                "`authorization` needs `issuers` in the sidecar's configuration",
            ));
        }
        (None, Some(_)) => None,
    };
    // Claims given or a token verified here, refused alike when the
    // change feed revoked them.
    let claims = state
        .authn
        .identify(claims, body.authorization.as_deref())
        .await
        .map_err(|r| ApiError::invalid_token(&r))?;
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
    if let Some(step) = &o.step_up {
        out["stepUp"] = json!({"acrValues": step.acr_values, "maxAge": step.max_age});
    }
    out
}

fn request_id(headers: &HeaderMap) -> Option<&str> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok())
}

pub(super) async fn is_authorized(
    State(state): State<ApiState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<DirectRequest>,
) -> Result<Json<Value>, ApiError> {
    let decision = state.engine.is_authorized(body, request_id(&headers))?;
    Ok(Json(decision_json(&decision)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BatchBody {
    requests: Vec<DirectRequest>,
}

pub(super) async fn is_authorized_batch(
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
