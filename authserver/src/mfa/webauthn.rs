//! WebAuthn with webauthn-rs: passkeys (user verification required), as a
//! second factor after a password and as a passwordless first factor
//! (discoverable credentials).
//!
//! Each ceremony's state stays on the server, in the ephemeral store under
//! a random id with a short TTL, and is taken once; the page gets only the
//! browser's options. A credential is stored per user as one JSON value
//! (its public key, counter and backup state), updated after each use; a
//! counter that does not move forward is refused as a possible clone. The
//! user handle is derived from the user id with the server's MAC key, so a
//! discoverable sign-in is checked against the account its key belongs to.
//!
//! Attestation: none is asked for (what browsers give without prompting).
//! An AAGUID allow or deny list applies to what the authenticator reports
//! at registration: a policy for honest authenticators, not proof.

use serde::{Deserialize, Serialize};
use serde_json::json;
use webauthn_rs::prelude::{
    DiscoverableAuthentication, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Uuid, Webauthn, WebauthnError,
};

pub use super::Ceremony;
use super::{Check, Confirmed, MfaError};
use crate::app::App;
use crate::crypto::random_token;
use crate::ephemeral::{EphemeralError, keys};
use crate::model::{AuditEvent, FactorKind, SecondFactor, User};
use crate::store::StoreError;

#[derive(Serialize, Deserialize)]
enum State {
    Register {
        user_id: String,
        label: String,
        state: PasskeyRegistration,
    },
    Assert {
        user_id: String,
        state: PasskeyAuthentication,
    },
    Discover {
        request_id: String,
        state: DiscoverableAuthentication,
    },
}

async fn keep(app: &App, state: &State) -> Result<String, EphemeralError> {
    let id = random_token::<18>();
    let bytes = serde_json::to_vec(state).unwrap_or_default();
    app.ephemeral
        .put(&keys::webauthn_ceremony(&id), &bytes, app.passkeys.ttl)
        .await?;
    Ok(id)
}

/// The ceremony's state, taken: a second use finds nothing.
async fn take(app: &App, id: &str) -> Result<Option<State>, EphemeralError> {
    Ok(app
        .ephemeral
        .take(&keys::webauthn_ceremony(id))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// The user handle the authenticator keeps: 16 bytes derived from the id.
fn handle(app: &App, user_id: &str) -> Uuid {
    let tag = aws_lc_rs::hmac::sign(&app.mac, format!("webauthn-user:{user_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&tag.as_ref()[..16]);
    Uuid::from_bytes(bytes)
}

fn passkey_of(factor: &SecondFactor) -> Option<Passkey> {
    (factor.kind == FactorKind::WebAuthn)
        .then(|| serde_json::from_str(&factor.data).ok())
        .flatten()
}

fn passkeys(factors: &[SecondFactor]) -> Vec<(&SecondFactor, Passkey)> {
    factors
        .iter()
        .filter_map(|f| passkey_of(f).map(|p| (f, p)))
        .collect()
}

fn options(value: &impl Serialize) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Starts registering a passkey named `label` for `user`.
pub async fn begin_registration(app: &App, user: &User, label: &str) -> Result<Ceremony, MfaError> {
    let label = super::check_label(label)?;
    let factors = app.store.factors(&user.id).await?;
    if factors.iter().any(|f| f.label == label) {
        return Err(MfaError::Invalid(format!(
            "you already have a factor named `{label}`"
        )));
    }
    let exclude = passkeys(&factors)
        .into_iter()
        .map(|(_, p)| p.cred_id().clone())
        .collect();
    let display = user.display_name.as_deref().unwrap_or(&user.username);
    let (challenge, state) = app
        .passkeys
        .webauthn
        .start_passkey_registration(
            handle(app, &user.id),
            &user.username,
            display,
            Some(exclude),
        )
        .map_err(|e| MfaError::Invalid(format!("cannot start registration: {e}")))?;
    let id = keep(
        app,
        &State::Register {
            user_id: user.id.clone(),
            label,
            state,
        },
    )
    .await?;
    Ok(Ceremony {
        id,
        options: options(&challenge),
    })
}

/// The AAGUID in a registration's authenticator data (after the RP id
/// hash, flags and counter), when it carries attested credential data.
fn aaguid(credential: &RegisterPublicKeyCredential) -> Option<Uuid> {
    let object: serde_cbor_2::Value =
        serde_cbor_2::from_slice(&credential.response.attestation_object).ok()?;
    let serde_cbor_2::Value::Map(map) = object else {
        return None;
    };
    let auth_data = map.iter().find_map(|(k, v)| match (k, v) {
        (serde_cbor_2::Value::Text(k), serde_cbor_2::Value::Bytes(b)) if k == "authData" => Some(b),
        _ => None,
    })?;
    let attested = auth_data.get(32).is_some_and(|flags| flags & 0x40 != 0);
    let bytes: [u8; 16] = auth_data.get(37..53)?.try_into().ok()?;
    (attested && bytes != [0; 16]).then(|| Uuid::from_bytes(bytes))
}

/// Finishes registration `ceremony` with the browser's `credential` (JSON).
pub async fn finish_registration(
    app: &App,
    user: &User,
    ceremony: &str,
    credential: &str,
    audit: AuditEvent,
    now: i64,
) -> Result<Confirmed, MfaError> {
    let Some(State::Register {
        user_id,
        label,
        state,
    }) = take(app, ceremony).await?
    else {
        return Err(MfaError::Expired);
    };
    if user_id != user.id {
        return Err(MfaError::Expired);
    }
    let credential: RegisterPublicKeyCredential =
        serde_json::from_str(credential).map_err(|e| {
            MfaError::Invalid(format!(
                "the browser's answer is not a WebAuthn credential: {e}"
            ))
        })?;
    let reported = aaguid(&credential);
    if !app.passkeys.admits(reported) {
        return Err(MfaError::Invalid(format!(
            "this kind of authenticator ({}) is not allowed here",
            reported.map_or_else(|| "unknown".to_owned(), |u| u.to_string())
        )));
    }
    let passkey = app
        .passkeys
        .webauthn
        .finish_passkey_registration(&credential, &state)
        .map_err(|e| MfaError::Invalid(format!("the key could not be registered: {e}")))?;
    let factor_id = format!("f-{}", random_token::<12>());
    let credential_id = base64_url(passkey.cred_id());
    let factor = SecondFactor {
        id: factor_id,
        user_id: user.id.clone(),
        kind: FactorKind::WebAuthn,
        label,
        sealed_secret: None,
        data: serde_json::to_string(&passkey).unwrap_or_default(),
        credential_id: Some(credential_id.clone()),
        last_step: 0,
        created_at: now,
        last_used_at: None,
    };
    let detail = json!({"aaguid": reported.map(|u| u.to_string())});
    super::enrolled(app, user, &factor, audit, detail).await
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A challenge for `user`'s passkeys as a second factor; `None` without any.
pub async fn begin_assertion(app: &App, user: &User) -> Result<Option<Ceremony>, MfaError> {
    let factors = app.store.factors(&user.id).await?;
    let keys: Vec<Passkey> = passkeys(&factors).into_iter().map(|(_, p)| p).collect();
    if keys.is_empty() {
        return Ok(None);
    }
    let (challenge, state) = app
        .passkeys
        .webauthn
        .start_passkey_authentication(&keys)
        .map_err(|e| MfaError::Invalid(format!("cannot start authentication: {e}")))?;
    let id = keep(
        app,
        &State::Assert {
            user_id: user.id.clone(),
            state,
        },
    )
    .await?;
    Ok(Some(Ceremony {
        id,
        options: options(&challenge),
    }))
}

/// What `amr` a verified assertion adds (RFC 8176): a key that may be
/// synced between devices is software-held (`swk`), one that cannot is
/// hardware-bound (`hwk`); user verification was required (`user`).
fn amr(backup_eligible: bool) -> &'static [&'static str] {
    if backup_eligible {
        &["swk", "user"]
    } else {
        &["hwk", "user"]
    }
}

/// Verifies `credential` against `user`'s ceremony; a verified key's
/// counter and backup state are stored.
pub async fn check_assertion(
    app: &App,
    user: &User,
    ceremony: &str,
    credential: &str,
    now: i64,
) -> Result<Check, MfaError> {
    let state = match take(app, ceremony).await? {
        Some(State::Assert { user_id, state }) if user_id == user.id => state,
        _ => return Ok(Check::Refused),
    };
    let Ok(credential) = serde_json::from_str::<PublicKeyCredential>(credential) else {
        return Ok(Check::Refused);
    };
    let factors = app.store.factors(&user.id).await?;
    let check = verify(
        app,
        &factors,
        &credential,
        |w, _| w.finish_passkey_authentication(&credential, &state),
        now,
    )
    .await?;
    Ok(check)
}

/// Runs `finish` and, when it verifies, records the use on the factor.
async fn verify(
    app: &App,
    factors: &[SecondFactor],
    credential: &PublicKeyCredential,
    finish: impl FnOnce(
        &Webauthn,
        &Passkey,
    ) -> Result<webauthn_rs::prelude::AuthenticationResult, WebauthnError>,
    now: i64,
) -> Result<Check, StoreError> {
    let id = base64_url(credential.get_credential_id());
    let Some((factor, mut passkey)) = passkeys(factors)
        .into_iter()
        .find(|(f, _)| f.credential_id.as_deref() == Some(id.as_str()))
        .map(|(f, p)| (f.clone(), p))
    else {
        return Ok(Check::Refused);
    };
    match finish(&app.passkeys.webauthn, &passkey) {
        Ok(result) => {
            let changed = passkey.update_credential(&result) == Some(true);
            let data = changed.then(|| serde_json::to_string(&passkey).unwrap_or_default());
            app.store
                .factor_used(&factor.id, data.as_deref(), now)
                .await?;
            Ok(Check::Accepted(amr(result.backup_eligible())))
        }
        Err(WebauthnError::CredentialPossibleCompromise) => {
            tracing::warn!(factor = %factor.id, "WebAuthn counter did not advance: possibly a cloned key");
            Ok(Check::Replayed)
        }
        Err(e) => {
            tracing::info!(error = %e, "WebAuthn assertion refused");
            Ok(Check::Refused)
        }
    }
}

/// A discoverable (passwordless) challenge for the login page of request
/// `request_id`.
pub async fn begin_discoverable(app: &App, request_id: &str) -> Result<Ceremony, MfaError> {
    let (challenge, state) = app
        .passkeys
        .webauthn
        .start_discoverable_authentication()
        .map_err(|e| MfaError::Invalid(format!("cannot start a passkey sign-in: {e}")))?;
    let id = keep(
        app,
        &State::Discover {
            request_id: request_id.to_owned(),
            state,
        },
    )
    .await?;
    Ok(Ceremony {
        id,
        options: options(&challenge),
    })
}

/// A passwordless sign-in: who the key belongs to, if it verifies.
#[derive(Debug)]
pub struct Discovered {
    pub user: User,
    pub request_id: String,
    pub check: Check,
}

/// Verifies a discoverable `credential` for `ceremony`: the key names its
/// account by credential id and user handle, which must agree.
pub async fn finish_discoverable(
    app: &App,
    ceremony: &str,
    credential: &str,
    now: i64,
) -> Result<Option<Discovered>, MfaError> {
    let Some(State::Discover { request_id, state }) = take(app, ceremony).await? else {
        return Ok(None);
    };
    let Ok(credential) = serde_json::from_str::<PublicKeyCredential>(credential) else {
        return Ok(None);
    };
    let Ok((claimed, _)) = app
        .passkeys
        .webauthn
        .identify_discoverable_authentication(&credential)
    else {
        return Ok(None);
    };
    let Some(factor) = app
        .store
        .factor_by_credential(&base64_url(credential.get_credential_id()))
        .await?
    else {
        return Ok(None);
    };
    let Some(user) = app.store.user_by_id(&factor.user_id).await? else {
        return Ok(None);
    };
    if user.disabled || handle(app, &user.id) != claimed {
        return Ok(None);
    }
    let check = verify(
        app,
        std::slice::from_ref(&factor),
        &credential,
        |w, p| w.finish_discoverable_authentication_v2(&credential, state, p),
        now,
    )
    .await?;
    Ok(Some(Discovered {
        user,
        request_id,
        check,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::Value;
    use testkit::SoftPasskey;

    use super::*;
    use crate::testing::{self, NOW};

    const MODEL: [u8; 16] = *b"portcullis-model";
    const ORIGIN: &str = "https://auth.test";

    fn event(user: &User) -> AuditEvent {
        AuditEvent::new(NOW, user.id.clone(), "mfa.webauthn.register")
    }

    async fn register(app: &App, user: &User, key: &mut SoftPasskey) -> Result<(), MfaError> {
        let ceremony = begin_registration(app, user, "Key").await?;
        let options: Value = serde_json::from_str(&ceremony.options).unwrap();
        let credential = key.register(&options).unwrap().to_string();
        finish_registration(app, user, &ceremony.id, &credential, event(user), NOW)
            .await
            .map(drop)
    }

    async fn sign_in(app: &App, user: &User, key: &mut SoftPasskey) -> Check {
        let ceremony = begin_assertion(app, user).await.unwrap().unwrap();
        let options: Value = serde_json::from_str(&ceremony.options).unwrap();
        let credential = key.assert(&options).unwrap().to_string();
        check_assertion(app, user, &ceremony.id, &credential, NOW)
            .await
            .unwrap()
    }

    /// The stored credential's JSON.
    async fn stored(app: &App, user: &User) -> Value {
        let factors = app.store.factors(&user.id).await.unwrap();
        serde_json::from_str(&factors[0].data).unwrap()
    }

    #[tokio::test]
    async fn a_key_signs_in_its_counter_moves_and_a_clone_behind_it_is_refused() {
        let app = testing::app().await;
        let alice = testing::alice_and_client(&app).await;
        let mut key = SoftPasskey::new(ORIGIN, MODEL).unwrap();
        register(&app, &alice, &mut key).await.unwrap();
        let copy = key.cloned().unwrap();

        assert_eq!(
            sign_in(&app, &alice, &mut key).await,
            Check::Accepted(&["hwk", "user"])
        );
        assert_eq!(
            sign_in(&app, &alice, &mut key).await,
            Check::Accepted(&["hwk", "user"])
        );
        assert_eq!(stored(&app, &alice).await["cred"]["counter"], 2);

        // The copy still counts from where it was made.
        let mut copy = copy;
        assert_eq!(sign_in(&app, &alice, &mut copy).await, Check::Replayed);

        // A ceremony is used once: the same answer again is refused.
        let ceremony = begin_assertion(&app, &alice).await.unwrap().unwrap();
        let options: Value = serde_json::from_str(&ceremony.options).unwrap();
        let answer = key.assert(&options).unwrap().to_string();
        let first = check_assertion(&app, &alice, &ceremony.id, &answer, NOW).await;
        assert!(matches!(first, Ok(Check::Accepted(_))));
        let again = check_assertion(&app, &alice, &ceremony.id, &answer, NOW).await;
        assert!(matches!(again, Ok(Check::Refused)));
    }

    #[tokio::test]
    async fn a_synced_passkey_is_software_held_and_its_backup_state_is_kept() {
        let app = testing::app().await;
        let alice = testing::alice_and_client(&app).await;
        let mut key = SoftPasskey::new(ORIGIN, MODEL).unwrap();
        key.synced = true;
        register(&app, &alice, &mut key).await.unwrap();
        assert_eq!(
            sign_in(&app, &alice, &mut key).await,
            Check::Accepted(&["swk", "user"])
        );
        let cred = &stored(&app, &alice).await["cred"];
        assert_eq!(
            (&cred["backup_eligible"], &cred["backup_state"]),
            (&json!(true), &json!(true))
        );
    }

    #[tokio::test]
    async fn the_aaguid_lists_decide_which_models_may_register() {
        let model = Uuid::from_bytes(MODEL).to_string();
        let other = "00000000-0000-0000-0000-0000000000aa".to_owned();
        let cases = [
            (vec![], vec![model.clone()], false),
            (vec![other.clone()], vec![], false),
            (vec![model.clone()], vec![], true),
            (vec![], vec![other], true),
        ];
        for (allow, deny, admitted) in cases {
            let (a, d) = (allow.clone(), deny.clone());
            let app = testing::app_with(move |c| {
                c.mfa.aaguid_allow = a;
                c.mfa.aaguid_deny = d;
            })
            .await;
            let alice = testing::alice_and_client(&app).await;
            let mut key = SoftPasskey::new(ORIGIN, MODEL).unwrap();
            let result = register(&app, &alice, &mut key).await;
            assert_eq!(
                result.is_ok(),
                admitted,
                "allow {allow:?} deny {deny:?}: {result:?}"
            );
            if let Err(e) = result {
                assert!(e.to_string().contains("is not allowed here"), "{e}");
            }
        }
    }
}
