//! `/account`: the signed-in user's own page. Without a session, or when a
//! change needs a recent sign-in, the browser signs in through a local
//! request and comes back here.

use super::*;
use crate::account::{self, AccountError, Holder};
use crate::mfa::{Ceremony, Confirmed, Enrolment, MfaError};
use crate::model::User;

const HOME: &str = "/account";

/// The signed-in user, and their session's handle and record.
struct SignedIn {
    user: User,
    handle: String,
    session: Session,
}

/// The signed-in user, or the sign-in page (`fresh`: sign in again even
/// with a session).
async fn signed_in(app: &App, headers: &HeaderMap, fresh: bool) -> Result<SignedIn, Response> {
    if !fresh
        && let Some((id, session)) = browser_session(app, headers).await?
        && let Ok(Some(user)) = app.store.user_by_id(&session.user_id).await
        && !user.disabled
    {
        return Ok(SignedIn {
            user,
            handle: crate::session::handle(&id),
            session,
        });
    }
    let id = match authorize::start_local(app, HOME, fresh).await {
        Ok(id) => id,
        Err(r) => return Err(refusal(r)),
    };
    let session = browser_session(app, headers).await?;
    match authorize::resume(
        app,
        &id,
        session.as_ref().map(|(i, s)| (i.as_str(), s)),
        false,
        now(),
    )
    .await
    {
        Ok(next) => Err(render(app, headers, next).await),
        Err(r) => Err(refusal(r)),
    }
}

async fn page(
    app: &App,
    headers: &HeaderMap,
    user: &User,
    notice: Option<&str>,
    error: Option<&str>,
) -> Response {
    let (token, cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let overview = match account::overview(app, user).await {
        Ok(o) => o,
        Err(e) => return failed(e),
    };
    let current = bootstrap::cookie::find(headers, app.cookies.session)
        .map(crate::session::handle)
        .unwrap_or_default();
    let body = pages::account(&pages::AccountPage {
        user,
        factors: &overview.factors,
        recovery_left: overview.recovery_left,
        sessions: &overview.sessions,
        current_session: &current,
        sign_ins: &overview.sign_ins,
        links: &overview
            .links
            .iter()
            .map(|l| {
                let name = app
                    .upstreams
                    .get(&l.provider)
                    .map_or_else(|| l.provider.clone(), |u| u.config.name.clone());
                (l.clone(), name)
            })
            .collect::<Vec<_>>(),
        csrf: &token,
        sms: app.sms.enabled(),
        notice,
        error,
    });
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    html(status, body, None, &cookies)
}

pub(super) async fn account_get(State(app): Shared, headers: HeaderMap) -> Response {
    match signed_in(&app, &headers, false).await {
        Ok(s) => page(&app, &headers, &s.user, None, None).await,
        Err(page) => page,
    }
}

/// A change that could not be made for want of a store or the audit log
/// (503), or for a fault of ours (500).
fn failed(e: AccountError) -> Response {
    match e {
        AccountError::Store(e) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &OAuthError::from(e).description,
        ),
        AccountError::Ephemeral(e) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &OAuthError::from(e).description,
        ),
        AccountError::Audit(e) => error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &OAuthError::from(e).description,
        ),
        e => {
            tracing::error!(error = %e, "account change failed");
            error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "The change could not be made. Try again later.",
            )
        }
    }
}

/// What a change answers: the page with a notice, a fresh sign-in when
/// the change needs one, or the page with what went wrong.
async fn outcome(
    app: &App,
    headers: &HeaderMap,
    user: &User,
    result: Result<&str, AccountError>,
) -> Response {
    match result {
        Ok(notice) => page(app, headers, user, Some(notice), None).await,
        Err(AccountError::NeedsRecentSignIn) => match signed_in(app, headers, true).await {
            Ok(s) => page(app, headers, &s.user, None, None).await,
            Err(page) => page,
        },
        Err(
            e @ (AccountError::Store(_)
            | AccountError::Ephemeral(_)
            | AccountError::Audit(_)
            | AccountError::Other(_)),
        ) => failed(e),
        Err(e) => page(app, headers, user, None, Some(&e.to_string())).await,
    }
}

/// `POST /account/{change}`: one form of the page, CSRF-checked, from a
/// signed-in browser.
pub(super) async fn account_post(
    State(app): Shared,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    axum::extract::Path(change): axum::extract::Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = match checked_form(&app, &headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let SignedIn {
        user,
        handle,
        session,
    } = match signed_in(&app, &headers, false).await {
        Ok(s) => s,
        Err(page) => return page,
    };
    let holder = Holder {
        user: &user,
        session: &session,
        handle: &handle,
        source: crate::proxy::client_address(peer.ip(), &headers, &app.trusted_proxies),
    };
    let field = |name: &str| form.get(name).unwrap_or("");
    let result = match change.as_str() {
        "password" => account::change_password(
            &app,
            &holder,
            field("current"),
            field("new"),
            field("sign_out_others") == "on",
            now_ms(),
        )
        .await
        .map(|()| "Your password was changed."),
        "end-session" => {
            let target = field("session");
            return match account::end_session(&app, &holder, target, now()).await {
                // Signed out here: the page asks to sign in again.
                Ok(()) if target == handle => redirect(HOME, &[]),
                Ok(()) => page(&app, &headers, &user, Some("The session was ended."), None).await,
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        "unlink" => account::unlink(&app, &holder, field("provider"), field("subject"), now())
            .await
            .map(|()| "The linked account was removed."),
        "end-others" => account::end_other_sessions(&app, &holder, now())
            .await
            .map(|n| match n {
                0 => "There were no other sessions.",
                1 => "The other session was ended.",
                _ => "The other sessions were ended.",
            }),
        "totp" => {
            return match account::begin_totp(&app, &holder, field("label"), now()).await {
                Ok(enrolment) => enrol_page(&app, &headers, &enrolment, None),
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        "totp-confirm" => {
            return totp_confirm(&app, &headers, &holder, field("enrolment"), field("code")).await;
        }
        "passkey" => {
            return match account::begin_passkey(&app, &holder, field("label"), now()).await {
                Ok(ceremony) => passkey_page(&app, &headers, &ceremony),
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        "sms" => {
            return match account::begin_sms(&app, &holder, field("label"), field("phone"), now_ms())
                .await
            {
                Ok(sent) => sms_page(&app, &headers, &sent, None),
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        "sms-confirm" => {
            return match account::confirm_sms(
                &app,
                &holder,
                field("ceremony"),
                field("code"),
                now(),
            )
            .await
            {
                Ok(Confirmed {
                    recovery_codes: Some(codes),
                    ..
                }) => recovery_page(&app, &headers, &codes),
                Ok(_) => page(&app, &headers, &user, Some("The phone was added."), None).await,
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        "passkey-confirm" => {
            return match account::confirm_passkey(
                &app,
                &holder,
                field("ceremony"),
                field("credential"),
                now(),
            )
            .await
            {
                Ok(Confirmed {
                    recovery_codes: Some(codes),
                    ..
                }) => recovery_page(&app, &headers, &codes),
                Ok(_) => page(&app, &headers, &user, Some("The passkey was added."), None).await,
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        "rename" => account::rename_factor(&app, &holder, field("factor"), field("label"), now())
            .await
            .map(|()| "The factor was renamed."),
        "remove" => account::remove_factor(&app, &holder, field("factor"), now())
            .await
            .map(|()| "The factor was removed."),
        "recovery" => {
            return match account::new_recovery_codes(&app, &holder, now()).await {
                Ok(codes) => recovery_page(&app, &headers, &codes),
                Err(e) => outcome(&app, &headers, &user, Err(e)).await,
            };
        }
        other => {
            return error_page(
                StatusCode::NOT_FOUND,
                &format!("`{other}` is not something the account page changes"),
            );
        }
    };
    outcome(&app, &headers, &user, result).await
}

async fn totp_confirm(
    app: &App,
    headers: &HeaderMap,
    holder: &Holder<'_>,
    id: &str,
    code: &str,
) -> Response {
    match account::confirm_totp(app, holder, id, code, now()).await {
        Ok(confirmed) => match confirmed.recovery_codes {
            Some(codes) => recovery_page(app, headers, &codes),
            None => {
                page(
                    app,
                    headers,
                    holder.user,
                    Some("The authenticator app was added."),
                    None,
                )
                .await
            }
        },
        // The same secret again, so the app already set up still works.
        Err(AccountError::Mfa(MfaError::WrongCode)) => {
            match crate::mfa::pending_totp(app, holder.user, id).await {
                Ok(enrolment) => {
                    let message = MfaError::WrongCode.to_string();
                    enrol_page(app, headers, &enrolment, Some(&message))
                }
                Err(e) => outcome(app, headers, holder.user, Err(e.into())).await,
            }
        }
        Err(e) => outcome(app, headers, holder.user, Err(e)).await,
    }
}

fn sms_page(app: &App, headers: &HeaderMap, sent: &Ceremony, error: Option<&str>) -> Response {
    let (token, cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    html(
        StatusCode::OK,
        pages::sms_form(sent, &token, error),
        None,
        &cookies,
    )
}

fn passkey_page(app: &App, headers: &HeaderMap, ceremony: &Ceremony) -> Response {
    let (token, cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let form = pages::passkey_form(
        pages::PasskeyMode::Register,
        "/account/passkey-confirm",
        &token,
        ceremony,
        &[],
        "Create passkey",
    );
    html(StatusCode::OK, pages::add_passkey(&form), None, &cookies)
}

fn enrol_page(app: &App, headers: &HeaderMap, e: &Enrolment, error: Option<&str>) -> Response {
    let (token, cookies) = match csrf(app, headers) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let form = pages::enrol_form(e, &token, "/account/totp-confirm", error);
    let status = if error.is_some() {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    html(status, pages::add_totp(&form), None, &cookies)
}

fn recovery_page(app: &App, headers: &HeaderMap, codes: &[String]) -> Response {
    let cookies = match csrf(app, headers) {
        Ok((_, c)) => c,
        Err(e) => return e.into_response(),
    };
    let body = pages::recovery_codes(&pages::RecoveryCodesPage { codes, next: HOME });
    html(StatusCode::OK, body, None, &cookies)
}
