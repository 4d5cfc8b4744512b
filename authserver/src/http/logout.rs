//! RP-initiated logout pages: the confirmation page and the signed-out
//! redirect. What a request may do is decided in `crate::logout`.

use super::*;
use crate::logout::{LogoutError, LogoutRequest};

fn refused(e: LogoutError) -> Response {
    match e {
        LogoutError::Invalid(m) => error_page(StatusCode::BAD_REQUEST, &m),
        LogoutError::Unavailable(m) => error_page(StatusCode::SERVICE_UNAVAILABLE, &m),
    }
}

async fn sign_out(
    app: &App,
    session: Option<(String, Session)>,
    target: Option<String>,
) -> Response {
    let session = session.as_ref().map(|(id, s)| (id.as_str(), s));
    if let Err(e) = crate::logout::end(app, session, now()).await {
        return error_page(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &e.description,
        );
    }
    let clear = app.cookies.set(app.cookies.session, "", 0);
    match target {
        Some(location) => redirect(&location, &[clear]),
        None => html(StatusCode::OK, pages::logged_out(), None, &[clear]),
    }
}

/// RP-initiated logout. With an `id_token_hint` for the signed-in user the
/// logout happens at once; otherwise the user confirms.
pub(super) async fn logout_get(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let form = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let plan = match crate::logout::plan(&app, &LogoutRequest::from_form(&form)).await {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let session = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    if !plan.needs_confirmation(session.as_ref().map(|(_, s)| s)) {
        return sign_out(&app, session, plan.target).await;
    }
    let (token, cookies) = match csrf(&app, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let fields: Vec<(&str, &str)> = LogoutRequest::FIELDS
        .into_iter()
        .filter_map(|k| form.get(k).map(|v| (k, v)))
        .collect();
    html(
        StatusCode::OK,
        pages::logout_confirm(&token, &fields),
        plan.target.as_deref(),
        &cookies,
    )
}

pub(super) async fn logout_post(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let plan = match crate::logout::plan(&app, &LogoutRequest::from_form(&form)).await {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let session = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    sign_out(&app, session, plan.target).await
}
