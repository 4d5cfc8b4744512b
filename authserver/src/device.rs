//! The device authorization grant (RFC 8628) as domain logic.
//!
//! A device asks for a pair of codes (`oauth::device_authorization`); a
//! person enters the user code on `/device` ([`redeem`]), and
//! `authorize::start_device` starts an authorization request marked for the
//! device, so signing in, second factors and consent are the code flow's
//! own; where the code flow would mint a code, [`approve`] (or, on "Deny",
//! [`deny`]) settles the device's record, and its next poll learns the
//! outcome (`oauth::device_code`).
//!
//! A user code is 8 letters from an alphabet without vowels or look-alikes
//! (20^8 ≈ 2^34.6 codes, RFC 8628 §6.1), works once, and wrong entries are
//! limited per source address.

use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::crypto::random_token;
use crate::ephemeral::{EphemeralError, keys};
use crate::error::OAuthError;
use crate::issue::AuthFacts;
use crate::model::Client;

/// The letters of user codes: no vowels (no words), no look-alikes.
pub const ALPHABET: &[u8; 20] = b"BCDFGHJKLMNPQRSTVWXZ";
const USER_CODE_LEN: usize = 8;
/// What RFC 8628 §3.5 adds to the interval at each `slow_down`.
pub const SLOW_DOWN_STEP: u64 = 5;

/// A device authorization as kept until it is redeemed or expires.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub client_id: String,
    pub scopes: Vec<String>,
    /// Unix seconds: polls after this get `expired_token`.
    pub expires_at: i64,
    /// Seconds a device must wait between polls.
    pub interval: u64,
    pub status: Status,
}

/// Where the person at the browser is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    Pending,
    /// Signed in and allowed: the device's next poll gets tokens.
    Approved {
        user_id: String,
        auth: AuthFacts,
    },
    Denied,
}

/// What `/device_authorization` answers (RFC 8628 §3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub device_code: String,
    /// As shown to the person: `BCDF-GHJK`.
    pub user_code: String,
    pub expires_in: u64,
    pub interval: u64,
}

/// Why a user code was not taken.
#[derive(Debug, PartialEq, Eq)]
pub enum EntryRefusal {
    /// Not a code we know (mistyped, used, or expired).
    Unknown,
    /// Too many wrong codes from this address lately.
    TooMany,
    /// The store failed.
    Unavailable(String),
}

impl EntryRefusal {
    pub fn message(&self) -> &str {
        match self {
            Self::Unknown => {
                "That code is not valid, or it has been used or has expired. Check the code on your device."
            }
            Self::TooMany => "Too many wrong codes. Try again later.",
            Self::Unavailable(why) => why,
        }
    }
}

impl From<EphemeralError> for EntryRefusal {
    fn from(e: EphemeralError) -> Self {
        Self::Unavailable(OAuthError::from(e).description)
    }
}

fn secs(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// How long a record stays after it expires: a late poll then learns
/// `expired_token` rather than that the code was never ours.
const KEPT_AFTER_EXPIRY: Duration = Duration::from_secs(600);

/// A new device authorization for `client` with `scopes` (already checked).
pub async fn begin(
    app: &App,
    client: &Client,
    scopes: Vec<String>,
    now: i64,
) -> Result<Issued, OAuthError> {
    let cfg = &app.config.device;
    let device_code = random_token::<32>();
    let handle = keys::device_handle(&device_code);
    let user_code = user_code(|| crate::crypto::random_bytes::<1>()[0]);
    let grant = DeviceGrant {
        client_id: client.id.clone(),
        scopes,
        expires_at: now + secs(cfg.code_seconds),
        interval: cfg.interval_seconds,
        status: Status::Pending,
    };
    let lifetime = Duration::from_secs(cfg.code_seconds);
    save(app, &handle, &grant, lifetime).await?;
    // A collision with a live code (about one in 2^34 per live code) must
    // not join two devices: the second is refused and the device asks again.
    if !app
        .ephemeral
        .put_new(
            &keys::device_user_code(&user_code),
            handle.as_bytes(),
            lifetime,
        )
        .await?
    {
        return Err(OAuthError::unavailable(&"user code collision; ask again"));
    }
    Ok(Issued {
        device_code,
        user_code: display(&user_code),
        expires_in: cfg.code_seconds,
        interval: cfg.interval_seconds,
    })
}

/// A fresh user code, each letter uniform over [`ALPHABET`] (bytes of 240
/// and above are drawn again: 240 is the largest multiple of 20 in a byte).
fn user_code(mut random_byte: impl FnMut() -> u8) -> String {
    let mut code = String::with_capacity(USER_CODE_LEN);
    while code.len() < USER_CODE_LEN {
        let byte = random_byte();
        if byte < 240 {
            code.push(char::from(ALPHABET[usize::from(byte % 20)]));
        }
    }
    code
}

/// `BCDFGHJK` as people read it: `BCDF-GHJK`.
pub fn display(code: &str) -> String {
    let (a, b) = code.split_at(code.len() / 2);
    format!("{a}-{b}")
}

/// What a person typed, as a code: case, spaces and dashes do not matter;
/// anything outside the alphabet means it is not a code.
pub fn normalise(typed: &str) -> Option<String> {
    let code: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (code.len() == USER_CODE_LEN && code.bytes().all(|b| ALPHABET.contains(&b))).then_some(code)
}

/// The user code typed on `/device`, from `source`: the device it names
/// (its handle and record). Wrong codes count against the address; a
/// right one is used up.
pub async fn redeem(
    app: &App,
    typed: &str,
    source: Option<IpAddr>,
    now_ms: i64,
) -> Result<(String, DeviceGrant), EntryRefusal> {
    let window = Duration::from_secs(app.config.login.window_seconds);
    let bucket = source.map_or_else(
        || "unknown".into(),
        |ip| bootstrap::net::bucket(ip, 64).to_string(),
    );
    // Every attempt counts, before it is looked at: parallel guesses
    // cannot all slip under the limit.
    let attempts_key = keys::device_failures_from(&bucket);
    if app.ephemeral.hit(&attempts_key, window, now_ms).await?
        > app.config.device.max_failures_per_address
    {
        return Err(EntryRefusal::TooMany);
    }
    let handle = match normalise(typed) {
        Some(code) => app.ephemeral.take(&keys::device_user_code(&code)).await?,
        None => None,
    };
    let found = match handle.and_then(|h| String::from_utf8(h).ok()) {
        Some(handle) => load(app, &handle)
            .await?
            .filter(|g| g.status == Status::Pending && g.expires_at > now_ms / 1000)
            .map(|g| (handle, g)),
        None => None,
    };
    let Some(found) = found else {
        return Err(EntryRefusal::Unknown);
    };
    Ok(found)
}

/// The person signed in and allowed `client_id`'s device.
pub async fn approve(
    app: &App,
    client_id: &str,
    handle: &str,
    user_id: &str,
    auth: AuthFacts,
    now: i64,
) -> Result<(), OAuthError> {
    settle(
        app,
        client_id,
        handle,
        Status::Approved {
            user_id: user_id.to_owned(),
            auth,
        },
        now,
    )
    .await
}

/// The person refused `client_id`'s device.
pub async fn deny(app: &App, client_id: &str, handle: &str, now: i64) -> Result<(), OAuthError> {
    settle(app, client_id, handle, Status::Denied, now).await
}

async fn settle(
    app: &App,
    client_id: &str,
    handle: &str,
    status: Status,
    now: i64,
) -> Result<(), OAuthError> {
    let Some(mut grant) = load(app, handle).await? else {
        return Err(OAuthError::invalid_request(
            "the device's sign-in has expired; start again on the device",
        ));
    };
    if grant.client_id != client_id || grant.status != Status::Pending {
        return Err(OAuthError::invalid_request(
            "the device's sign-in is already settled",
        ));
    }
    if grant.expires_at <= now {
        return Err(OAuthError::invalid_request(
            "the device's sign-in has expired; start again on the device",
        ));
    }
    grant.status = status;
    let left = Duration::from_secs(u64::try_from(grant.expires_at - now).unwrap_or(0));
    save(app, handle, &grant, left).await
}

/// The least time between the device's polls: as issued, or as slowed
/// down since.
pub async fn interval(app: &App, handle: &str, issued: u64) -> Result<u64, EphemeralError> {
    Ok(app
        .ephemeral
        .get(&keys::device_interval(handle))
        .await?
        .and_then(|b| String::from_utf8(b).ok()?.parse().ok())
        .unwrap_or(issued))
}

/// The record of the device with `handle`, if it is still kept.
pub async fn load(app: &App, handle: &str) -> Result<Option<DeviceGrant>, EphemeralError> {
    Ok(app
        .ephemeral
        .get(&keys::device_by_handle(handle))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

/// Keeps `grant` for `lifetime`, and a while after so late polls hear
/// `expired_token`.
pub async fn save(
    app: &App,
    handle: &str,
    grant: &DeviceGrant,
    lifetime: Duration,
) -> Result<(), OAuthError> {
    let bytes = serde_json::to_vec(grant).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(
            &keys::device_by_handle(handle),
            &bytes,
            lifetime + KEPT_AFTER_EXPIRY,
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn user_codes_use_the_alphabet_uniformly() {
        let mut next = 0u8;
        let code = user_code(|| {
            next = next.wrapping_add(37);
            next
        });
        assert_eq!(code.len(), USER_CODE_LEN);
        assert!(code.bytes().all(|b| ALPHABET.contains(&b)), "{code}");
        // 240..=255 are drawn again, not folded onto the first letters.
        let mut draws = [250u8, 239, 255, 0, 19, 20, 40, 60, 80, 100].into_iter();
        let code = user_code(|| draws.next().unwrap());
        assert_eq!(code, "ZBZBBBBB");
    }

    #[test]
    fn typed_codes_forgive_case_spaces_and_dashes_only() {
        assert_eq!(normalise("bcdf-ghjk").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalise(" BCDF GHJK ").as_deref(), Some("BCDFGHJK"));
        assert_eq!(normalise("BCDFGHJ"), None, "too short");
        assert_eq!(normalise("BCDFGHJA"), None, "a vowel is never in a code");
        assert_eq!(normalise("BCDFGHJ0"), None);
        assert_eq!(normalise("BCDFGHJKK"), None, "too long");
        assert_eq!(display("BCDFGHJK"), "BCDF-GHJK");
    }
}
