//! The change feed over HTTP, for sidecars and gateways (a bearer token
//! with the `feed` scope): `GET /feed/v1/changes?after=N[&kinds=…][&wait=S]`
//! long-polls for what happened after cursor `N` (410 when `N` is behind
//! the retention horizon: take a snapshot), `GET /feed/v1/snapshot` is
//! where a follower starts.

use std::time::Duration;

use axum::http::Uri;

use super::*;
use crate::feed::{self, Ask, Page};
use crate::service::{self, Refused};

fn refused(status: StatusCode, error: &str, message: String) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"error": error, "message": message})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Ok(v) = HeaderValue::from_str("Bearer realm=\"portcullis-feed\"")
    {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    r
}

async fn follower(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim());
    match service::authenticate(app, bearer, service::FEED, now()).await {
        Ok(_) => Ok(()),
        Err(e @ (Refused::Missing | Refused::Invalid)) => Err(refused(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            e.to_string(),
        )),
        Err(e @ Refused::Scope(_)) => Err(refused(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            e.to_string(),
        )),
        Err(e @ Refused::Unavailable) => Err(refused(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )),
    }
}

fn bad(message: String) -> Response {
    refused(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// `kinds=entity,revocation`, checked.
fn kinds(form: &Form) -> Result<Vec<&str>, String> {
    let Some(list) = form.get("kinds") else {
        return Ok(Vec::new());
    };
    list.split(',')
        .map(str::trim)
        .map(|k| match k {
            "entity" | "revocation" => Ok(k),
            other => Err(format!(
                "`kinds`: `{other}` is neither `entity` nor `revocation`"
            )),
        })
        .collect()
}

fn number(form: &Form, name: &str, default: i64) -> Result<i64, String> {
    match form.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("`{name}` must be a whole number ≥ 0, not `{v}`")),
    }
}

fn unavailable(e: &crate::store::StoreError) -> Response {
    tracing::warn!(error = %e, "change feed unavailable");
    refused(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the change feed cannot be read now".into(),
    )
}

pub(super) async fn changes(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = follower(&app, &headers).await {
        return r;
    }
    let form = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return refused(StatusCode::BAD_REQUEST, "invalid_request", e.description),
    };
    let (after, kinds, wait) = match (
        number(&form, "after", 0),
        kinds(&form),
        number(&form, "wait", 0),
    ) {
        (Ok(a), Ok(k), Ok(w)) => (a, k, w),
        (Err(m), ..) | (_, Err(m), _) | (.., Err(m)) => return bad(m),
    };
    let wait = u64::try_from(wait)
        .unwrap_or(0)
        .min(app.config.feed.max_wait_seconds);
    let ask = Ask {
        after,
        kinds: &kinds,
        wait: Duration::from_secs(wait),
    };
    match feed::changes(&app, ask).await {
        Ok(page @ Page::Changes { .. }) => axum::Json(page).into_response(),
        Ok(Page::Behind { horizon }) => (
            StatusCode::GONE,
            axum::Json(json!({
                "error": "snapshot_required",
                "message": format!("changes up to {horizon} are no longer kept; start from /feed/v1/snapshot"),
                "horizon": horizon,
            })),
        )
            .into_response(),
        Err(e) => unavailable(&e),
    }
}

pub(super) async fn snapshot(State(app): Shared, headers: HeaderMap, uri: Uri) -> Response {
    if let Err(r) = follower(&app, &headers).await {
        return r;
    }
    let form = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return refused(StatusCode::BAD_REQUEST, "invalid_request", e.description),
    };
    let kinds = match kinds(&form) {
        Ok(k) => k,
        Err(m) => return bad(m),
    };
    match feed::snapshot(&app, &kinds, now()).await {
        Ok(s) => axum::Json(s).into_response(),
        Err(e) => unavailable(&e),
    }
}
