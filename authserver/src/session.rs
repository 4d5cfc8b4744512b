//! Browser sessions and CSRF tokens.
//!
//! A session is a random id in a cookie; the ephemeral store keeps what it
//! proves under the id's SHA-256, its *handle* (a leaked store dump does
//! not yield cookies). It records how the user authenticated (`amr`,
//! `acr`, `auth_time`) and from where, and each user's handles are indexed
//! so the account page can list and end them and a change that must sign a
//! user out everywhere can find them all.
//!
//! CSRF: a random `csrf` cookie, and in each form the HMAC of its value
//! under the server's MAC key. A cross-site page can neither read the
//! cookie nor compute the MAC.

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::crypto::random_token;
use crate::ephemeral::{Ephemeral, EphemeralError, keys};

/// What a session proves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user_id: String,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    /// The session's id in tokens (OIDC `sid`): random, neither its cookie
    /// nor its handle. Empty in sessions from before it existed.
    #[serde(default)]
    pub sid: String,
    /// The client address it signed in from, for the account page.
    #[serde(default)]
    pub address: Option<String>,
    /// The browser it signed in with (shortened), for the account page.
    #[serde(default)]
    pub user_agent: Option<String>,
}

/// Cookie names. The `__Host-` prefix (Secure, Path=/, no Domain) is only
/// honoured over HTTPS, so plain-HTTP dev mode uses unprefixed names.
#[derive(Debug, Clone)]
pub struct Cookies {
    pub session: &'static str,
    pub csrf: &'static str,
    /// A sign-in waiting for its second factor.
    pub pending: &'static str,
    /// Binds a sign-in at an upstream provider to the browser that began it.
    pub federation: &'static str,
    pub secure: bool,
}

impl Cookies {
    pub fn new(secure: bool) -> Self {
        if secure {
            Self {
                session: "__Host-portcullis-session",
                csrf: "__Host-portcullis-csrf",
                pending: "__Host-portcullis-pending",
                federation: "__Host-portcullis-federation",
                secure,
            }
        } else {
            Self {
                session: "portcullis-session",
                csrf: "portcullis-csrf",
                pending: "portcullis-pending",
                federation: "portcullis-federation",
                secure,
            }
        }
    }

    /// A `Set-Cookie` value: HttpOnly, SameSite=Lax, Path=/, Secure unless
    /// plain-HTTP dev mode. `max_age` 0 deletes.
    pub fn set(&self, name: &str, value: &str, max_age: u64) -> String {
        self.cookie(name, value, max_age, "Lax")
    }

    /// As [`Self::set`], for a cookie that must come back with a cross-site
    /// POST (a SAML IdP's answer): SameSite=None, which browsers take only
    /// with Secure, so plain-HTTP dev mode keeps Lax (its IdPs are on
    /// loopback: the same site).
    pub fn set_cross_site(&self, name: &str, value: &str, max_age: u64) -> String {
        self.cookie(
            name,
            value,
            max_age,
            if self.secure { "None" } else { "Lax" },
        )
    }

    fn cookie(&self, name: &str, value: &str, max_age: u64, same_site: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}")
    }
}

/// The handle of the session a cookie names.
pub fn handle(id: &str) -> String {
    crate::crypto::digest(id)
}

/// Starts a session; returns the cookie value.
pub async fn create(
    store: &Ephemeral,
    session: &Session,
    ttl: Duration,
) -> Result<String, EphemeralError> {
    let id = random_token::<32>();
    let bytes = serde_json::to_vec(session).unwrap_or_default();
    // Indexed first: a session that exists is always found by its user's
    // index; an index entry without a session is dropped when read.
    store
        .add_member(&keys::sessions_of_user(&session.user_id), &handle(&id), ttl)
        .await?;
    store.put(&keys::session(&id), &bytes, ttl).await?;
    Ok(id)
}

/// A stored record; one that does not parse (an older format) is none.
fn parse(bytes: Option<Vec<u8>>) -> Option<Session> {
    bytes.and_then(|b| serde_json::from_slice(&b).ok())
}

/// The session a cookie names, if live.
pub async fn load(store: &Ephemeral, id: &str) -> Result<Option<Session>, EphemeralError> {
    Ok(parse(store.get(&keys::session(id)).await?))
}

/// Ends the session a cookie names; what it was, if it was live.
pub async fn end(store: &Ephemeral, id: &str) -> Result<Option<Session>, EphemeralError> {
    let session = parse(store.take(&keys::session(id)).await?);
    if let Some(s) = &session {
        store
            .remove_member(&keys::sessions_of_user(&s.user_id), &handle(id))
            .await?;
    }
    Ok(session)
}

/// The live sessions of a user, with their handles, oldest first.
pub async fn of_user(
    store: &Ephemeral,
    user_id: &str,
) -> Result<Vec<(String, Session)>, EphemeralError> {
    let index = keys::sessions_of_user(user_id);
    let mut live = Vec::new();
    for handle in store.members(&index).await? {
        match parse(store.get(&keys::session_by_handle(&handle)).await?) {
            Some(s) if s.user_id == user_id => live.push((handle, s)),
            _ => {
                store.remove_member(&index, &handle).await?;
            }
        }
    }
    live.sort_by_key(|(_, s)| s.auth_time);
    Ok(live)
}

/// Ends the session `handle` of `user_id`; what it was, or `None` when
/// the user has no such session (a handle of someone else's is not theirs
/// to end).
pub async fn end_by_handle(
    store: &Ephemeral,
    user_id: &str,
    handle: &str,
) -> Result<Option<Session>, EphemeralError> {
    if !store
        .remove_member(&keys::sessions_of_user(user_id), handle)
        .await?
    {
        return Ok(None);
    }
    Ok(parse(store.take(&keys::session_by_handle(handle)).await?))
}

/// Ends every session of `user_id` but the one `keep` (a handle); what
/// they were.
pub async fn end_all(
    store: &Ephemeral,
    user_id: &str,
    keep: Option<&str>,
) -> Result<Vec<Session>, EphemeralError> {
    let mut ended = Vec::new();
    for (handle, _) in of_user(store, user_id).await? {
        if Some(handle.as_str()) != keep
            && let Some(s) = end_by_handle(store, user_id, &handle).await?
        {
            ended.push(s);
        }
    }
    Ok(ended)
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
        let cross = secure.set_cross_site(secure.federation, "v", 60);
        assert!(
            cross.contains("SameSite=None") && cross.ends_with("; Secure"),
            "{cross}"
        );
        let dev = Cookies::new(false);
        assert!(
            dev.set_cross_site(dev.federation, "v", 60)
                .contains("SameSite=Lax")
        );
    }

    fn signed_in(user_id: &str, auth_time: i64) -> Session {
        Session {
            user_id: user_id.into(),
            auth_time,
            amr: vec!["pwd".into()],
            acr: "urn:portcullis:acr:pwd".into(),
            sid: format!("sid-{auth_time}"),
            address: Some("192.0.2.1".into()),
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn sessions_live_under_a_digest_of_their_id() {
        let store = Ephemeral::memory();
        let session = signed_in("u1", 5);
        let id = create(&store, &session, Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(load(&store, &id).await.unwrap(), Some(session.clone()));
        assert!(store.get(&format!("session:{id}")).await.unwrap().is_none());
        assert_eq!(end(&store, &id).await.unwrap(), Some(session));
        assert_eq!(load(&store, &id).await.unwrap(), None);
        assert_eq!(end(&store, &id).await.unwrap(), None);
        assert!(of_user(&store, "u1").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_user_lists_and_ends_only_their_own_sessions() {
        let store = Ephemeral::memory();
        let ttl = Duration::from_secs(60);
        let first = create(&store, &signed_in("u1", 10), ttl).await.unwrap();
        let second = create(&store, &signed_in("u1", 20), ttl).await.unwrap();
        let other = create(&store, &signed_in("u2", 30), ttl).await.unwrap();

        let listed = of_user(&store, "u1").await.unwrap();
        let handles: Vec<_> = listed.iter().map(|(h, _)| h.clone()).collect();
        assert_eq!(handles, [handle(&first), handle(&second)]);

        // Someone else's handle is not u1's to end.
        assert_eq!(
            end_by_handle(&store, "u1", &handle(&other)).await.unwrap(),
            None
        );
        assert!(load(&store, &other).await.unwrap().is_some());

        let ended = end_by_handle(&store, "u1", &handle(&first)).await.unwrap();
        assert_eq!(ended.map(|s| s.auth_time), Some(10));
        assert!(load(&store, &first).await.unwrap().is_none());

        // A session that expired by itself leaves the index when read.
        create(&store, &signed_in("u1", 40), Duration::from_millis(1))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(of_user(&store, "u1").await.unwrap().len(), 1);

        let third = create(&store, &signed_in("u1", 50), ttl).await.unwrap();
        let ended = end_all(&store, "u1", Some(&handle(&third))).await.unwrap();
        assert_eq!(ended.len(), 1);
        assert!(load(&store, &second).await.unwrap().is_none());
        assert!(load(&store, &third).await.unwrap().is_some());
        assert!(load(&store, &other).await.unwrap().is_some());
    }
}
