//! What the browser pages share: HTML with a strict CSP, the style
//! sheet, error pages, redirects, the CSRF check and the browser session.

use super::*;

/// The one script of the pages (WebAuthn ceremonies).
pub(super) async fn script() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/javascript; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        include_str!("../../static/webauthn.js"),
    )
}

pub(super) async fn style() -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/css; charset=utf-8"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            ),
        ],
        pages::STYLE,
    )
}

/// `scheme://host[:port]` of an http(s) URI, or `scheme:` of a private-use
/// one: what CSP `form-action` must allow for the redirect after a form.
pub(super) fn csp_source(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once(':')?;
    if scheme == "http" || scheme == "https" {
        let authority = rest.strip_prefix("//")?.split(['/', '?', '#']).next()?;
        Some(format!("{scheme}://{authority}"))
    } else {
        Some(format!("{scheme}:"))
    }
}

/// An HTML page with the strict headers every page gets.
pub(super) fn html(
    status: StatusCode,
    body: String,
    form_target: Option<&str>,
    set_cookies: &[String],
) -> Response {
    let extra = form_target
        .and_then(csp_source)
        .map(|s| format!(" {s}"))
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         form-action 'self'{extra}; frame-ancestors 'none'; base-uri 'none'"
    );
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    for cookie in set_cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    html(status, pages::error("Sign-in problem", message), None, &[])
}

pub(super) fn redirect(location: &str, set_cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for cookie in set_cookies {
        if let Ok(v) = HeaderValue::from_str(cookie) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The browser's session, if its cookie names a live one.
pub(super) async fn browser_session(
    app: &App,
    headers: &HeaderMap,
) -> Result<Option<(String, Session)>, Response> {
    let Some(id) = bootstrap::cookie::find(headers, app.cookies.session) else {
        return Ok(None);
    };
    match session::load(&app.ephemeral, id).await {
        Ok(s) => Ok(s.map(|s| (id.to_owned(), s))),
        Err(e) => Err(error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &OAuthError::unavailable(&e).description,
        )),
    }
}

/// A problem shown on our error page.
pub(super) struct PageError(pub(super) StatusCode, pub(super) String);

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        error_page(self.0, &self.1)
    }
}

/// The CSRF token for this browser, and the cookie to set when it has none.
pub(super) fn csrf(app: &App, headers: &HeaderMap) -> Result<(String, Vec<String>), PageError> {
    if let Some(cookie) = bootstrap::cookie::find(headers, app.cookies.csrf) {
        return Ok((session::csrf_token(&app.mac, cookie), Vec::new()));
    }
    let value = crate::crypto::random_token::<24>();
    let token = session::csrf_token(&app.mac, &value);
    Ok((token, vec![app.cookies.set(app.cookies.csrf, &value, 3600)]))
}

pub(super) fn refusal(r: Refusal) -> Response {
    match r {
        Refusal::Page(message) => error_page(StatusCode::BAD_REQUEST, &message),
        Refusal::Failed { status, message } => error_page(
            StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            &message,
        ),
        Refusal::Redirect(location) => redirect(&location, &[]),
    }
}

/// Renders what comes next in the flow.
pub(super) async fn render(app: &App, headers: &HeaderMap, next: Next) -> Response {
    let (request_id, page) = match next {
        Next::Redirect(location) => return redirect(&location, &[]),
        Next::DeviceDone {
            client_name,
            approved,
        } => {
            let page = pages::device_done(&client_name, approved);
            return html(StatusCode::OK, page, None, &[]);
        }
        Next::StepUp {
            request_id,
            client_name,
            user,
            amr,
        } => {
            return match crate::login::challenge::step_up(app, &request_id, client_name, user, amr)
                .await
            {
                Ok(c) => {
                    let step = crate::login::LoginStep::SecondFactor(c);
                    super::factor::respond(app, headers, step, "", &request_id).await
                }
                Err(r) => refusal(r),
            };
        }
        Next::Login {
            request_id,
            client,
            hint,
        } => (request_id, Page::Login { client, hint }),
        Next::Consent {
            request_id,
            client,
            user,
            scopes,
        } => (
            request_id,
            Page::Consent {
                client,
                user,
                scopes,
            },
        ),
    };
    let (token, cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let target = authorize::load(app, &request_id)
        .await
        .ok()
        .map(|r| r.redirect_uri);
    let body = match page {
        Page::Login { client, hint } => {
            let hint = hint.as_deref().unwrap_or("");
            super::factor::login_page(app, &request_id, &client.name, &token, hint, None).await
        }
        Page::Consent {
            client,
            user,
            scopes,
        } => pages::consent(&pages::ConsentPage {
            client_name: &client.name,
            client_id: &client.id,
            username: &user.username,
            scopes: &scopes,
            request_id: &request_id,
            csrf: &token,
        }),
    };
    html(StatusCode::OK, body, target.as_deref(), &cookies)
}

/// The pages of the flow that show a form of the request.
enum Page {
    Login {
        client: crate::model::Client,
        hint: Option<String>,
    },
    Consent {
        client: crate::model::Client,
        user: crate::model::User,
        scopes: Vec<String>,
    },
}

/// A POSTed step of a sign-in: the CSRF-checked form, the browser's
/// current session (it ends when the new one begins), its address and
/// its `User-Agent`.
pub(super) struct SignInForm {
    pub(super) form: Form,
    previous: Option<String>,
    source: Option<std::net::IpAddr>,
    user_agent: Option<String>,
    federation_binding: Option<String>,
}

impl SignInForm {
    pub(super) async fn read(
        app: &App,
        peer: SocketAddr,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Self, Response> {
        let form = checked_form(app, headers, body).map_err(IntoResponse::into_response)?;
        let previous = browser_session(app, headers).await?.map(|(id, _)| id);
        Ok(Self {
            form,
            previous,
            source: crate::proxy::client_address(peer.ip(), headers, &app.trusted_proxies),
            user_agent: headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            federation_binding: bootstrap::cookie::find(headers, app.cookies.federation)
                .map(str::to_owned),
        })
    }

    /// The browser the step comes from.
    pub(super) fn browser(&self) -> crate::login::Browser<'_> {
        crate::login::Browser {
            source: self.source,
            user_agent: self.user_agent.as_deref(),
            previous_session: self.previous.as_deref(),
            federation_binding: self.federation_binding.as_deref(),
        }
    }

    /// A field, empty when absent.
    pub(super) fn field(&self, name: &str) -> &str {
        self.form.get(name).unwrap_or("")
    }

    /// A field that must be there, or the problem that says it is missing.
    pub(super) fn required(&self, name: &str) -> Result<&str, PageError> {
        self.form
            .get(name)
            .ok_or_else(|| PageError(StatusCode::BAD_REQUEST, format!("missing `{name}`")))
    }
}

/// A POSTed HTML form with a valid CSRF token, or the page that says why not.
pub(super) fn checked_form(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Form, PageError> {
    let form = Form::parse(body).map_err(|e| PageError(StatusCode::BAD_REQUEST, e.description))?;
    let cookie = bootstrap::cookie::find(headers, app.cookies.csrf);
    if !session::csrf_ok(&app.mac, cookie, form.get("csrf")) {
        return Err(PageError(
            StatusCode::FORBIDDEN,
            "This form has expired or did not come from this site. Go back to the application and start again.".into(),
        ));
    }
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::csp_source;

    #[test]
    fn form_action_sources() {
        assert_eq!(
            csp_source("https://app.example.com:8443/cb?x=1").as_deref(),
            Some("https://app.example.com:8443")
        );
        assert_eq!(
            csp_source("http://127.0.0.1:8000/_auth/callback").as_deref(),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(
            csp_source("com.example.app:/cb").as_deref(),
            Some("com.example.app:")
        );
    }
}
