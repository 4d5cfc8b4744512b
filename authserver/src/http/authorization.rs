//! The authorization endpoint and the login and consent pages it leads to.

use super::*;
use crate::consent::Choice;
use crate::login::Attempt;

pub(super) async fn authorize_with(app: &App, headers: &HeaderMap, query: &Form) -> Response {
    let id = match authorize::start(app, query).await {
        Ok(id) => id,
        Err(r) => return refusal(r),
    };
    let session = match browser_session(app, headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    match authorize::resume(
        app,
        &id,
        session.as_ref().map(|(i, s)| (i.as_str(), s)),
        false,
        now(),
    )
    .await
    {
        Ok(next) => render(app, headers, next).await,
        Err(r) => refusal(r),
    }
}

pub(super) async fn authorize_get(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(query) => authorize_with(&app, &headers, &query).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.description),
    }
}

pub(super) async fn authorize_post(
    State(app): Shared,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match Form::parse(&body) {
        Ok(form) => authorize_with(&app, &headers, &form).await,
        Err(e) => error_page(StatusCode::BAD_REQUEST, &e.description),
    }
}

pub(super) async fn authorize_resume(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(id) = query.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let session = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    match authorize::resume(
        &app,
        id,
        session.as_ref().map(|(i, s)| (i.as_str(), s)),
        false,
        now(),
    )
    .await
    {
        Ok(next) => render(&app, &headers, next).await,
        Err(r) => refusal(r),
    }
}

pub(super) async fn login(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let posted = match SignInForm::read(&app, peer, &headers, &body).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let request_id = match posted.required("request") {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let attempt = Attempt {
        request_id,
        username: posted.field("username"),
        password: posted.field("password"),
        browser: posted.browser(),
    };
    match crate::login::with_password(&app, &attempt, now_ms()).await {
        Ok(step) => {
            super::factor::respond(&app, &headers, step, attempt.username, request_id).await
        }
        Err(r) => refusal(r),
    }
}

pub(super) async fn consent(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(id) = form.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let Some((session_id, session)) = (match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    }) else {
        return error_page(
            StatusCode::UNAUTHORIZED,
            "You are not signed in. Go back to the application and start again.",
        );
    };
    let Some(choice) = form.get("decision").and_then(Choice::parse) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "`decision` must be `allow` or `deny`",
        );
    };
    match crate::consent::decide(&app, id, (&session_id, &session), choice, now()).await {
        Ok(next) => render(&app, &headers, next).await,
        Err(r) => refusal(r),
    }
}
