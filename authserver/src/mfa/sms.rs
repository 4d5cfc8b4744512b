//! SMS codes: six digits, kept as a keyed digest in the ephemeral store
//! for `mfa.sms_code_seconds`, a few attempts each (counted atomically),
//! taken once when right. A page shown again reuses the code still live
//! rather than sending another.
//! Sends are limited per user and per number (an SMS costs money and can
//! be used to harass). Numbers are E.164 and sealed at rest.
//!
//! The sender (`crate::sms`) is pluggable: the log in development, or a
//! signed webhook any SMS provider fits behind.

use std::time::Duration;

use aws_lc_rs::constant_time;
use serde::{Deserialize, Serialize};

use super::{Ceremony, Confirmed, MfaError};
use crate::app::App;
use crate::crypto::{random_bytes, random_token};
use crate::ephemeral::keys;
use crate::model::{AuditEvent, FactorKind, SecondFactor, User};
use crate::sms::masked;

const SEND_WINDOW: Duration = Duration::from_secs(3600);
const ATTEMPTS: u32 = 5;

/// `phone` in E.164 (`+` and 8 to 15 digits, no leading zero); spaces,
/// dashes, dots and parentheses are dropped.
pub fn e164(phone: &str) -> Result<String, MfaError> {
    let kept: String = phone
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = kept.strip_prefix('+').unwrap_or("");
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if ok {
        Ok(kept)
    } else {
        Err(MfaError::Invalid(
            "a phone number in international form, like +44 20 7946 0958".into(),
        ))
    }
}

/// Why a code was sent: enrolling a number, or signing in with it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Purpose {
    Enrol { label: String, phone: String },
    SignIn,
}

#[derive(Serialize, Deserialize)]
struct Pending {
    user_id: String,
    digest: Vec<u8>,
    expires_at: i64,
    /// The number as the page shows it.
    masked: String,
    purpose: Purpose,
}

fn digest(app: &App, id: &str, code: &str) -> Vec<u8> {
    app.secrets.digest(&format!("sms:{id}:{code}"))
}

/// Six digits, each equally likely.
fn six_digits() -> String {
    loop {
        let n = u32::from_be_bytes(random_bytes::<4>());
        // Below the largest multiple of 10^6 that fits: no modulo bias.
        if n < 4_294_000_000 {
            return format!("{:06}", n % 1_000_000);
        }
    }
}

/// Sends a new code to `phone` for `user_id`; returns the id the page
/// keeps. Refused when this user or this number had too many codes in the
/// last hour.
pub async fn send_code(
    app: &App,
    user_id: &str,
    phone: &str,
    purpose: Purpose,
    now_ms: i64,
) -> Result<String, MfaError> {
    let now = now_ms / 1000;
    let limit = app.config.mfa.sms_per_hour;
    let by_user = app
        .ephemeral
        .hit(&keys::sms_sent_to_user(user_id), SEND_WINDOW, now_ms)
        .await?;
    let by_number = app
        .ephemeral
        .hit(&keys::sms_sent_to_number(phone), SEND_WINDOW, now_ms)
        .await?;
    if by_user > limit || by_number > limit {
        return Err(MfaError::Invalid(
            "too many codes were sent; wait an hour or use another method".into(),
        ));
    }
    let id = random_token::<18>();
    let code = six_digits();
    let ttl = app.config.mfa.sms_code_seconds;
    let pending = Pending {
        user_id: user_id.to_owned(),
        digest: digest(app, &id, &code),
        expires_at: now + i64::try_from(ttl).unwrap_or(300),
        masked: masked(phone),
        purpose,
    };
    let bytes = serde_json::to_vec(&pending).unwrap_or_default();
    app.ephemeral
        .put(&keys::sms_code(&id), &bytes, Duration::from_secs(ttl))
        .await?;
    let message = format!(
        "{} code: {code}. It expires in {} minutes; nobody from us will ask you for it.",
        app.config.mfa.totp_issuer,
        ttl.div_ceil(60)
    );
    app.sms
        .send(phone, &message, now)
        .await
        .map_err(MfaError::Unavailable)?;
    Ok(id)
}

/// Code `id` of `user_id`, while it can still be used.
async fn live(app: &App, user_id: &str, id: &str, now: i64) -> Result<Option<Pending>, MfaError> {
    Ok(app
        .ephemeral
        .get(&keys::sms_code(id))
        .await?
        .and_then(|b| serde_json::from_slice::<Pending>(&b).ok())
        .filter(|p| p.user_id == user_id && p.expires_at > now))
}

/// The page of code `id` if it is still live: shown again, it is not
/// sent again.
pub async fn still_live(
    app: &App,
    user_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<Ceremony>, MfaError> {
    Ok(live(app, user_id, id, now).await?.map(|p| Ceremony {
        id: id.to_owned(),
        options: p.masked,
    }))
}

/// Checks `code` against code `id` of `user_id`: its purpose when right
/// (the code is then spent); `None` when wrong, expired or out of
/// attempts. Every attempt counts, and the count is atomic: of many
/// concurrent guesses, only the first [`ATTEMPTS`] are compared.
pub async fn check_code(
    app: &App,
    user_id: &str,
    id: &str,
    code: &str,
    now: i64,
) -> Result<Option<Purpose>, MfaError> {
    let Some(pending) = live(app, user_id, id, now).await? else {
        return Ok(None);
    };
    let lifetime = Duration::from_secs(app.config.mfa.sms_code_seconds);
    let attempts = app
        .ephemeral
        .hit(&keys::sms_attempts(id), lifetime, now * 1000)
        .await?;
    if attempts > u64::from(ATTEMPTS) {
        app.ephemeral.delete(&keys::sms_code(id)).await?;
        return Ok(None);
    }
    let given: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let right =
        constant_time::verify_slices_are_equal(&digest(app, id, &given), &pending.digest).is_ok();
    if !right {
        return Ok(None);
    }
    // Taken once: a second submission finds nothing.
    Ok(app
        .ephemeral
        .take(&keys::sms_code(id))
        .await?
        .map(|_| pending.purpose))
}

/// Starts verifying `phone` (as typed) for `user`, to add it as `label`.
pub async fn begin_enrolment(
    app: &App,
    user: &User,
    label: &str,
    phone: &str,
    now_ms: i64,
) -> Result<Ceremony, MfaError> {
    if !app.sms.enabled() {
        return Err(MfaError::Invalid(
            "text messages are not set up on this server".into(),
        ));
    }
    let label = super::check_label(label)?;
    let phone = e164(phone)?;
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
    let purpose = Purpose::Enrol {
        label,
        phone: phone.clone(),
    };
    let id = send_code(app, &user.id, &phone, purpose, now_ms).await?;
    Ok(Ceremony {
        id,
        options: masked(&phone),
    })
}

/// Adds the number code `id` was sent to, given the right `code`.
pub async fn confirm_enrolment(
    app: &App,
    user: &User,
    id: &str,
    code: &str,
    audit: AuditEvent,
    now: i64,
) -> Result<Confirmed, MfaError> {
    let Some(Purpose::Enrol { label, phone }) = check_code(app, &user.id, id, code, now).await?
    else {
        return Err(MfaError::WrongCode);
    };
    let factor_id = format!("f-{}", random_token::<12>());
    let factor = SecondFactor {
        sealed_secret: Some(
            app.sealer
                .seal(&super::secret_context(&factor_id), phone.as_bytes()),
        ),
        id: factor_id,
        user_id: user.id.clone(),
        kind: FactorKind::Sms,
        label,
        data: "{}".into(),
        credential_id: None,
        last_step: 0,
        created_at: now,
        last_used_at: None,
    };
    let detail = serde_json::json!({"phone": masked(&phone)});
    super::enrolled(app, user, &factor, audit, detail).await
}

/// Sends a sign-in code to `user`'s first verified number.
pub async fn begin_sign_in(app: &App, user: &User, now_ms: i64) -> Result<Ceremony, MfaError> {
    let factors = app.store.factors(&user.id).await?;
    let phone = factors
        .iter()
        .filter(|f| f.kind == FactorKind::Sms)
        .find_map(|f| {
            let sealed = f.sealed_secret.as_deref()?;
            let plain = app.sealer.open(&super::secret_context(&f.id), sealed)?;
            String::from_utf8(plain).ok()
        })
        .ok_or_else(|| MfaError::Invalid("no verified number to send a code to".into()))?;
    let id = send_code(app, &user.id, &phone, Purpose::SignIn, now_ms).await?;
    Ok(Ceremony {
        id,
        options: masked(&phone),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_e164_and_shown_masked() {
        assert_eq!(
            e164("+44 20 7946-0958").ok().as_deref(),
            Some("+442079460958")
        );
        assert_eq!(
            e164("+1 (415) 555.0100").ok().as_deref(),
            Some("+14155550100")
        );
        for bad in [
            "",
            "442079460958",
            "+0442079460958",
            "+44",
            "+44 20 79x6",
            "+1234567890123456",
        ] {
            assert!(e164(bad).is_err(), "{bad}");
        }
        let code = six_digits();
        assert!(code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()));
    }
}
