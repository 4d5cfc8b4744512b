//! Signing in, as a state machine the HTTP layer only renders.
//!
//! A sign-in belongs to a pending authorization request. Each step checks
//! one thing the user presents and answers with a [`LoginStep`]: try again
//! (with the one message every failure shares), a second factor to give
//! ([`factor`]), or signed in. What the user has proven is a [`Proof`];
//! [`complete`] is the one way a proof becomes a browser session, so each
//! kind of factor is a step that produces a proof, without touching how
//! sessions begin.
//!
//! Passwords: failures are counted in sliding windows per account and per
//! source address (in the ephemeral store, so all replicas share them);
//! failed second-factor codes count in the same windows. Unknown
//! accounts, wrong passwords and disabled accounts look alike from
//! outside, in answer and in time.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::app::App;
use crate::authorize::{self, AuthRequest, Refusal};
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::model::{AuditEvent, MfaPolicy, User};
use crate::session::{self, Session};

pub mod challenge;
pub mod factor;
mod passkey;

pub use challenge::{Ask, Challenge};
pub use factor::{CodeAttempt, EnrolAttempt};
pub use passkey::{PasskeyAttempt, with_passkey};

/// The one message for every failed login.
pub const FAILED: &str = "Wrong username or password.";
pub const LOCKED: &str = "Too many failed sign-in attempts. Try again later.";
pub const WRONG_CODE: &str = "That code is not valid. Try again.";
pub const PASSKEY_REFUSED: &str =
    "That passkey was not accepted. Try again, or sign in with your password.";

/// The browser a sign-in step comes from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Browser<'a> {
    /// Its address (the client's, behind trusted proxies).
    pub source: Option<IpAddr>,
    /// Its `User-Agent`, shown on the account page beside the session.
    pub user_agent: Option<&'a str>,
    /// Its current session, if any: it ends when a new one begins (no
    /// session fixation).
    pub previous_session: Option<&'a str>,
    /// The cookie that ties an upstream identity waiting to be linked to
    /// this browser (`linking`).
    pub federation_binding: Option<&'a str>,
}

/// A password sign-in: what the login form carries, and where from.
#[derive(Debug)]
pub struct Attempt<'a> {
    pub request_id: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub browser: Browser<'a>,
}

/// Where a sign-in stands after a step.
#[derive(Debug)]
pub enum LoginStep {
    /// Show the login page again.
    Retry {
        client_name: String,
        /// The client's redirect URI (the page may send the browser there).
        redirect_uri: String,
        reason: Retry,
    },
    /// The password held; now a second factor, or enrolling one.
    SecondFactor(Challenge),
    /// A new session began; the browser takes its id and goes back to the
    /// authorization request.
    SignedIn {
        session_id: String,
        request_id: String,
        /// Shown once: the recovery codes of a factor enrolled in this
        /// sign-in (empty otherwise).
        recovery_codes: Vec<String>,
    },
}

/// Why the user is asked again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    Failed,
    Locked,
    /// A second-factor code that did not verify.
    WrongCode,
    /// A passwordless passkey that did not verify.
    Passkey,
}

impl Retry {
    pub fn message(self) -> &'static str {
        match self {
            Self::Failed => FAILED,
            Self::Locked => LOCKED,
            Self::WrongCode => WRONG_CODE,
            Self::Passkey => PASSKEY_REFUSED,
        }
    }
}

/// What the user proved in this sign-in, and how (RFC 8176 `amr`).
#[derive(Debug)]
pub struct Proof {
    pub user: User,
    pub amr: Vec<String>,
    pub acr: String,
}

/// The result of checking a password alone.
#[derive(Debug)]
enum Outcome {
    Success(User),
    Failed,
    Locked,
}

/// The password step of a sign-in for the request named in `attempt`.
pub async fn with_password(
    app: &App,
    attempt: &Attempt<'_>,
    now_ms: i64,
) -> Result<LoginStep, Refusal> {
    let req = authorize::load(app, attempt.request_id).await?;
    let client = if req.local {
        None
    } else {
        app.client(&req.client_id).await.map_err(OAuthError::from)?
    };
    let outcome = if attempt.username.is_empty() || attempt.password.is_empty() {
        Outcome::Failed
    } else {
        password(
            app,
            attempt.username,
            attempt.password,
            &req.client_id,
            attempt.browser.source,
            now_ms,
        )
        .await?
    };
    // The page names the client; a client gone meanwhile is named by id.
    let client_name = match &client {
        Some(c) => c.name.clone(),
        None if req.local => authorize::LOCAL_NAME.to_owned(),
        None => req.client_id.clone(),
    };
    let reason = match outcome {
        Outcome::Failed => Retry::Failed,
        Outcome::Locked => Retry::Locked,
        Outcome::Success(user) => {
            let first = vec!["pwd".to_owned()];
            return proven(
                app,
                attempt.request_id,
                req,
                client.as_deref(),
                client_name,
                user,
                first,
                &attempt.browser,
                now_ms / 1000,
            )
            .await;
        }
    };
    Ok(LoginStep::Retry {
        client_name,
        redirect_uri: req.redirect_uri,
        reason,
    })
}

/// A first factor held (`first` says which, RFC 8176): a second factor
/// next when the user has one or one is required (the user's, the
/// client's or the request's policy), else the session begins. Every
/// first factor goes on through here: a password, an upstream provider.
#[expect(
    clippy::too_many_arguments,
    reason = "the sign-in's whole context, passed once"
)]
pub async fn proven(
    app: &App,
    request_id: &str,
    req: AuthRequest,
    client: Option<&crate::model::Client>,
    client_name: String,
    user: User,
    first: Vec<String>,
    browser: &Browser<'_>,
    now: i64,
) -> Result<LoginStep, Refusal> {
    let methods = crate::mfa::methods(app, &user.id)
        .await
        .map_err(OAuthError::from)?;
    let required = user.mfa == MfaPolicy::Required
        || client.is_some_and(|c| c.mfa == MfaPolicy::Required)
        || req.wants_mfa(&app.config.mfa);
    if !methods.is_empty() || required {
        return challenge::begin(app, request_id, req, client_name, user, first, methods)
            .await
            .map(LoginStep::SecondFactor);
    }
    let proof = Proof {
        user,
        amr: first,
        acr: app.config.mfa.password_acr.clone(),
    };
    let mut req = req;
    let session_id = complete(app, request_id, &mut req, proof, browser, now).await?;
    Ok(LoginStep::SignedIn {
        session_id,
        request_id: request_id.to_owned(),
        recovery_codes: Vec::new(),
    })
}

/// The longest `User-Agent` a session keeps.
const USER_AGENT_KEPT: usize = 200;

/// Begins the session a proof earns: a new id at every sign-in (the
/// browser's previous session ends), remembered in the request so that
/// only this session satisfies its `prompt=login` or `max_age`.
pub async fn complete(
    app: &App,
    request_id: &str,
    req: &mut AuthRequest,
    proof: Proof,
    browser: &Browser<'_>,
    now: i64,
) -> Result<String, Refusal> {
    // The person proved this account after a federated sign-in found no
    // link: the upstream identity is linked to it now.
    if let Some(token) = req.pending_link.take() {
        crate::linking::link_held(app, &token, browser.federation_binding, &proof.user.id, now)
            .await?;
    }
    let lifetime = app.config.login.session_seconds;
    if let Some(old) = browser.previous_session {
        // A failure leaves an orphan that expires by itself.
        if let Ok(Some(ended)) = session::end(&app.ephemeral, old).await {
            crate::logout::ended(app, &[ended], now).await;
        }
    }
    let username = proof.user.username;
    let new = Session {
        user_id: proof.user.id,
        auth_time: now,
        amr: proof.amr,
        acr: proof.acr,
        sid: crate::crypto::random_token::<16>(),
        address: browser.source.map(|ip| ip.to_string()),
        user_agent: browser
            .user_agent
            .map(|ua| ua.chars().take(USER_AGENT_KEPT).collect()),
    };
    let session_id = session::create(&app.ephemeral, &new, Duration::from_secs(lifetime))
        .await
        .map_err(|e| OAuthError::unavailable(&e))?;
    app.metrics
        .sessions
        .add(now + i64::try_from(lifetime).unwrap_or(0));
    req.fresh_session = Some(session::handle(&session_id));
    authorize::save(app, request_id, req).await?;
    let event = AuditEvent::new(now, new.user_id.clone(), "login.success")
        .target(new.user_id.clone())
        .source(browser.source)
        .client(req.client_id.clone())
        .detail(json!({"username": mask(&username), "amr": new.amr}));
    app.audit.record(event).await.map_err(OAuthError::from)?;
    app.metrics.logins.with_label_values(&["success"]).inc();
    Ok(session_id)
}

/// `a***e`: enough to correlate log lines, not enough to read the name.
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    match chars.as_slice() {
        [] => String::new(),
        [one] => format!("{one}***"),
        [first, .., last] => format!("{first}***{last}"),
    }
}

fn account_key(username: &str) -> String {
    keys::login_failures_of_account(username)
}

/// Failures count per address; an IPv6 client holds a whole /64, so its
/// addresses count together.
fn address_key(ip: Option<IpAddr>) -> String {
    keys::login_failures_from(&ip.map_or_else(
        || "unknown".into(),
        |ip| bootstrap::net::bucket(ip, 64).to_string(),
    ))
}

async fn password(
    app: &App,
    username: &str,
    password: &str,
    client_id: &str,
    source: Option<IpAddr>,
    now_ms: i64,
) -> Result<Outcome, OAuthError> {
    let now = now_ms / 1000;
    let cfg = &app.config.login;
    let window = Duration::from_secs(cfg.window_seconds);
    let (account, address) = (account_key(username), address_key(source));
    // The attempt is counted before the password is checked, so parallel
    // guesses cannot all slip under the limit; a success clears it.
    let account_attempts = app.ephemeral.hit(&account, window, now_ms).await?;
    let address_failures = app.ephemeral.hits(&address, window, now_ms).await?;
    let audit = |action: &str| {
        AuditEvent::new(now, "anonymous", action)
            .source(source)
            .client(client_id)
            .detail(json!({"username": mask(username)}))
    };
    if account_attempts > cfg.max_failures_per_account
        || address_failures >= cfg.max_failures_per_address
    {
        app.audit.record(audit("login.locked").failed()).await?;
        app.metrics.logins.with_label_values(&["locked"]).inc();
        tracing::warn!(username = %mask(username), source = ?source, "login refused: locked out");
        return Ok(Outcome::Locked);
    }
    let user = app.store.user_by_username(username).await?;
    let passwords = app.passwords.clone();
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let given = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || passwords.verify(&given, stored.as_deref()))
        .await
        .map_err(|e| OAuthError::server_error(&e))?;
    match user {
        Some(user) if matches && !user.disabled => {
            app.ephemeral.delete(&account).await?;
            // The first factor held; `login.success` is recorded when the
            // session begins (a second factor may come first).
            let event = AuditEvent::new(now, user.id.clone(), "login.password")
                .target(user.id.clone())
                .source(source)
                .client(client_id)
                .detail(json!({"username": mask(username)}));
            app.audit.record(event).await?;
            rehash_if_needed(app, &user, password, now).await;
            Ok(Outcome::Success(user))
        }
        user => {
            app.ephemeral.hit(&address, window, now_ms).await?;
            // The owner sees failures on their account page.
            let mut event = audit("login.failure").failed();
            if let Some(u) = user {
                event = event.target(u.id);
            }
            app.audit.record(event).await?;
            app.metrics.logins.with_label_values(&["failure"]).inc();
            // Backoff: each failure on an account costs the next try more.
            let exponent = u32::try_from(account_attempts.saturating_sub(1).min(5)).unwrap_or(5);
            tokio::time::sleep(
                Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(2)),
            )
            .await;
            Ok(Outcome::Failed)
        }
    }
}

/// After a successful login, upgrade a hash made with older parameters.
/// A failure here only means the upgrade waits for the next login.
async fn rehash_if_needed(app: &App, user: &User, password: &str, now: i64) {
    let Some(hash) = &user.password_hash else {
        return;
    };
    if !app.passwords.needs_rehash(hash) {
        return;
    }
    if let Err(e) = crate::admin::set_password(
        app,
        user,
        password.to_owned(),
        crate::model::Actor::local("system"),
        now,
    )
    .await
    {
        tracing::warn!(error = %e, "password rehash failed");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{self, NOW, PASSWORD};

    fn attempt<'a>(request_id: &'a str, password: &'a str) -> Attempt<'a> {
        Attempt {
            request_id,
            username: "alice",
            password,
            browser: Browser {
                source: Some("192.0.2.7".parse().unwrap()),
                user_agent: Some("Test/1.0"),
                previous_session: None,
                federation_binding: None,
            },
        }
    }

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask("alice"), "a***e");
        assert_eq!(mask("a"), "a***");
        assert_eq!(mask(""), "");
        assert_eq!(mask("zoë"), "z***ë");
    }

    #[tokio::test]
    async fn a_password_sign_in_begins_a_fresh_session_bound_to_the_request() {
        let app = testing::app().await;
        let alice = testing::alice_and_client(&app).await;
        let id = testing::request(&app, "").await;
        let step = with_password(&app, &attempt(&id, "wrong password"), NOW * 1000)
            .await
            .unwrap();
        let LoginStep::Retry {
            client_name,
            redirect_uri,
            reason,
        } = step
        else {
            panic!("a wrong password signed in: {step:?}");
        };
        assert_eq!((client_name.as_str(), reason), ("The App", Retry::Failed));
        assert_eq!(redirect_uri, testing::REDIRECT);
        assert_eq!(reason.message(), FAILED);

        let old = session::create(
            &app.ephemeral,
            &testing::session(&alice.id, NOW - 100),
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        let mut good = attempt(&id, PASSWORD);
        good.browser.previous_session = Some(&old);
        let step = with_password(&app, &good, NOW * 1000).await.unwrap();
        let LoginStep::SignedIn {
            session_id,
            request_id,
            ..
        } = step
        else {
            panic!("the right password did not sign in: {step:?}");
        };
        assert_eq!(request_id, id);
        assert_ne!(session_id, old);
        let session = session::load(&app.ephemeral, &session_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(session.user_id, alice.id);
        assert_eq!(
            (session.auth_time, session.amr),
            (NOW, vec!["pwd".to_owned()])
        );
        assert_eq!(
            (session.address.as_deref(), session.user_agent.as_deref()),
            (Some("192.0.2.7"), Some("Test/1.0"))
        );
        assert!(
            session::load(&app.ephemeral, &old).await.unwrap().is_none(),
            "no fixation"
        );
        let req = authorize::load(&app, &id).await.unwrap();
        assert_eq!(req.fresh_session, Some(session::handle(&session_id)));
    }

    #[tokio::test]
    async fn failures_lock_the_account_even_for_the_right_password() {
        let app = testing::app_with(|c| c.login.max_failures_per_account = 1).await;
        testing::alice_and_client(&app).await;
        let id = testing::request(&app, "").await;
        let first = with_password(&app, &attempt(&id, "wrong password"), NOW * 1000).await;
        assert!(matches!(
            first,
            Ok(LoginStep::Retry {
                reason: Retry::Failed,
                ..
            })
        ));
        let second = with_password(&app, &attempt(&id, PASSWORD), NOW * 1000 + 1).await;
        assert!(
            matches!(
                second,
                Ok(LoginStep::Retry {
                    reason: Retry::Locked,
                    ..
                })
            ),
            "{second:?}"
        );
        // The window slides past: the right password works again.
        let later = (NOW + i64::try_from(app.config.login.window_seconds).unwrap() + 1) * 1000;
        let third = with_password(&app, &attempt(&id, PASSWORD), later).await;
        assert!(matches!(third, Ok(LoginStep::SignedIn { .. })), "{third:?}");
    }

    #[tokio::test]
    async fn empty_fields_fail_and_an_unknown_request_is_refused() {
        let app = testing::app().await;
        testing::alice_and_client(&app).await;
        let id = testing::request(&app, "").await;
        let mut empty = attempt(&id, "");
        let step = with_password(&app, &empty, NOW * 1000).await.unwrap();
        assert!(matches!(
            step,
            LoginStep::Retry {
                reason: Retry::Failed,
                ..
            }
        ));
        empty.request_id = "no-such-request";
        empty.password = PASSWORD;
        let refused = with_password(&app, &empty, NOW * 1000).await;
        assert!(
            matches!(&refused, Err(Refusal::Page(m)) if m.contains("expired")),
            "{refused:?}"
        );
    }
}
