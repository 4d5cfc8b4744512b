//! Passwordless sign-in with a discoverable passkey: the key names its
//! account (credential id and user handle must agree), user verification
//! is required, and a refused key counts toward the lockout windows like
//! a wrong password.

use std::time::Duration;

use serde_json::json;

use super::{Browser, LoginStep, Proof, Retry, account_key, address_key, complete, mask};
use crate::app::App;
use crate::authorize::{self, Refusal};
use crate::error::OAuthError;
use crate::mfa::Check;
use crate::mfa::webauthn::{self, Discovered};
use crate::model::AuditEvent;

/// The login page's passkey form.
#[derive(Debug)]
pub struct PasskeyAttempt<'a> {
    pub request_id: &'a str,
    pub ceremony: &'a str,
    pub credential: &'a str,
    pub browser: Browser<'a>,
}

pub async fn with_passkey(
    app: &App,
    attempt: &PasskeyAttempt<'_>,
    now_ms: i64,
) -> Result<LoginStep, Refusal> {
    let now = now_ms / 1000;
    let mut req = authorize::load(app, attempt.request_id).await?;
    let found = webauthn::finish_discoverable(app, attempt.ceremony, attempt.credential, now)
        .await
        .map_err(|e| Refusal::from(OAuthError::server_error(&e)))?;
    let cfg = &app.config.login;
    let window = Duration::from_secs(cfg.window_seconds);
    let status = |s: &str| {
        app.metrics
            .mfa_verifications
            .with_label_values(&["webauthn", s])
            .inc();
    };
    let reason = match found {
        Some(Discovered {
            user,
            request_id,
            check: Check::Accepted(amr),
        }) if request_id == attempt.request_id => {
            let failures = app
                .ephemeral
                .hits(&account_key(&user.username), window, now_ms)
                .await
                .map_err(OAuthError::from)?;
            if failures >= cfg.max_failures_per_account {
                status("locked");
                Retry::Locked
            } else {
                status("success");
                let event = AuditEvent::new(now, user.id.clone(), "login.passkey.success")
                    .target(user.id.clone())
                    .source(attempt.browser.source)
                    .client(req.client_id.clone())
                    .detail(json!({"username": mask(&user.username), "method": "webauthn"}));
                app.audit.record(event).await.map_err(OAuthError::from)?;
                let mut proved: Vec<String> = amr.iter().map(|a| (*a).to_owned()).collect();
                proved.push("mfa".into());
                let proof = Proof {
                    user,
                    amr: proved,
                    acr: app.config.mfa.acr.clone(),
                };
                let session_id = complete(
                    app,
                    attempt.request_id,
                    &mut req,
                    proof,
                    &attempt.browser,
                    now,
                )
                .await?;
                return Ok(LoginStep::SignedIn {
                    session_id,
                    request_id: attempt.request_id.to_owned(),
                    recovery_codes: Vec::new(),
                });
            }
        }
        other => {
            let replayed = other.as_ref().is_some_and(|d| d.check == Check::Replayed);
            status(if replayed { "replay" } else { "failure" });
            if let Some(d) = &other {
                app.ephemeral
                    .hit(&account_key(&d.user.username), window, now_ms)
                    .await
                    .map_err(OAuthError::from)?;
            }
            app.ephemeral
                .hit(&address_key(attempt.browser.source), window, now_ms)
                .await
                .map_err(OAuthError::from)?;
            let (actor, username) = other
                .as_ref()
                .map_or(("anonymous".to_owned(), String::new()), |d| {
                    (d.user.id.clone(), mask(&d.user.username))
                });
            let event = AuditEvent::new(now, actor, "login.passkey.failure")
                .source(attempt.browser.source)
                .client(req.client_id.clone())
                .detail(json!({"username": username, "method": "webauthn"}))
                .failed();
            let event = match &other {
                Some(d) => event.target(d.user.id.clone()),
                None => event,
            };
            app.audit.record(event).await.map_err(OAuthError::from)?;
            Retry::Passkey
        }
    };
    let client_name = match app.client(&req.client_id).await {
        Ok(Some(c)) => c.name.clone(),
        _ if req.local => authorize::LOCAL_NAME.to_owned(),
        _ => req.client_id.clone(),
    };
    Ok(LoginStep::Retry {
        client_name,
        redirect_uri: req.redirect_uri,
        reason,
    })
}
