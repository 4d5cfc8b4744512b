//! What a signed-in user can do to their own account: change the password
//! (proving the current one), add (authenticator apps, passkeys, phones),
//! rename and remove second factors, make new recovery codes, see and end
//! their sessions, and read their recent sign-ins. Changes that
//! could lock the owner out or let a thief stay in (adding or removing a
//! factor, new recovery codes) need a recent sign-in. Domain logic only;
//! `now` is a parameter; every change is audited with the user as actor.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::app::App;
use crate::error::Error;
use crate::login::mask;
use crate::mfa::webauthn;
use crate::mfa::{self, Ceremony, Confirmed, Enrolment, MfaError};
use crate::model::{Actor, AuditEvent, SecondFactor, User};
use crate::session::{self, Session};
use crate::store::StoreError;

/// How many recent sign-ins the page lists.
const SIGN_INS_SHOWN: i64 = 10;

/// Who acts on the account, and from where.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    pub user: &'a User,
    pub session: &'a Session,
    /// The handle of that session (see [`session::handle`]).
    pub handle: &'a str,
    pub source: Option<IpAddr>,
}

impl Holder<'_> {
    fn event(&self, now: i64, action: &str) -> AuditEvent {
        AuditEvent::new(now, self.user.id.clone(), action)
            .target(self.user.id.clone())
            .source(self.source)
    }

    /// Whether the session signed in recently enough for a sensitive change.
    pub fn recent(&self, app: &App, now: i64) -> bool {
        now - self.session.auth_time <= app.config.mfa.recent_seconds
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The change needs a fresh sign-in first.
    #[error("sign in again to make this change")]
    NeedsRecentSignIn,
    #[error("the current password is not right")]
    WrongPassword,
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Mfa(#[from] MfaError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ephemeral(#[from] crate::ephemeral::EphemeralError),
    #[error(transparent)]
    Audit(#[from] crate::audit::AuditError),
    #[error(transparent)]
    Other(#[from] Error),
}

/// What the account page shows.
#[derive(Debug)]
pub struct Overview {
    pub factors: Vec<SecondFactor>,
    pub recovery_left: i64,
    /// Live sessions with their handles, oldest first.
    pub sessions: Vec<(String, Session)>,
    pub sign_ins: Vec<AuditEvent>,
    /// Accounts at upstream providers that sign in here.
    pub links: Vec<crate::model::FederatedLink>,
}

pub async fn overview(app: &App, user: &User) -> Result<Overview, AccountError> {
    Ok(Overview {
        factors: app.store.factors(&user.id).await?,
        recovery_left: app.store.recovery_codes_left(&user.id).await?,
        sessions: session::of_user(&app.ephemeral, &user.id).await?,
        sign_ins: app.store.sign_ins(&user.id, SIGN_INS_SHOWN).await?,
        links: app.store.federated_links(&user.id).await?,
    })
}

/// Removes the link to an upstream account: it no longer signs in here.
/// The last way to sign in of an account without a password stays.
pub async fn unlink(
    app: &App,
    holder: &Holder<'_>,
    provider: &str,
    subject: &str,
    now: i64,
) -> Result<(), AccountError> {
    needs_recent(app, holder, now)?;
    let links = app.store.federated_links(&holder.user.id).await?;
    if holder.user.password_hash.is_none() && links.len() <= 1 {
        return Err(AccountError::Invalid(
            "this is the only way you sign in here; it cannot be removed".into(),
        ));
    }
    let event = holder
        .event(now, "federation.unlink")
        .detail(json!({"provider": provider}));
    Ok(app
        .store
        .unlink_identity(&holder.user.id, provider, subject, &event)
        .await?)
}

/// Ends one of the holder's sessions (this one too: that signs out here).
pub async fn end_session(
    app: &App,
    holder: &Holder<'_>,
    handle: &str,
    now: i64,
) -> Result<(), AccountError> {
    let Some(ended) = session::end_by_handle(&app.ephemeral, &holder.user.id, handle).await? else {
        return Err(AccountError::Invalid(
            "that session has already ended".into(),
        ));
    };
    crate::logout::ended(app, std::slice::from_ref(&ended), now).await;
    let event = holder
        .event(now, "session.end")
        .detail(json!({"started": ended.auth_time, "address": ended.address}));
    app.audit.record(event).await?;
    Ok(())
}

/// Ends every session of the holder's but this one; how many ended.
pub async fn end_other_sessions(
    app: &App,
    holder: &Holder<'_>,
    now: i64,
) -> Result<usize, AccountError> {
    let ended = session::end_all(&app.ephemeral, &holder.user.id, Some(holder.handle)).await?;
    crate::logout::ended(app, &ended, now).await;
    if !ended.is_empty() {
        let event = holder
            .event(now, "session.end")
            .detail(json!({"others": ended.len()}));
        app.audit.record(event).await?;
    }
    Ok(ended.len())
}

fn needs_recent(app: &App, holder: &Holder<'_>, now: i64) -> Result<(), AccountError> {
    if holder.recent(app, now) {
        Ok(())
    } else {
        Err(AccountError::NeedsRecentSignIn)
    }
}

/// A new password, given the current one, and (`sign_out_others`) every
/// other session ended, as one who suspects a thief wants. A wrong
/// current password counts toward the account's lockout window, as at
/// sign-in.
pub async fn change_password(
    app: &App,
    holder: &Holder<'_>,
    current: &str,
    new: &str,
    sign_out_others: bool,
    now_ms: i64,
) -> Result<(), AccountError> {
    let now = now_ms / 1000;
    let window = Duration::from_secs(app.config.login.window_seconds);
    let account = crate::ephemeral::keys::login_failures_of_account(&holder.user.username);
    let attempts = app
        .ephemeral
        .hit(&account, window, now_ms)
        .await
        .map_err(Error::from)?;
    let passwords = app.passwords.clone();
    let stored = holder.user.password_hash.clone();
    let given = current.to_owned();
    let matches = tokio::task::spawn_blocking(move || passwords.verify(&given, stored.as_deref()))
        .await
        .map_err(|e| AccountError::Invalid(format!("password check stopped: {e}")))?;
    if !matches || attempts > app.config.login.max_failures_per_account {
        let event = holder
            .event(now, "user.password")
            .failed()
            .detail(json!({"username": mask(&holder.user.username), "reason": "current password"}));
        app.audit.record(event).await?;
        return Err(AccountError::WrongPassword);
    }
    let _ = app.ephemeral.delete(&account).await;
    let actor = Actor {
        name: &holder.user.id,
        source: holder.source,
    };
    crate::admin::set_password(app, holder.user, new.to_owned(), actor, now)
        .await
        .map_err(|e| match e {
            Error::Invalid(m) => AccountError::Invalid(m),
            other => AccountError::Other(other),
        })?;
    if sign_out_others {
        end_other_sessions(app, holder, now).await?;
    }
    Ok(())
}

/// Starts adding an authenticator app named `label`.
pub async fn begin_totp(
    app: &App,
    holder: &Holder<'_>,
    label: &str,
    now: i64,
) -> Result<Enrolment, AccountError> {
    needs_recent(app, holder, now)?;
    Ok(mfa::begin_totp(app, holder.user, label).await?)
}

/// Confirms the app being added with its first code.
pub async fn confirm_totp(
    app: &App,
    holder: &Holder<'_>,
    enrolment: &str,
    code: &str,
    now: i64,
) -> Result<Confirmed, AccountError> {
    let event = holder.event(now, "mfa.totp.enrol");
    Ok(mfa::confirm_totp(app, holder.user, enrolment, code, event, now).await?)
}

/// Starts adding a passkey or security key named `label`.
pub async fn begin_passkey(
    app: &App,
    holder: &Holder<'_>,
    label: &str,
    now: i64,
) -> Result<Ceremony, AccountError> {
    needs_recent(app, holder, now)?;
    Ok(webauthn::begin_registration(app, holder.user, label).await?)
}

/// Finishes adding the passkey with the browser's answer.
pub async fn confirm_passkey(
    app: &App,
    holder: &Holder<'_>,
    ceremony: &str,
    credential: &str,
    now: i64,
) -> Result<Confirmed, AccountError> {
    let event = holder.event(now, "mfa.webauthn.register");
    Ok(webauthn::finish_registration(app, holder.user, ceremony, credential, event, now).await?)
}

/// Starts adding a phone: a code goes to `phone`.
pub async fn begin_sms(
    app: &App,
    holder: &Holder<'_>,
    label: &str,
    phone: &str,
    now_ms: i64,
) -> Result<Ceremony, AccountError> {
    needs_recent(app, holder, now_ms / 1000)?;
    Ok(mfa::sms::begin_enrolment(app, holder.user, label, phone, now_ms).await?)
}

/// Adds the phone with the code it received.
pub async fn confirm_sms(
    app: &App,
    holder: &Holder<'_>,
    ceremony: &str,
    code: &str,
    now: i64,
) -> Result<Confirmed, AccountError> {
    let event = holder.event(now, "mfa.sms.enrol");
    Ok(mfa::sms::confirm_enrolment(app, holder.user, ceremony, code, event, now).await?)
}

pub async fn rename_factor(
    app: &App,
    holder: &Holder<'_>,
    id: &str,
    label: &str,
    now: i64,
) -> Result<(), AccountError> {
    let label = mfa::check_label(label)?;
    let event = holder
        .event(now, "mfa.factor.rename")
        .detail(json!({"factor": id, "label": label}));
    Ok(app
        .store
        .rename_factor(&holder.user.id, id, &label, &event)
        .await?)
}

pub async fn remove_factor(
    app: &App,
    holder: &Holder<'_>,
    id: &str,
    now: i64,
) -> Result<(), AccountError> {
    needs_recent(app, holder, now)?;
    let event = holder
        .event(now, "mfa.factor.remove")
        .detail(json!({"factor": id}));
    Ok(app.store.remove_factor(&holder.user.id, id, &event).await?)
}

/// Ten new recovery codes; the old ones stop working.
pub async fn new_recovery_codes(
    app: &App,
    holder: &Holder<'_>,
    now: i64,
) -> Result<Vec<String>, AccountError> {
    needs_recent(app, holder, now)?;
    if app.store.factors(&holder.user.id).await?.is_empty() {
        return Err(AccountError::Invalid(
            "recovery codes stand in for a second factor: add one first".into(),
        ));
    }
    let event = holder.event(now, "mfa.recovery.generate");
    Ok(mfa::new_recovery_codes(app, holder.user, event).await?)
}
