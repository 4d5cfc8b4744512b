//! Short-lived state: sessions, authorization codes, PKCE and nonce data,
//! rate-limit windows, revoked token ids, refresh-token families.
//!
//! Redis in production (shared by every authserver replica), in-process in
//! embedded mode. One interface; both pass one test suite. Everything here
//! expires by itself; nothing here is the only copy of something durable.

use std::time::Duration;
use tracing::instrument;

pub mod keys;
mod memory;
mod redis_store;

pub use memory::Memory;
pub use redis_store::RedisStore;

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis_url {0}")]
    Url(#[from] bootstrap::redis::UrlError),
}

/// The ephemeral store. Cheap to clone.
#[derive(Clone)]
pub enum Ephemeral {
    Memory(std::sync::Arc<Memory>),
    Redis(RedisStore),
}

impl std::fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.backend_name())
    }
}

impl Ephemeral {
    pub fn memory() -> Self {
        Self::Memory(std::sync::Arc::new(Memory::default()))
    }

    /// Connects to `redis://…`; every key is put under `prefix`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        Ok(Self::Redis(RedisStore::connect(url, prefix).await?))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Memory(_) => "memory",
            Self::Redis(_) => "redis",
        }
    }

    #[instrument(name = "ephemeral.ping", skip_all)]
    pub async fn ping(&self) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(_) => Ok(()),
            Self::Redis(r) => r.ping().await,
        }
    }

    /// Stores `value` under `key` for `ttl`, replacing what was there.
    #[instrument(name = "ephemeral.put", skip_all)]
    pub async fn put(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(m) => {
                m.put(key, value, ttl, false);
                Ok(())
            }
            Self::Redis(r) => r.put(key, value, ttl, false).await.map(|_| ()),
        }
    }

    /// Stores `value` only if `key` holds nothing; `false` if it did. The
    /// primitive behind single use (replayed `jti`s, used codes).
    #[instrument(name = "ephemeral.put_new", skip_all)]
    pub async fn put_new(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<bool, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.put(key, value, ttl, true)),
            Self::Redis(r) => r.put(key, value, ttl, true).await,
        }
    }

    #[instrument(name = "ephemeral.get", skip_all)]
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.get(key)),
            Self::Redis(r) => r.get(key).await,
        }
    }

    /// Reads and removes `key` atomically: of two concurrent takers, one
    /// gets the value.
    #[instrument(name = "ephemeral.take", skip_all)]
    pub async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.take(key)),
            Self::Redis(r) => r.take(key).await,
        }
    }

    /// Removes `key`, whether it holds a value or a window.
    #[instrument(name = "ephemeral.delete", skip_all)]
    pub async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(m) => {
                m.delete(key);
                Ok(())
            }
            Self::Redis(r) => r.delete(key).await,
        }
    }

    /// Adds `member` to the set `key` (an index: a user's sessions); the
    /// set lives at least `ttl` from now. Members have no expiry of their
    /// own: what they name expires, and readers drop what is gone.
    #[instrument(name = "ephemeral.add_member", skip_all)]
    pub async fn add_member(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), EphemeralError> {
        match self {
            Self::Memory(m) => {
                m.add_member(key, member, ttl);
                Ok(())
            }
            Self::Redis(r) => r.add_member(key, member, ttl).await,
        }
    }

    /// The members of the set `key`, in no particular order.
    #[instrument(name = "ephemeral.members", skip_all)]
    pub async fn members(&self, key: &str) -> Result<Vec<String>, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.members(key)),
            Self::Redis(r) => r.members(key).await,
        }
    }

    /// Removes `member` from the set `key`; `false` if it was not there.
    #[instrument(name = "ephemeral.remove_member", skip_all)]
    pub async fn remove_member(&self, key: &str, member: &str) -> Result<bool, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.remove_member(key, member)),
            Self::Redis(r) => r.remove_member(key, member).await,
        }
    }

    /// Records one event at `now_ms` in the sliding window `key` and returns
    /// how many events the last `window` holds, this one included.
    #[instrument(name = "ephemeral.hit", skip_all)]
    pub async fn hit(
        &self,
        key: &str,
        window: Duration,
        now_ms: i64,
    ) -> Result<u64, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.window(key, window, now_ms, true)),
            Self::Redis(r) => r.window(key, window, now_ms, true).await,
        }
    }

    /// How many events the sliding window `key` holds, without adding one.
    #[instrument(name = "ephemeral.hits", skip_all)]
    pub async fn hits(
        &self,
        key: &str,
        window: Duration,
        now_ms: i64,
    ) -> Result<u64, EphemeralError> {
        match self {
            Self::Memory(m) => Ok(m.window(key, window, now_ms, false)),
            Self::Redis(r) => r.window(key, window, now_ms, false).await,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}
