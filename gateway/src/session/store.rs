//! Where a session lives: sealed in its cookie when it fits, else sealed
//! in Redis behind a pointer cookie; and how a stored session is read back.

use std::sync::Arc;

use bootstrap::redis::{Connection, Redis};
use serde::{Deserialize, Serialize};

use crate::now_secs;

use super::*;

/// What the session cookie (or Redis) holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stored {
    pub(super) sid: String,
    pub(super) access_token: String,
    pub(super) refresh_token: Option<String>,
    pub(super) id_token: Option<String>,
    pub(super) access_expires_at: u64,
    /// The session ends here, refreshed or not.
    pub(super) expires_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub(super) enum CookieValue {
    Inline(Stored),
    /// The session lives in Redis under this id.
    Remote {
        sid: String,
    },
}

impl Sessions {
    /// The cookie value for `stored`: inline when it fits, else a pointer
    /// to Redis (where the session is sealed too).
    pub(super) async fn seal(&self, stored: &Stored) -> Result<String, SessionError> {
        let plain = serde_json::to_vec(&CookieValue::Inline(stored.clone()))
            .map_err(|e| SessionError::Store(e.to_string()))?;
        let inline = self.session_sealer.seal(&self.cookie, &plain);
        let too_large = inline.len() > MAX_COOKIE_BYTES;
        let server_side = match self.config.store {
            SessionStore::Cookie => false,
            SessionStore::Auto => too_large,
            SessionStore::Redis => true,
        };
        let redis = match (&self.redis, server_side) {
            (_, false) if !too_large => return Ok(inline),
            (Some(redis), true) => redis,
            _ => {
                return Err(SessionError::Store(format!(
                    "the session is {} bytes sealed, more than a cookie holds; set `redis_url` and `session.store`",
                    inline.len()
                )));
            }
        };
        let ttl = stored.expires_at.saturating_sub(now_secs()).max(1);
        redis.put(&stored.sid, &inline, ttl).await?;
        let pointer = serde_json::to_vec(&CookieValue::Remote {
            sid: stored.sid.clone(),
        })
        .map_err(|e| SessionError::Store(e.to_string()))?;
        let sealed = self.session_sealer.seal(&self.cookie, &pointer);
        Ok(format!("{POINTER_MARK}{sealed}"))
    }

    /// The session a cookie value names; `None` for none (forged, ended,
    /// expired from Redis), an error when Redis cannot say.
    pub(super) async fn open(&self, value: &str) -> Result<Option<Active>, SessionError> {
        let (value, pointer) = match value.strip_prefix(POINTER_MARK) {
            Some(v) => (v, true),
            None => (value, false),
        };
        let Some(cookie) = self.unseal(value) else {
            return Ok(None);
        };
        let stored = match cookie {
            CookieValue::Inline(s) if !pointer => s,
            CookieValue::Remote { sid } if pointer => {
                let Some(redis) = &self.redis else {
                    return Ok(None);
                };
                match redis.get(&sid).await?.and_then(|v| self.unseal(&v)) {
                    Some(CookieValue::Inline(s)) if s.sid == sid => s,
                    _ => return Ok(None),
                }
            }
            _ => return Ok(None),
        };
        Ok(decode(stored, self.subject_prefix.as_deref()))
    }

    fn unseal(&self, sealed: &str) -> Option<CookieValue> {
        let plain = self.session_sealer.open(&self.cookie, sealed)?;
        serde_json::from_slice(&plain).ok()
    }
}

/// Cookie values pointing into Redis start with this (never base64url).
pub(super) const POINTER_MARK: &str = "r.";

/// A stored session's tokens read back (they were verified when stored;
/// the sealed cookie vouches for them), subjects qualified as verified.
pub(super) fn decode(stored: Stored, subject_prefix: Option<&str>) -> Option<Active> {
    let mut payload = jwt_payload(&stored.access_token)?;
    tokens::qualify(&mut payload, subject_prefix);
    let claims = decision::Claims::from_json(&payload).ok()?;
    let profile = stored
        .id_token
        .as_deref()
        .and_then(jwt_payload)
        .unwrap_or_default();
    let (upstream_sid, upstream_sub, began_at) = backchannel::upstream_of(&profile, &payload);
    Some(Active {
        access_digest: crate::sha256(stored.access_token.as_bytes()),
        stored,
        payload,
        claims,
        profile,
        renewed_cookie: None,
        upstream_sid,
        upstream_sub,
        began_at,
    })
}

/// Sessions too large for a cookie, sealed, in Redis; and what
/// back-channel logouts ended, for every replica. Each key stands alone (a
/// cluster spreads them over its slots); the two marks a request reads
/// are read together but need not be read atomically.
pub(super) struct RedisSessions {
    redis: Arc<Redis>,
    prefix: String,
    /// Ended sign-ins and used logout tokens.
    logout_prefix: String,
}

impl RedisSessions {
    pub(super) fn new(redis: Arc<Redis>, prefix: &str) -> Self {
        Self {
            redis,
            prefix: format!("{prefix}session:"),
            logout_prefix: format!("{prefix}logout:"),
        }
    }

    async fn conn(&self) -> Result<Connection, SessionError> {
        self.redis
            .connection()
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    pub(super) async fn put(
        &self,
        sid: &str,
        value: &str,
        ttl_secs: u64,
    ) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(format!("{}{sid}", self.prefix))
            .arg(value)
            .arg("EX")
            .arg(ttl_secs)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    pub(super) async fn get(&self, sid: &str) -> Result<Option<String>, SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("GET")
            .arg(format!("{}{sid}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    /// Sets `key` to `value` for `ttl_secs`.
    pub(super) async fn mark(
        &self,
        key: &str,
        value: u64,
        ttl_secs: u64,
    ) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(format!("{}{key}", self.logout_prefix))
            .arg(value)
            .arg("EX")
            .arg(ttl_secs.max(1))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    /// The marks of a sign-in's `sid` and `sub` keys, either absent.
    pub(super) async fn marks(
        &self,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<(Option<u64>, Option<u64>), SessionError> {
        if sid.is_none() && sub.is_none() {
            return Ok((None, None));
        }
        let mut conn = self.conn().await?;
        // An absent key reads as nothing (never a real mark).
        let key = |k: Option<&str>| format!("{}{}", self.logout_prefix, k.unwrap_or("-"));
        let (a, b): (Option<u64>, Option<u64>) = redis::cmd("MGET")
            .arg(key(sid))
            .arg(key(sub))
            .query_async(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))?;
        Ok((a.filter(|_| sid.is_some()), b.filter(|_| sub.is_some())))
    }

    /// Whether `key` is set.
    pub(super) async fn marked(&self, key: &str) -> Result<bool, SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("EXISTS")
            .arg(format!("{}{key}", self.logout_prefix))
            .query_async::<i64>(&mut conn)
            .await
            .map(|n| n > 0)
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    pub(super) async fn delete(&self, sid: &str) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(format!("{}{sid}", self.prefix))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }
}
