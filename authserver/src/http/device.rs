//! The device authorization grant's HTTP surface (RFC 8628): the endpoint
//! devices call, and `/device`, where a person enters the user code before
//! the usual sign-in and consent pages.

use super::*;
use crate::device::EntryRefusal;

pub(super) async fn device_authorization(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, OAuthError> {
    let c = super::endpoints::call(&app, &headers, peer, &body)?;
    let out =
        oauth::device_authorization(&app, &c.form, c.authorization.as_deref(), c.source, now())
            .await?;
    Ok((no_store(), axum::Json(out)).into_response())
}

/// `GET /device[?user_code=…]`: the entry form, filled in from the link.
pub(super) async fn device_get(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let code = query
        .get("user_code")
        .and_then(crate::device::normalise)
        .map(|c| crate::device::display(&c))
        .unwrap_or_default();
    entry_page(&app, &headers, StatusCode::OK, &code, None)
}

/// `POST /device`: a code entered; on to signing in for that device.
pub(super) async fn device_post(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let typed = form.get("user_code").unwrap_or("");
    let source = crate::proxy::client_address(peer.ip(), &headers, &app.trusted_proxies);
    match authorize::start_device(&app, typed, source, now_ms()).await {
        Ok(request_id) => redirect(&format!("/authorize/resume?request={request_id}"), &[]),
        Err(refusal) => {
            let status = match refusal {
                EntryRefusal::Unknown => StatusCode::BAD_REQUEST,
                EntryRefusal::TooMany => StatusCode::TOO_MANY_REQUESTS,
                EntryRefusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            entry_page(&app, &headers, status, typed, Some(refusal.message()))
        }
    }
}

fn entry_page(
    app: &App,
    headers: &HeaderMap,
    status: StatusCode,
    code: &str,
    error: Option<&str>,
) -> Response {
    match csrf(app, headers) {
        Ok((token, cookies)) => html(
            status,
            pages::device_entry(&token, code, error),
            None,
            &cookies,
        ),
        Err(e) => e.into_response(),
    }
}
