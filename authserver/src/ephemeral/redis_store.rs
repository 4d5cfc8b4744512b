//! The Redis ephemeral store of production mode: one server or a Redis
//! Cluster, shared by all replicas, reconnecting by itself. Every operation
//! touches one key, so any key may live in any slot.

use std::time::Duration;

use bootstrap::redis::{Connection, Redis};
use redis::AsyncCommands;

use super::{EphemeralError, millis};

#[derive(Clone)]
pub struct RedisStore {
    conn: Connection,
    prefix: String,
}

/// Bounds connecting and each command, a cluster's retries included.
const TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    pub(super) async fn connect(url: &str, prefix: &str) -> Result<Self, EphemeralError> {
        let redis = Redis::new(url, TIMEOUT)?;
        let conn = redis.connection().await?;
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    fn key(&self, key: &str) -> String {
        let mut k = String::with_capacity(self.prefix.len() + key.len());
        k.push_str(&self.prefix);
        k.push_str(key);
        k
    }

    pub(super) async fn ping(&self) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    pub(super) async fn put(
        &self,
        key: &str,
        value: &[u8],
        ttl: Duration,
        only_new: bool,
    ) -> Result<bool, EphemeralError> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl));
        if only_new {
            cmd.arg("NX");
        }
        let reply: Option<String> = cmd.query_async(&mut conn).await?;
        Ok(reply.is_some())
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.conn.clone();
        Ok(conn.get(self.key(key)).await?)
    }

    pub(super) async fn take(&self, key: &str) -> Result<Option<Vec<u8>>, EphemeralError> {
        let mut conn = self.conn.clone();
        Ok(redis::cmd("GETDEL")
            .arg(self.key(key))
            .query_async(&mut conn)
            .await?)
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.key(key)).await?;
        Ok(())
    }

    /// SADD, then the expiry pushed out to at least `ttl` (NX: a new set
    /// has none; GT: never shortened), in one transaction.
    pub(super) async fn add_member(
        &self,
        key: &str,
        member: &str,
        ttl: Duration,
    ) -> Result<(), EphemeralError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let ms = millis(ttl);
        redis::pipe()
            .atomic()
            .cmd("SADD")
            .arg(&key)
            .arg(member)
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms)
            .arg("NX")
            .ignore()
            .cmd("PEXPIRE")
            .arg(&key)
            .arg(ms)
            .arg("GT")
            .ignore()
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn members(&self, key: &str) -> Result<Vec<String>, EphemeralError> {
        let mut conn = self.conn.clone();
        Ok(conn.smembers(self.key(key)).await?)
    }

    pub(super) async fn remove_member(
        &self,
        key: &str,
        member: &str,
    ) -> Result<bool, EphemeralError> {
        let mut conn = self.conn.clone();
        let removed: i64 = conn.srem(self.key(key), member).await?;
        Ok(removed > 0)
    }

    /// A sorted set of event times per window, trimmed, added to and counted
    /// in one atomic transaction.
    pub(super) async fn window(
        &self,
        key: &str,
        window: Duration,
        now_ms: i64,
        add: bool,
    ) -> Result<u64, EphemeralError> {
        let mut conn = self.conn.clone();
        let key = self.key(key);
        let since = now_ms - millis(window);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("ZREMRANGEBYSCORE")
            .arg(&key)
            .arg("-inf")
            .arg(since)
            .ignore();
        if add {
            // Members must be unique for two events in the same millisecond
            // to count twice.
            let member = format!("{now_ms}:{}", random_u64());
            pipe.cmd("ZADD")
                .arg(&key)
                .arg(now_ms)
                .arg(member)
                .ignore()
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(millis(window))
                .ignore();
        }
        pipe.cmd("ZCARD").arg(&key);
        let (count,): (u64,) = pipe.query_async(&mut conn).await?;
        Ok(count)
    }
}

fn random_u64() -> u64 {
    u64::from_le_bytes(bootstrap::random::bytes())
}
