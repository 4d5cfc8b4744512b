//! The second step's page: a sign-in pending between its steps (in the
//! ephemeral store under a random token the browser holds in a cookie,
//! so a request id alone, which is in the page, cannot finish someone
//! else's sign-in), and what it asks for: the strongest factor the user
//! has, another they chose, or enrolment when MFA is required and none is
//! enrolled.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Retry;
use crate::app::App;
use crate::authorize::{self, AuthRequest, Refusal};
use crate::crypto::random_token;
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::mfa::{self, Ceremony, Enrolment, Method, MfaError};
use crate::model::User;

pub(super) const EXPIRED: &str =
    "This sign-in has expired. Go back to the application and start again.";

/// What the second-factor page shows.
#[derive(Debug)]
pub struct Challenge {
    /// The pending sign-in's token, for the browser's cookie.
    pub pending: String,
    pub client_name: String,
    pub redirect_uri: String,
    pub ask: Ask,
    pub error: Option<Retry>,
}

/// What the user is asked for.
#[derive(Debug)]
pub enum Ask {
    /// A code of `method`; `methods` are all the user has, strongest first.
    /// For WebAuthn, the ceremony the page runs.
    Code {
        method: Method,
        methods: Vec<Method>,
        ceremony: Option<Ceremony>,
    },
    /// MFA is required and nothing is enrolled: enrol an app now.
    Enrol(Enrolment),
}

/// A sign-in between its steps.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Pending {
    pub(super) request_id: String,
    pub(super) user_id: String,
    pub(super) username: String,
    pub(super) client_name: String,
    /// What the first step proved (`pwd`).
    pub(super) amr: Vec<String>,
    /// The SMS code last sent for this sign-in: the page shown again
    /// (after a wrong code, or reloaded) asks for it rather than sending
    /// another.
    #[serde(default)]
    pub(super) sms_code: Option<String>,
}

impl Pending {
    /// Remembers the SMS code `ask` sent; whether that changed anything.
    fn remember(&mut self, ask: &Ask) -> bool {
        if let Ask::Code {
            method: Method::Sms,
            ceremony: Some(sent),
            ..
        } = ask
            && self.sms_code.as_deref() != Some(&sent.id)
        {
            self.sms_code = Some(sent.id.clone());
            return true;
        }
        false
    }

    async fn save(&self, app: &App, token: &str) -> Result<(), Refusal> {
        let bytes = serde_json::to_vec(self).map_err(|e| OAuthError::server_error(&e))?;
        let ttl = Duration::from_secs(app.config.mfa.pending_seconds);
        app.ephemeral
            .put(&keys::pending_login(token), &bytes, ttl)
            .await
            .map_err(OAuthError::from)?;
        Ok(())
    }
}

/// After the first factor: remember the sign-in and ask for the second.
pub(super) async fn begin(
    app: &App,
    request_id: &str,
    req: AuthRequest,
    client_name: String,
    user: User,
    amr: Vec<String>,
    methods: Vec<Method>,
) -> Result<Challenge, Refusal> {
    let token = random_token::<32>();
    let mut pending = Pending {
        request_id: request_id.to_owned(),
        user_id: user.id.clone(),
        username: user.username.clone(),
        client_name,
        amr,
        sms_code: None,
    };
    let ask = ask(app, &user, methods, None, None).await?;
    pending.remember(&ask);
    pending.save(app, &token).await?;
    Ok(Challenge {
        pending: token,
        client_name: pending.client_name,
        redirect_uri: req.redirect_uri,
        ask,
        error: None,
    })
}

/// A signed-in user whose request needs a second factor the session has
/// not proven (step-up): the same second step, on top of the session.
pub async fn step_up(
    app: &App,
    request_id: &str,
    client_name: String,
    user: User,
    amr: Vec<String>,
) -> Result<Challenge, Refusal> {
    let req = authorize::load(app, request_id).await?;
    let methods = mfa::methods(app, &user.id)
        .await
        .map_err(OAuthError::from)?;
    begin(app, request_id, req, client_name, user, amr, methods).await
}

/// What to ask `user` for: `chosen` if they have it, else their strongest
/// method (or enrolment when they have none). An SMS code still live
/// (`sms_code`) is asked for again rather than sent anew.
async fn ask(
    app: &App,
    user: &User,
    methods: Vec<Method>,
    chosen: Option<Method>,
    sms_code: Option<&str>,
) -> Result<Ask, Refusal> {
    match methods.first() {
        None => mfa::begin_totp(app, user, "Authenticator app")
            .await
            .map(Ask::Enrol)
            .map_err(refusal),
        Some(&strongest) => {
            let method = chosen.filter(|m| methods.contains(m)).unwrap_or(strongest);
            let ceremony = match method {
                Method::WebAuthn => mfa::webauthn::begin_assertion(app, user)
                    .await
                    .map_err(refusal)?,
                Method::Sms => {
                    let now_ms = crate::app::now_ms();
                    let live = match sms_code {
                        Some(id) => mfa::sms::still_live(app, &user.id, id, now_ms / 1000)
                            .await
                            .map_err(refusal)?,
                        None => None,
                    };
                    match live {
                        Some(sent) => Some(sent),
                        None => Some(
                            mfa::sms::begin_sign_in(app, user, now_ms)
                                .await
                                .map_err(refusal)?,
                        ),
                    }
                }
                Method::Totp | Method::Recovery => None,
            };
            Ok(Ask::Code {
                method,
                methods,
                ceremony,
            })
        }
    }
}

pub(super) fn refusal(e: MfaError) -> Refusal {
    match e {
        MfaError::Store(e) => OAuthError::from(e).into(),
        MfaError::Ephemeral(e) => OAuthError::from(e).into(),
        MfaError::Unavailable(m) => Refusal::Failed {
            status: 503,
            message: m,
        },
        other => Refusal::Page(other.to_string()),
    }
}

pub(super) async fn load(app: &App, token: &str) -> Result<(Pending, User, AuthRequest), Refusal> {
    let pending: Pending = app
        .ephemeral
        .get(&keys::pending_login(token))
        .await
        .map_err(OAuthError::from)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Refusal::Page(EXPIRED.into()))?;
    let req = authorize::load(app, &pending.request_id).await?;
    let user = app
        .store
        .user_by_id(&pending.user_id)
        .await
        .map_err(OAuthError::from)?
        .filter(|u| !u.disabled)
        .ok_or_else(|| Refusal::Page(EXPIRED.into()))?;
    Ok((pending, user, req))
}

/// The second-factor page of a pending sign-in, for `chosen` (another
/// method the user picked) or the strongest; `resend`: a new SMS code even
/// if the last one is still live.
pub async fn challenge(
    app: &App,
    token: &str,
    chosen: Option<Method>,
    resend: bool,
) -> Result<Challenge, Refusal> {
    let (mut pending, user, req) = load(app, token).await?;
    let methods = mfa::methods(app, &user.id)
        .await
        .map_err(OAuthError::from)?;
    let sent = pending.sms_code.as_deref().filter(|_| !resend);
    let ask = ask(app, &user, methods, chosen, sent).await?;
    if pending.remember(&ask) {
        pending.save(app, token).await?;
    }
    Ok(Challenge {
        pending: token.to_owned(),
        ask,
        client_name: pending.client_name,
        redirect_uri: req.redirect_uri,
        error: None,
    })
}
