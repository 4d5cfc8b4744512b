//! RP-initiated logout (OIDC RP-Initiated Logout 1.0): the confirmation
//! page and the signed-out redirect.

use super::*;

/// Where to send the browser after logout, if the request names a
/// registered `post_logout_redirect_uri` of the client it identifies.
pub(super) async fn logout_target(app: &App, form: &Form) -> Result<Option<String>, PageError> {
    let bad = |m: String| PageError(StatusCode::BAD_REQUEST, m);
    let hinted = match form.get("id_token_hint") {
        None => None,
        Some(h) => Some(
            crate::token::read_id_token_hint(&app.keys.current(), &app.issuer, h)
                .map(|(_, aud)| aud)
                .ok_or_else(|| bad("`id_token_hint` is not an ID token issued here".into()))?,
        ),
    };
    if let (Some(aud), Some(client_id)) = (&hinted, form.get("client_id"))
        && aud != client_id
    {
        return Err(bad(
            "`client_id` differs from the audience of `id_token_hint`".into(),
        ));
    }
    let Some(uri) = form.get("post_logout_redirect_uri") else {
        return Ok(None);
    };
    let Some(client_id) = hinted.or_else(|| form.get("client_id").map(str::to_owned)) else {
        return Err(bad(
            "`post_logout_redirect_uri` needs `id_token_hint` or `client_id`".into(),
        ));
    };
    let client = match app.store.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return Err(bad(format!("unknown client `{client_id}`"))),
        Err(e) => {
            return Err(PageError(
                StatusCode::SERVICE_UNAVAILABLE,
                OAuthError::from(e).description,
            ));
        }
    };
    if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
        return Err(bad(format!(
            "`{uri}` is not a registered post-logout redirect URI of client `{client_id}`"
        )));
    }
    let mut params = Vec::new();
    if let Some(state) = form.get("state") {
        params.push(("state", state));
    }
    Ok(Some(if params.is_empty() {
        uri.to_owned()
    } else {
        authorize::redirect_with(uri, &params)
    }))
}

pub(super) async fn finish_logout(
    app: &App,
    headers: &HeaderMap,
    target: Option<String>,
) -> Response {
    let mut user = None;
    if let Ok(Some((sid, s))) = browser_session(app, headers).await {
        let _ = session::end(&app.ephemeral, &sid).await;
        app.metrics
            .sessions
            .end(s.auth_time + i64::try_from(app.config.login.session_seconds).unwrap_or(0));
        user = Some(s.user_id);
    }
    if let Some(user) = user {
        let event = crate::model::AuditEvent::new(now(), user.clone(), "logout").target(user);
        if let Err(e) = app.audit.record(event).await {
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &OAuthError::from(e).description,
            );
        }
    }
    let clear = app.cookies.set(app.cookies.session, "", 0);
    match target {
        Some(location) => redirect(&location, &[clear]),
        None => html(StatusCode::OK, pages::logged_out(), None, &[clear]),
    }
}

/// RP-initiated logout. With an `id_token_hint` for the signed-in user the
/// logout happens at once; otherwise the user confirms (a cross-site link
/// cannot sign anyone out).
pub(super) async fn logout_get(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let form = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(f) => f,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let target = match logout_target(&app, &form).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let session = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let hint_sub = form
        .get("id_token_hint")
        .and_then(|h| crate::token::read_id_token_hint(&app.keys.current(), &app.issuer, h))
        .map(|(sub, _)| sub);
    let confirmed = match &session {
        None => true,
        Some((_, s)) => hint_sub.as_deref() == Some(s.user_id.as_str()),
    };
    if confirmed {
        return finish_logout(&app, &headers, target).await;
    }
    let (token, cookies) = match csrf(&app, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let fields: Vec<(&str, &str)> = [
        "post_logout_redirect_uri",
        "state",
        "client_id",
        "id_token_hint",
    ]
    .into_iter()
    .filter_map(|k| form.get(k).map(|v| (k, v)))
    .collect();
    html(
        StatusCode::OK,
        pages::logout_confirm(&token, &fields),
        target.as_deref(),
        &cookies,
    )
}

pub(super) async fn logout_post(State(app): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let target = match logout_target(&app, &form).await {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    finish_logout(&app, &headers, target).await
}
