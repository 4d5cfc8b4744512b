//! Second factors: which methods a user has, and checking one. Domain
//! logic only (no HTTP, no SQL); `now` is a parameter.
//!
//! A TOTP secret is sealed at rest to its factor's id; a code is spent by
//! a conditional update of the factor's last step, so it works once even
//! across replicas. Recovery codes are keyed digests spent the same way.
//! Every check is counted in `auth_mfa_verifications_total{method,status}`.

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::model::{AuditEvent, FactorKind, SecondFactor, User};
use crate::store::StoreError;

pub mod recovery;
pub mod sms;
pub mod totp;
pub mod webauthn;

mod enrol;

pub use enrol::{Confirmed, Enrolment, begin_totp, check_label, confirm_totp, pending_totp};

/// What can go wrong enrolling or checking a factor.
#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("{0}")]
    Invalid(String),
    #[error("this enrolment has expired; start again")]
    Expired,
    #[error("that code is not right; check the app's clock and try the current code")]
    WrongCode,
    /// A service we depend on (the SMS webhook) did not answer.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Ephemeral(#[from] crate::ephemeral::EphemeralError),
}

/// A challenge the server started for a page: its id (a hidden field of
/// the page's form) and what the page shows or hands to the browser (the
/// WebAuthn options as JSON, the masked number an SMS went to).
#[derive(Debug, Clone)]
pub struct Ceremony {
    pub id: String,
    pub options: String,
}

/// A way to prove the second factor, strongest first in [`Method::ALL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[serde(rename = "webauthn")]
    WebAuthn,
    Totp,
    Sms,
    Recovery,
}

impl Method {
    pub const ALL: [Self; 4] = [Self::WebAuthn, Self::Totp, Self::Sms, Self::Recovery];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebAuthn => "webauthn",
            Self::Totp => "totp",
            Self::Sms => "sms",
            Self::Recovery => "recovery",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// How the login page names it.
    pub fn title(self) -> &'static str {
        match self {
            Self::WebAuthn => "Passkey or security key",
            Self::Totp => "Authenticator app",
            Self::Sms => "Text message",
            Self::Recovery => "Recovery code",
        }
    }
}

/// The outcome of checking one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Verified; what it adds to the sign-in's RFC 8176 `amr`.
    Accepted(&'static [&'static str]),
    /// Not a valid code for this user now.
    Refused,
    /// A valid code of a TOTP step already spent (RFC 6238 §5.2), or a
    /// WebAuthn counter that did not advance (a cloned key).
    Replayed,
}

/// Both kinds of code are one-time passwords.
const OTP: &[&str] = &["otp"];

/// The sealing context of a factor's secret: a secret copied to another
/// row does not open.
pub fn secret_context(factor_id: &str) -> String {
    format!("second-factor:{factor_id}")
}

/// The methods `user_id` can use now, strongest first (empty: none
/// enrolled). Recovery codes count only beside a factor.
pub async fn methods(app: &App, user_id: &str) -> Result<Vec<Method>, StoreError> {
    let factors = app.store.factors(user_id).await?;
    let mut out = Vec::new();
    if factors.iter().any(|f| f.kind == FactorKind::WebAuthn) {
        out.push(Method::WebAuthn);
    }
    if factors.iter().any(|f| f.kind == FactorKind::Totp) {
        out.push(Method::Totp);
    }
    if app.sms.enabled() && factors.iter().any(|f| f.kind == FactorKind::Sms) {
        out.push(Method::Sms);
    }
    if !out.is_empty() && app.store.recovery_codes_left(user_id).await? > 0 {
        out.push(Method::Recovery);
    }
    Ok(out)
}

/// What the user gave: a code, or a WebAuthn answer to `ceremony`.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub code: &'a str,
    pub ceremony: &'a str,
}

/// Checks `answer` as `user`'s `method` at `now`, spending it if valid.
/// `audit` describes the attempt (source, client) for the recovery-code
/// use that is audited with the spend itself.
pub async fn check(
    app: &App,
    user: &User,
    method: Method,
    answer: Answer<'_>,
    audit: AuditEvent,
    now: i64,
) -> Result<Check, MfaError> {
    let given = answer.code;
    let result = match method {
        Method::WebAuthn => {
            webauthn::check_assertion(app, user, answer.ceremony, answer.code, now).await?
        }
        Method::Sms => {
            match sms::check_code(app, &user.id, answer.ceremony, answer.code, now).await? {
                Some(sms::Purpose::SignIn) => Check::Accepted(&["sms"]),
                _ => Check::Refused,
            }
        }
        Method::Totp => check_totp(app, &app.store.factors(&user.id).await?, given, now).await?,
        Method::Recovery => {
            if recovery::well_formed(given) {
                let digest = recovery::digest(&app.secrets, given);
                let left = app.store.recovery_codes_left(&user.id).await?;
                let event = audit
                    .detail(json!({"method": "recovery", "left": left - 1}))
                    .target(user.id.clone());
                if app
                    .store
                    .spend_recovery_code(&user.id, &digest, &event)
                    .await?
                {
                    Check::Accepted(OTP)
                } else {
                    Check::Refused
                }
            } else {
                Check::Refused
            }
        }
    };
    let status = match result {
        Check::Accepted(_) => "success",
        Check::Refused => "failure",
        Check::Replayed => "replay",
    };
    app.metrics
        .mfa_verifications
        .with_label_values(&[method.as_str(), status])
        .inc();
    Ok(result)
}

async fn check_totp(
    app: &App,
    factors: &[SecondFactor],
    given: &str,
    now: i64,
) -> Result<Check, StoreError> {
    let mut replayed = false;
    for factor in factors.iter().filter(|f| f.kind == FactorKind::Totp) {
        let Some(secret) = factor
            .sealed_secret
            .as_deref()
            .and_then(|s| app.sealer.open(&secret_context(&factor.id), s))
        else {
            tracing::error!(factor = %factor.id, "TOTP secret does not open with this master key");
            continue;
        };
        let Some(step) = totp::matching_step(&secret, given, now) else {
            continue;
        };
        if app.store.spend_totp_step(&factor.id, step, now).await? {
            return Ok(Check::Accepted(OTP));
        }
        replayed = true;
    }
    Ok(if replayed {
        Check::Replayed
    } else {
        Check::Refused
    })
}

/// Adds `factor` for `user`, audited as `audit` with what names the
/// factor and `detail`; a user's first factor comes with recovery codes.
async fn enrolled(
    app: &App,
    user: &User,
    factor: &SecondFactor,
    audit: AuditEvent,
    detail: serde_json::Value,
) -> Result<Confirmed, MfaError> {
    let first = app.store.factors(&user.id).await?.is_empty();
    // The event's own detail (the masked username at sign-in) is kept.
    let mut fields =
        json!({"factor": factor.id, "kind": factor.kind.as_str(), "label": factor.label});
    for extra in [audit.detail.clone(), detail] {
        if let (Some(all), serde_json::Value::Object(more)) = (fields.as_object_mut(), extra) {
            all.extend(more);
        }
    }
    let event = audit.clone().target(user.id.clone()).detail(fields);
    app.store.add_factor(factor, &event).await?;
    let recovery_codes = if first {
        let mut event = audit;
        event.action = "mfa.recovery.generate".into();
        Some(new_recovery_codes(app, user, event).await?)
    } else {
        None
    };
    Ok(Confirmed { recovery_codes })
}

/// New recovery codes for `user` (the old ones stop working); returned
/// once, to be shown once.
pub async fn new_recovery_codes(
    app: &App,
    user: &User,
    audit: AuditEvent,
) -> Result<Vec<String>, StoreError> {
    let codes = recovery::generate();
    let digests: Vec<Vec<u8>> = codes
        .iter()
        .map(|c| recovery::digest(&app.secrets, c))
        .collect();
    let event = audit
        .target(user.id.clone())
        .detail(json!({"count": codes.len()}));
    app.store
        .replace_recovery_codes(&user.id, &digests, &event)
        .await?;
    Ok(codes)
}
