//! The second step of a sign-in: after the password, a code from a
//! second factor, or (when MFA is required and none is enrolled) the
//! enrolment of an authenticator app. Wrong codes count toward the
//! account's and the address's lockout windows, and each attempt is
//! audited with the masked username.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use super::challenge::{self, Ask, Challenge, EXPIRED, Pending, load, refusal};
use super::{Browser, LoginStep, Proof, Retry, account_key, address_key, complete, mask};
use crate::app::App;
use crate::authorize::{AuthRequest, Refusal};
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::mfa::{self, Answer, Check, Method, MfaError};
use crate::model::{AuditEvent, User};

/// A code typed on the second-factor page.
#[derive(Debug)]
pub struct CodeAttempt<'a> {
    pub pending: &'a str,
    pub method: Method,
    pub answer: Answer<'a>,
    pub browser: Browser<'a>,
}

/// The first code of an app being enrolled during sign-in.
#[derive(Debug)]
pub struct EnrolAttempt<'a> {
    pub pending: &'a str,
    pub enrolment: &'a str,
    pub code: &'a str,
    pub browser: Browser<'a>,
}

/// Counts one second-factor attempt against the lockout windows; true if
/// the account or the address is locked.
async fn locked(
    app: &App,
    username: &str,
    source: Option<IpAddr>,
    now_ms: i64,
) -> Result<bool, Refusal> {
    let cfg = &app.config.login;
    let window = Duration::from_secs(cfg.window_seconds);
    let account = app
        .ephemeral
        .hit(&account_key(username), window, now_ms)
        .await
        .map_err(OAuthError::from)?;
    let address = app
        .ephemeral
        .hits(&address_key(source), window, now_ms)
        .await
        .map_err(OAuthError::from)?;
    Ok(account > cfg.max_failures_per_account || address >= cfg.max_failures_per_address)
}

/// Checks a code for the pending sign-in `attempt.pending`.
pub async fn with_code(
    app: &App,
    attempt: &CodeAttempt<'_>,
    now_ms: i64,
) -> Result<LoginStep, Refusal> {
    let now = now_ms / 1000;
    let (pending, user, req) = load(app, attempt.pending).await?;
    // Only a method the user has now: no recovery code left over from a
    // factor that is gone, no phone when SMS is switched off.
    let methods = mfa::methods(app, &user.id)
        .await
        .map_err(OAuthError::from)?;
    if !methods.contains(&attempt.method) {
        return Err(Refusal::Page(format!(
            "`{}` is not one of your sign-in methods",
            attempt.method.as_str()
        )));
    }
    let audit = |action: &str| {
        AuditEvent::new(now, user.id.clone(), action)
            .target(user.id.clone())
            .source(attempt.browser.source)
            .client(req.client_id.clone())
            .detail(json!({"username": mask(&user.username), "method": attempt.method.as_str()}))
    };
    let check = if locked(app, &user.username, attempt.browser.source, now_ms).await? {
        app.metrics
            .mfa_verifications
            .with_label_values(&[attempt.method.as_str(), "locked"])
            .inc();
        app.audit
            .record(audit("login.mfa.locked").failed())
            .await
            .map_err(OAuthError::from)?;
        None
    } else {
        let spend = audit("mfa.recovery.use");
        Some(
            mfa::check(app, &user, attempt.method, attempt.answer, spend, now)
                .await
                .map_err(refusal)?,
        )
    };
    if let Some(Check::Accepted(amr)) = check {
        app.audit
            .record(audit("login.mfa.success"))
            .await
            .map_err(OAuthError::from)?;
        let done = Finished {
            amr,
            recovery_codes: Vec::new(),
        };
        return finish(
            app,
            attempt.pending,
            pending,
            user,
            req,
            done,
            &attempt.browser,
            now,
        )
        .await;
    }
    let reason = if check.is_none() {
        Retry::Locked
    } else {
        app.ephemeral
            .hit(
                &address_key(attempt.browser.source),
                Duration::from_secs(app.config.login.window_seconds),
                now_ms,
            )
            .await
            .map_err(OAuthError::from)?;
        let action = if check == Some(Check::Replayed) {
            "login.mfa.replay"
        } else {
            "login.mfa.failure"
        };
        app.audit
            .record(audit(action).failed())
            .await
            .map_err(OAuthError::from)?;
        tracing::warn!(username = %mask(&user.username), method = attempt.method.as_str(), "second factor refused");
        Retry::WrongCode
    };
    let mut challenge =
        challenge::challenge(app, attempt.pending, Some(attempt.method), false).await?;
    challenge.error = Some(reason);
    Ok(LoginStep::SecondFactor(challenge))
}

/// Confirms the app enrolled during a sign-in that requires MFA; the
/// sign-in completes with it and shows the new recovery codes.
pub async fn with_enrolment(
    app: &App,
    attempt: &EnrolAttempt<'_>,
    now_ms: i64,
) -> Result<LoginStep, Refusal> {
    let now = now_ms / 1000;
    let (pending, user, req) = load(app, attempt.pending).await?;
    let event = AuditEvent::new(now, user.id.clone(), "mfa.totp.enrol")
        .target(user.id.clone())
        .source(attempt.browser.source)
        .client(req.client_id.clone())
        .detail(json!({"username": mask(&user.username)}));
    let error = if locked(app, &user.username, attempt.browser.source, now_ms).await? {
        Retry::Locked
    } else {
        match mfa::confirm_totp(app, &user, attempt.enrolment, attempt.code, event, now).await {
            Ok(confirmed) => {
                let done = Finished {
                    amr: &["otp"],
                    recovery_codes: confirmed.recovery_codes.unwrap_or_default(),
                };
                return finish(
                    app,
                    attempt.pending,
                    pending,
                    user,
                    req,
                    done,
                    &attempt.browser,
                    now,
                )
                .await;
            }
            Err(MfaError::WrongCode) => Retry::WrongCode,
            Err(e) => return Err(refusal(e)),
        }
    };
    let enrolment = mfa::pending_totp(app, &user, attempt.enrolment)
        .await
        .map_err(refusal)?;
    Ok(LoginStep::SecondFactor(Challenge {
        pending: attempt.pending.to_owned(),
        client_name: pending.client_name,
        redirect_uri: req.redirect_uri,
        ask: Ask::Enrol(enrolment),
        error: Some(error),
    }))
}

/// What the second step proved.
struct Finished {
    /// Its RFC 8176 `amr` values.
    amr: &'static [&'static str],
    /// New recovery codes to show once (a factor enrolled in this step).
    recovery_codes: Vec<String>,
}

/// Both factors held: the pending sign-in is spent and the session begins.
#[expect(
    clippy::too_many_arguments,
    reason = "the parts of one finished sign-in"
)]
async fn finish(
    app: &App,
    token: &str,
    pending: Pending,
    user: User,
    mut req: AuthRequest,
    done: Finished,
    browser: &Browser<'_>,
    now: i64,
) -> Result<LoginStep, Refusal> {
    // Spent once: a second submission of the same page finds nothing.
    if app
        .ephemeral
        .take(&keys::pending_login(token))
        .await
        .map_err(OAuthError::from)?
        .is_none()
    {
        return Err(Refusal::Page(EXPIRED.into()));
    }
    let _ = app.ephemeral.delete(&account_key(&user.username)).await;
    let mut amr = pending.amr;
    for value in done.amr.iter().chain(&["mfa"]) {
        if !amr.iter().any(|a| a == value) {
            amr.push((*value).to_owned());
        }
    }
    let proof = Proof {
        user,
        amr,
        acr: app.config.mfa.acr.clone(),
    };
    let session_id = complete(app, &pending.request_id, &mut req, proof, browser, now).await?;
    Ok(LoginStep::SignedIn {
        session_id,
        request_id: pending.request_id,
        recovery_codes: done.recovery_codes,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::login::{Attempt, with_password};
    use crate::mfa::totp;
    use crate::testing::{self, NOW, PASSWORD};

    fn code<'a>(pending: &'a str, code: &'a str) -> CodeAttempt<'a> {
        CodeAttempt {
            pending,
            method: Method::Totp,
            answer: Answer { code, ceremony: "" },
            browser: Browser::default(),
        }
    }

    #[tokio::test]
    async fn an_enrolled_app_is_asked_for_after_the_password_and_its_step_works_once() {
        let app = testing::app().await;
        let alice = testing::alice_and_client(&app).await;
        let enrolment = mfa::begin_totp(&app, &alice, "phone").await.unwrap();
        let secret = data_encoding::BASE32_NOPAD
            .decode(enrolment.secret.as_bytes())
            .unwrap();
        let event = AuditEvent::new(NOW, alice.id.clone(), "mfa.totp.enrol");
        let now = NOW;
        let confirmed = mfa::confirm_totp(
            &app,
            &alice,
            &enrolment.id,
            &totp::code(&secret, totp::step_at(now)),
            event,
            now,
        )
        .await
        .unwrap();
        assert_eq!(confirmed.recovery_codes.map(|c| c.len()), Some(10));

        let id = testing::request(&app, "").await;
        let attempt = Attempt {
            request_id: &id,
            username: "alice",
            password: PASSWORD,
            browser: Browser::default(),
        };
        let step = with_password(&app, &attempt, now * 1000).await.unwrap();
        let LoginStep::SecondFactor(challenge) = step else {
            panic!("no second step: {step:?}");
        };
        assert!(matches!(
            &challenge.ask,
            Ask::Code { method: Method::Totp, methods, .. } if methods == &[Method::Totp, Method::Recovery]
        ));
        let pending = challenge.pending.clone();
        // The confirming code's step is spent.
        let spent = totp::code(&secret, totp::step_at(now));
        let step = with_code(&app, &code(&pending, &spent), now * 1000)
            .await
            .unwrap();
        assert!(
            matches!(&step, LoginStep::SecondFactor(c) if c.error == Some(Retry::WrongCode)),
            "{step:?}"
        );
        let next = totp::code(&secret, totp::step_at(now) + 1);
        let step = with_code(&app, &code(&pending, &next), now * 1000 + 1)
            .await
            .unwrap();
        let LoginStep::SignedIn { session_id, .. } = step else {
            panic!("not signed in: {step:?}");
        };
        let session = crate::session::load(&app.ephemeral, &session_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.amr, ["pwd", "otp", "mfa"]);
        assert_eq!(session.acr, app.config.mfa.acr);
        // The pending sign-in is spent with it.
        let again = with_code(&app, &code(&pending, &next), now * 1000 + 2).await;
        assert!(matches!(again, Err(Refusal::Page(_))), "{again:?}");
    }

    #[tokio::test]
    async fn only_a_method_the_user_has_is_checked() {
        let app = testing::app().await;
        let alice = testing::alice_and_client(&app).await;
        let actor = crate::model::Actor::local("test");
        crate::admin::set_client_mfa(
            &app,
            testing::CLIENT,
            crate::model::MfaPolicy::Required,
            actor,
            NOW,
        )
        .await
        .unwrap();
        // Recovery codes left over, no factor: the client requires MFA, so
        // the sign-in asks to enrol, and a recovery code is no way around it.
        let codes = mfa::recovery::generate();
        let digests: Vec<_> = codes
            .iter()
            .map(|c| mfa::recovery::digest(&app.secrets, c))
            .collect();
        let event = AuditEvent::new(NOW, alice.id.clone(), "mfa.recovery.generate");
        app.store
            .replace_recovery_codes(&alice.id, &digests, &event)
            .await
            .unwrap();
        let id = testing::request(&app, "").await;
        let attempt = Attempt {
            request_id: &id,
            username: "alice",
            password: PASSWORD,
            browser: Browser::default(),
        };
        let step = with_password(&app, &attempt, NOW * 1000).await.unwrap();
        let LoginStep::SecondFactor(challenge) = step else {
            panic!("no second step: {step:?}");
        };
        assert!(matches!(challenge.ask, Ask::Enrol(_)));
        let mut recovery = code(&challenge.pending, &codes[0]);
        recovery.method = Method::Recovery;
        let refused = with_code(&app, &recovery, NOW * 1000).await;
        assert!(
            matches!(&refused, Err(Refusal::Page(m)) if m.contains("not one of your sign-in methods")),
            "{refused:?}"
        );
        assert_eq!(app.store.recovery_codes_left(&alice.id).await.unwrap(), 10);
    }
}
