//! Enrolling an authenticator app: a fresh secret is shown (QR code and
//! text), kept sealed in the ephemeral store, and becomes a factor only
//! when a first code from the app confirms it. That code's step counts as
//! spent. A user's first factor comes with recovery codes.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{MfaError, secret_context, totp};
use crate::app::App;
use crate::crypto::{random_bytes, random_token};
use crate::ephemeral::keys;
use crate::model::{AuditEvent, FactorKind, SecondFactor, User};

/// Longest name a user may give a factor.
const MAX_LABEL: usize = 64;

/// What the enrolment page shows.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// Names the pending enrolment in the confirming form.
    pub id: String,
    pub label: String,
    /// The secret for manual entry (base32).
    pub secret: String,
    /// The `otpauth://` URI the QR code holds.
    pub uri: String,
    /// The QR code as inline SVG.
    pub qr_svg: String,
}

/// A confirmed enrolment.
#[derive(Debug)]
pub struct Confirmed {
    /// Shown once when this was the user's first factor.
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct Pending {
    user_id: String,
    label: String,
    sealed_secret: Vec<u8>,
}

fn pending_context(id: &str) -> String {
    format!("totp-enrolment:{id}")
}

/// A name for a factor: trimmed, 1–64 printable characters.
pub fn check_label(label: &str) -> Result<String, MfaError> {
    let label = label.trim();
    if label.is_empty() || label.chars().count() > MAX_LABEL || label.chars().any(char::is_control)
    {
        return Err(MfaError::Invalid(format!(
            "a factor's name must be 1 to {MAX_LABEL} printable characters"
        )));
    }
    Ok(label.to_owned())
}

/// Starts enrolling an authenticator app named `label` for `user`.
pub async fn begin_totp(app: &App, user: &User, label: &str) -> Result<Enrolment, MfaError> {
    let label = check_label(label)?;
    if app
        .store
        .factors(&user.id)
        .await?
        .iter()
        .any(|f| f.label == label)
    {
        return Err(MfaError::Invalid(format!(
            "you already have a factor named `{label}`"
        )));
    }
    let id = random_token::<18>();
    let secret: [u8; totp::SECRET_BYTES] = random_bytes();
    let pending = Pending {
        user_id: user.id.clone(),
        label,
        sealed_secret: app.sealer.seal(&pending_context(&id), &secret),
    };
    let bytes = serde_json::to_vec(&pending).unwrap_or_default();
    let ttl = Duration::from_secs(app.config.mfa.enrolment_seconds);
    app.ephemeral
        .put(&keys::totp_enrolment(&id), &bytes, ttl)
        .await?;
    Ok(shown(app, user, id, pending.label, &secret))
}

/// The enrolment `id` of `user` again (after a wrong code), if still open.
pub async fn pending_totp(app: &App, user: &User, id: &str) -> Result<Enrolment, MfaError> {
    let (pending, secret) = load(app, user, id).await?;
    Ok(shown(app, user, id.to_owned(), pending.label, &secret))
}

async fn load(app: &App, user: &User, id: &str) -> Result<(Pending, Vec<u8>), MfaError> {
    let pending: Pending = app
        .ephemeral
        .get(&keys::totp_enrolment(id))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(MfaError::Expired)?;
    if pending.user_id != user.id {
        return Err(MfaError::Expired);
    }
    let secret = app
        .sealer
        .open(&pending_context(id), &pending.sealed_secret)
        .ok_or(MfaError::Expired)?;
    Ok((pending, secret))
}

fn shown(app: &App, user: &User, id: String, label: String, secret: &[u8]) -> Enrolment {
    let uri = totp::uri(&app.config.mfa.totp_issuer, &user.username, secret);
    Enrolment {
        id,
        label,
        secret: totp::base32(secret),
        qr_svg: totp::qr_svg(&uri).unwrap_or_default(),
        uri,
    }
}

/// Confirms enrolment `id` with the app's current `code`; `audit` names
/// who acts and from where.
pub async fn confirm_totp(
    app: &App,
    user: &User,
    id: &str,
    code: &str,
    audit: AuditEvent,
    now: i64,
) -> Result<Confirmed, MfaError> {
    let (pending, secret) = load(app, user, id).await?;
    let Some(step) = totp::matching_step(&secret, code, now) else {
        app.metrics
            .mfa_verifications
            .with_label_values(&["totp", "failure"])
            .inc();
        return Err(MfaError::WrongCode);
    };
    // Taken once: of two confirmations racing, one adds the factor.
    if app
        .ephemeral
        .take(&keys::totp_enrolment(id))
        .await?
        .is_none()
    {
        return Err(MfaError::Expired);
    }
    let factor_id = format!("f-{}", random_token::<12>());
    let factor = SecondFactor {
        sealed_secret: Some(app.sealer.seal(&secret_context(&factor_id), &secret)),
        id: factor_id,
        user_id: user.id.clone(),
        kind: FactorKind::Totp,
        label: pending.label,
        data: "{}".into(),
        credential_id: None,
        last_step: step,
        created_at: now,
        last_used_at: None,
    };
    let confirmed = super::enrolled(app, user, &factor, audit, json!({})).await?;
    app.metrics
        .mfa_verifications
        .with_label_values(&["totp", "success"])
        .inc();
    Ok(confirmed)
}
