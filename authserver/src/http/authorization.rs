//! The authorization endpoint and the login and consent pages it leads to.

use super::*;

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
        Ok(next) => render(app, headers, next, Vec::new()).await,
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
        Ok(next) => render(&app, &headers, next, Vec::new()).await,
        Err(r) => refusal(r),
    }
}

pub(super) async fn login(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let Some(id) = form.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let mut req = match authorize::load(&app, id).await {
        Ok(r) => r,
        Err(r) => return refusal(r),
    };
    let username = form.get("username").unwrap_or("");
    let password = form.get("password").unwrap_or("");
    let outcome = if username.is_empty() || password.is_empty() {
        Ok(crate::login::Outcome::Failed)
    } else {
        crate::login::password(
            &app,
            username,
            password,
            &req.client_id,
            crate::proxy::client_address(peer.ip(), &headers, &app.trusted_proxies),
            now_ms(),
        )
        .await
    };
    let user = match outcome {
        Ok(crate::login::Outcome::Success(user)) => user,
        Ok(failed) => {
            let message = match failed {
                crate::login::Outcome::Locked => crate::login::LOCKED,
                _ => crate::login::FAILED,
            };
            let (token, cookies) = match csrf(&app, &headers) {
                Ok(t) => t,
                Err(e) => return e.into_response(),
            };
            let client_name = match app.store.client(&req.client_id).await {
                Ok(Some(c)) => c.name,
                _ => req.client_id.clone(),
            };
            let page = pages::login(&pages::LoginPage {
                client_name: &client_name,
                request_id: id,
                csrf: &token,
                username,
                error: Some(message),
            });
            let status = if matches!(failed, crate::login::Outcome::Locked) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            return html(status, page, Some(&req.redirect_uri), &cookies);
        }
        Err(e) => {
            return error_page(
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
                &e.description,
            );
        }
    };
    // A new session id at every login (no fixation); the old one ends.
    if let Ok(Some((old, _))) = browser_session(&app, &headers).await {
        let _ = session::end(&app.ephemeral, &old).await;
    }
    let new = Session {
        user_id: user.id.clone(),
        auth_time: now(),
        amr: vec!["pwd".into()],
        acr: "urn:portcullis:acr:pwd".into(),
    };
    let ttl = std::time::Duration::from_secs(app.config.login.session_seconds);
    let sid = match session::create(&app.ephemeral, &new, ttl).await {
        Ok(s) => s,
        Err(e) => {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &OAuthError::unavailable(&e).description,
            );
        }
    };
    app.metrics
        .sessions
        .add(new.auth_time + i64::try_from(app.config.login.session_seconds).unwrap_or(0));
    req.fresh_session = Some(authorize::session_digest(&sid));
    if let Err(r) = authorize::save(&app, id, &req).await {
        return refusal(r);
    }
    let cookie = app
        .cookies
        .set(app.cookies.session, &sid, app.config.login.session_seconds);
    let location = format!(
        "/authorize/resume?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("request", id)
            .finish()
    );
    redirect(&location, &[cookie])
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
    let result = match form.get("decision") {
        Some("allow") => authorize::grant(&app, id, &session_id, &session, now()).await,
        Some("deny") => authorize::deny(&app, id, &session.user_id, now())
            .await
            .map(Next::Redirect),
        _ => return error_page(StatusCode::BAD_REQUEST, "missing `decision`"),
    };
    match result {
        Ok(next) => render(&app, &headers, next, Vec::new()).await,
        Err(r) => refusal(r),
    }
}
