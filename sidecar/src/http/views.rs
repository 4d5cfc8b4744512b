//! Read-only views: the loaded policies and schema, status, readiness and
//! metrics.

use super::*;

pub(super) async fn policies(State(state): State<ApiState>) -> Json<Value> {
    let snap = state.engine.snapshot();
    Json(json!({ "version": snap.bundle.version, "policies": snap.bundle.sources }))
}

pub(super) async fn schema(State(state): State<ApiState>) -> Response {
    let snap = state.engine.snapshot();
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        snap.bundle.schema_text.clone(),
    )
        .into_response()
}

pub(super) async fn status(State(state): State<ApiState>) -> Json<Value> {
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

pub(super) async fn ready(State(state): State<ApiState>) -> Response {
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
    let snapshot = state.engine.snapshot();
    let mut body = json!({"status": "ready", "version": snapshot.bundle.version});
    if let Some(feed) = state.authn.feed() {
        let (ready, mut detail) = feed.readiness();
        detail["users"] = json!(snapshot.directory.users());
        detail["groups"] = json!(snapshot.directory.groups());
        body["feed"] = detail;
        if !ready {
            body["status"] = json!("not_ready");
            return (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
        }
    }
    Json(body).into_response()
}

pub(super) async fn metrics(State(state): State<ApiState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            bootstrap::telemetry::METRICS_CONTENT_TYPE,
        )],
        bootstrap::telemetry::render_metrics(&state.engine.metrics().registry),
    )
        .into_response()
}
