//! Browser sessions and CSRF tokens.
//!
//! A session is a random id in a cookie; the ephemeral store keeps what it
//! proves under the id's SHA-256 (a leaked store dump does not yield
//! cookies). It records how the user authenticated (`amr`, `acr`,
//! `auth_time`) so second factors and step-up slot in later.
//!
//! CSRF: a random `csrf` cookie, and in each form the HMAC of its value
//! under the server's MAC key. A cross-site page can neither read the
//! cookie nor compute the MAC.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::crypto::{CryptoError, random_token};
use crate::ephemeral::{Ephemeral, EphemeralError, keys};

/// What a session proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
}

/// Cookie names. The `__Host-` prefix (Secure, Path=/, no Domain) is only
/// honoured over HTTPS, so plain-HTTP dev mode uses unprefixed names.
#[derive(Debug, Clone)]
pub struct Cookies {
    pub session: &'static str,
    pub csrf: &'static str,
    /// A sign-in waiting for its second factor.
    pub pending: &'static str,
    pub secure: bool,
}

impl Cookies {
    pub fn new(secure: bool) -> Self {
        if secure {
            Self {
                session: "__Host-portcullis-session",
                csrf: "__Host-portcullis-csrf",
                pending: "__Host-portcullis-pending",
                secure,
            }
        } else {
            Self {
                session: "portcullis-session",
                csrf: "portcullis-csrf",
                pending: "portcullis-pending",
                secure,
            }
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure unless
    /// plain-HTTP dev mode. `max_age` 0 deletes.
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Store(#[from] EphemeralError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// Starts a session; returns the cookie value.
pub async fn create(
    store: &Ephemeral,
    session: &Session,
    ttl: Duration,
) -> Result<String, SessionError> {
    let id = random_token::<32>();
    let bytes = serde_json::to_vec(session).unwrap_or_default();
    store.put(&keys::session(&id), &bytes, ttl).await?;
    Ok(id)
}

/// The session a cookie names, if live. A record that does not parse (an
/// older format) is no session.
pub async fn load(store: &Ephemeral, id: &str) -> Result<Option<Session>, SessionError> {
    Ok(store
        .get(&keys::session(id))
        .await?
        .and_then(|b| serde_json::from_slice(&b).ok()))
}

pub async fn end(store: &Ephemeral, id: &str) -> Result<(), SessionError> {
    Ok(store.delete(&keys::session(id)).await?)
}

/// The form token that matches a `csrf` cookie value.
pub fn csrf_token(mac: &hmac::Key, cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(hmac::sign(mac, cookie.as_bytes()).as_ref())
}

/// Whether a submitted form token matches the `csrf` cookie (constant time).
pub fn csrf_ok(mac: &hmac::Key, cookie: Option<&str>, token: Option<&str>) -> bool {
    let (Some(cookie), Some(token)) = (cookie, token) else {
        return false;
    };
    URL_SAFE_NO_PAD
        .decode(token)
        .is_ok_and(|tag| hmac::verify(mac, cookie.as_bytes(), &tag).is_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn csrf_tokens_bind_to_the_cookie() {
        let mac = hmac::Key::new(hmac::HMAC_SHA256, &[7; 32]);
        let other = hmac::Key::new(hmac::HMAC_SHA256, &[8; 32]);
        let token = csrf_token(&mac, "cookie-a");
        assert!(csrf_ok(&mac, Some("cookie-a"), Some(&token)));
        assert!(!csrf_ok(&mac, Some("cookie-b"), Some(&token)));
        assert!(!csrf_ok(&other, Some("cookie-a"), Some(&token)));
        assert!(!csrf_ok(&mac, None, Some(&token)));
        assert!(!csrf_ok(&mac, Some("cookie-a"), None));
        assert!(!csrf_ok(&mac, Some("cookie-a"), Some("!!")));
    }

    #[test]
    fn cookies_are_set_host_only_and_secure_over_https() {
        let secure = Cookies::new(true);
        let set = secure.set(secure.session, "v", 60);
        assert!(set.starts_with("__Host-portcullis-session=v; Path=/; HttpOnly; SameSite=Lax"));
        assert!(set.ends_with("; Secure"));
        assert!(!Cookies::new(false).set("n", "v", 0).contains("Secure"));
    }

    #[tokio::test]
    async fn sessions_live_under_a_digest_of_their_id() {
        let store = Ephemeral::memory();
        let session = Session {
            user_id: "u1".into(),
            auth_time: 5,
            amr: vec!["pwd".into()],
            acr: "urn:portcullis:acr:pwd".into(),
        };
        let id = create(&store, &session, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(load(&store, &id).await.unwrap(), Some(session));
        assert!(store.get(&format!("session:{id}")).await.unwrap().is_none());
        end(&store, &id).await.unwrap();
        assert_eq!(load(&store, &id).await.unwrap(), None);
    }
}
