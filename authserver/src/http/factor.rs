//! The sign-in's steps as pages: what each [`LoginStep`] looks like, and
//! the second-factor and enrolment forms.

use super::*;
use crate::login::{
    self, Ask, Challenge, CodeAttempt, EnrolAttempt, LoginStep, PasskeyAttempt, Retry,
};
use crate::mfa::{Answer, Method};

/// The login page of `request_id`, with a passwordless passkey offered
/// (a fresh ceremony each time it is shown).
pub(super) async fn login_page(
    app: &App,
    request_id: &str,
    client_name: &str,
    csrf: &str,
    username: &str,
    error: Option<&str>,
) -> String {
    let passkey = match crate::mfa::webauthn::begin_discoverable(app, request_id).await {
        Ok(c) => Some(c),
        Err(e) => {
            // The password form still works.
            tracing::warn!(error = %e, "no passkey sign-in offered");
            None
        }
    };
    // After a federated sign-in that found no linked account.
    let linking = crate::authorize::load(app, request_id)
        .await
        .ok()
        .and_then(|r| r.pending_link)
        .is_some();
    let notice = linking.then_some(
        "No account here is linked to the account you signed in with. Sign in to your account here to link them; from then on either way signs you in.",
    );
    pages::login(&pages::LoginPage {
        client_name,
        request_id,
        csrf,
        username,
        error,
        notice,
        passkey: passkey.as_ref(),
        providers: &app.upstreams.buttons(),
    })
}

/// The page or redirect for a step of the sign-in of `request_id`;
/// `username` refills the login form after a failed password.
pub(super) async fn respond(
    app: &App,
    headers: &HeaderMap,
    step: LoginStep,
    username: &str,
    request_id: &str,
) -> Response {
    let (token, mut cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    match step {
        LoginStep::SignedIn {
            session_id,
            request_id,
            recovery_codes,
        } => {
            cookies.push(app.cookies.set(
                app.cookies.session,
                &session_id,
                app.config.login.session_seconds,
            ));
            cookies.push(app.cookies.set(app.cookies.pending, "", 0));
            let location = format!(
                "/authorize/resume?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("request", &request_id)
                    .finish()
            );
            if recovery_codes.is_empty() {
                return redirect(&location, &cookies);
            }
            let page = pages::recovery_codes(&pages::RecoveryCodesPage {
                codes: &recovery_codes,
                next: &location,
            });
            html(StatusCode::OK, page, None, &cookies)
        }
        LoginStep::Retry {
            client_name,
            redirect_uri,
            reason,
        } => {
            let page = login_page(
                app,
                request_id,
                &client_name,
                &token,
                username,
                Some(reason.message()),
            )
            .await;
            html(status_of(reason), page, Some(&redirect_uri), &cookies)
        }
        LoginStep::SecondFactor(challenge) => {
            cookies.push(app.cookies.set(
                app.cookies.pending,
                &challenge.pending,
                app.config.mfa.pending_seconds,
            ));
            challenge_page(&challenge, &token, &cookies)
        }
    }
}

fn status_of(reason: Retry) -> StatusCode {
    match reason {
        Retry::Locked => StatusCode::TOO_MANY_REQUESTS,
        Retry::Failed | Retry::WrongCode | Retry::Passkey => StatusCode::UNAUTHORIZED,
    }
}

fn challenge_page(c: &Challenge, csrf: &str, cookies: &[String]) -> Response {
    let error = c.error.map(Retry::message);
    let page = match &c.ask {
        Ask::Code {
            method,
            methods,
            ceremony,
        } => pages::factor(&pages::FactorPage {
            client_name: &c.client_name,
            csrf,
            method: *method,
            methods,
            ceremony: ceremony.as_ref(),
            error,
        }),
        Ask::Enrol(enrolment) => pages::enrol(
            &c.client_name,
            &pages::enrol_form(enrolment, csrf, "/login/enrol", error),
        ),
    };
    let status = c.error.map_or(StatusCode::OK, status_of);
    html(status, page, Some(&c.redirect_uri), cookies)
}

/// The pending sign-in the browser's cookie names.
fn pending(app: &App, headers: &HeaderMap) -> Option<String> {
    bootstrap::cookie::find(headers, app.cookies.pending).map(str::to_owned)
}

fn expired() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in has expired. Go back to the application and start again.",
    )
}

/// `GET /login/factor?method=…[&resend=1]`: the page of another method
/// (`resend`: a new SMS code).
pub(super) async fn factor_get(
    State(app): Shared,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let chosen = match query.get("method") {
        None => None,
        Some(m) => match Method::parse(m) {
            Some(m) => Some(m),
            None => {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    &format!("`method` `{m}` is not one of {}", method_names()),
                );
            }
        },
    };
    let Some(token) = pending(&app, &headers) else {
        return expired();
    };
    let (csrf_token, cookies) = match csrf(&app, &headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let resend = query.get("resend") == Some("1");
    match login::challenge::challenge(&app, &token, chosen, resend).await {
        Ok(c) => challenge_page(&c, &csrf_token, &cookies),
        Err(r) => refusal(r),
    }
}

/// Every method, for the messages that list them.
fn method_names() -> String {
    Method::ALL.map(Method::as_str).join(", ")
}

/// `POST /login/factor`: a second-factor code.
pub(super) async fn factor_post(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let posted = match SignInForm::read(&app, peer, &headers, &body).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let Some(method) = Method::parse(posted.field("method")) else {
        let message = format!("`method` must be one of {}", method_names());
        return error_page(StatusCode::BAD_REQUEST, &message);
    };
    let Some(token) = pending(&app, &headers) else {
        return expired();
    };
    // A WebAuthn answer is the browser's credential, the others a code.
    let field = if method == Method::WebAuthn {
        "credential"
    } else {
        "code"
    };
    let attempt = CodeAttempt {
        pending: &token,
        method,
        answer: Answer {
            code: posted.field(field),
            ceremony: posted.field("ceremony"),
        },
        browser: posted.browser(),
    };
    match login::factor::with_code(&app, &attempt, now_ms()).await {
        Ok(step) => respond(&app, &headers, step, "", "").await,
        Err(r) => refusal(r),
    }
}

/// `POST /login/enrol`: the first code of an app enrolled at sign-in.
pub(super) async fn enrol_post(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let posted = match SignInForm::read(&app, peer, &headers, &body).await {
        Ok(p) => p,
        Err(page) => return page,
    };
    let enrolment = match posted.required("enrolment") {
        Ok(e) => e,
        Err(e) => return e.into_response(),
    };
    let Some(token) = pending(&app, &headers) else {
        return expired();
    };
    let attempt = EnrolAttempt {
        pending: &token,
        enrolment,
        code: posted.field("code"),
        browser: posted.browser(),
    };
    match login::factor::with_enrolment(&app, &attempt, now_ms()).await {
        Ok(step) => respond(&app, &headers, step, "", "").await,
        Err(r) => refusal(r),
    }
}

/// `POST /login/passkey`: a passwordless sign-in from the login page.
pub(super) async fn passkey_post(
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
    let attempt = PasskeyAttempt {
        request_id,
        ceremony: posted.field("ceremony"),
        credential: posted.field("credential"),
        browser: posted.browser(),
    };
    match login::with_passkey(&app, &attempt, now_ms()).await {
        Ok(step) => respond(&app, &headers, step, "", request_id).await,
        Err(r) => refusal(r),
    }
}
