//! Signing in with an upstream provider: the login page's buttons lead to
//! `/login/federated/{provider}`, the provider answers at
//! `/login/federated/{provider}/callback` (a SAML IdP by POST: it is our
//! assertion consumer service, described at `…/metadata`).

use axum::extract::Path;

use super::*;
use crate::federation::{Answer, Finished};
use crate::login::LoginStep;

pub(super) async fn start(
    State(app): Shared,
    Path(provider): Path<String>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = match Form::parse(uri.query().unwrap_or("").as_bytes()) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let Some(request_id) = query.get("request") else {
        return error_page(StatusCode::BAD_REQUEST, "missing `request`");
    };
    let previous = match browser_session(&app, &headers).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let previous = previous
        .as_ref()
        .map(|(id, s)| (id.as_str(), s.user_id.as_str()));
    match crate::federation::begin(&app, &provider, request_id, previous).await {
        Ok(begun) => {
            let (cookies, name) = (&app.cookies, app.cookies.federation);
            let binding = if begun.posts_back {
                cookies.set_cross_site(name, &begun.browser_binding, AT_PROVIDER_SECS)
            } else {
                cookies.set(name, &begun.browser_binding, AT_PROVIDER_SECS)
            };
            redirect(&begun.location, &[binding])
        }
        Err(r) => refusal(r),
    }
}

/// How long the binding cookie lives (as the sign-in at the provider).
const AT_PROVIDER_SECS: u64 = 600;

/// Our SAML service provider's metadata.
pub(super) async fn metadata(State(app): Shared, Path(provider): Path<String>) -> Response {
    match crate::federation::saml_metadata(&app, &provider).await {
        Ok(xml) => (
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            xml,
        )
            .into_response(),
        Err(r) => refusal(r),
    }
}

/// An OpenID Connect or OAuth provider's answer (in the query).
pub(super) async fn callback(
    State(app): Shared,
    Path(provider): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    let query = uri.query().unwrap_or("").as_bytes();
    answered(&app, &provider, peer, &headers, query, false).await
}

/// A SAML IdP's answer (HTTP-POST binding: `SAMLResponse`, `RelayState`).
pub(super) async fn saml_callback(
    State(app): Shared,
    Path(provider): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answered(&app, &provider, peer, &headers, &body, true).await
}

async fn answered(
    app: &App,
    provider: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    fields: &[u8],
    posted: bool,
) -> Response {
    // A SAML IdP answers by POST (the Web SSO profile), the others by
    // redirect: the other way in is not an answer.
    let saml = app
        .upstreams
        .get(provider)
        .is_some_and(|p| p.config.kind == crate::config::ProviderKind::Saml);
    if saml != posted {
        return error_page(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "`{provider}` answers by {}",
                if saml { "POST" } else { "GET" }
            ),
        );
    }
    let query = match Form::parse(fields) {
        Ok(q) => q,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e.description),
    };
    let previous = match browser_session(app, headers).await {
        Ok(s) => s.map(|(id, _)| id),
        Err(page) => return page,
    };
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let browser = crate::login::Browser {
        source: crate::proxy::client_address(peer.ip(), headers, &app.trusted_proxies),
        user_agent,
        previous_session: previous.as_deref(),
        federation_binding: None,
    };
    let answer = Answer {
        state: query.get("state").or(query.get("RelayState")),
        code: query.get("code"),
        error: query.get("error"),
        error_description: query.get("error_description"),
        saml_response: query.get("SAMLResponse"),
        browser_binding: bootstrap::cookie::find(headers, app.cookies.federation),
    };
    let finished = crate::federation::finish(app, provider, answer, &browser, now()).await;
    let clear = app.cookies.set(app.cookies.federation, "", 0);
    match finished {
        Ok(Finished::Step(step)) => {
            let request_id = match &step {
                LoginStep::SignedIn { request_id, .. } => request_id.clone(),
                _ => String::new(),
            };
            let mut response = super::factor::respond(app, headers, step, "", &request_id).await;
            if let Ok(v) = HeaderValue::from_str(&clear) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
        Ok(Finished::ProveAccount {
            request_id,
            browser_binding,
        }) => {
            let location = format!(
                "/authorize/resume?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("request", &request_id)
                    .finish()
            );
            // The same cookie now binds the identity held for linking.
            let binding = app.cookies.set(
                app.cookies.federation,
                &browser_binding,
                crate::authorize::REQUEST_TTL.as_secs(),
            );
            redirect(&location, &[binding])
        }
        Err(r) => {
            let mut response = refusal(r);
            if let Ok(v) = HeaderValue::from_str(&clear) {
                response.headers_mut().append(header::SET_COOKIE, v);
            }
            response
        }
    }
}
