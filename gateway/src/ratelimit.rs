//! Per-route rate limits, keyed by client id, subject or source address.
//! Both backends run GCRA (a token bucket kept as one "theoretical arrival
//! time"): `local` with one atomic per key in this process, `global` with a
//! Lua script in Redis, so every gateway replica shares the budget.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bootstrap::redis::Redis;

use crate::config::{RateLimitConfig, RateLimitScope};

/// What a limit says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Yes,
    /// Over the limit: try again after this many whole seconds (≥ 1).
    No {
        retry_after_secs: u64,
    },
}

/// Whom a bucket belongs to.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum BucketKey<'a> {
    /// A client id or subject.
    Id(&'a str),
    /// The source address (`None` for a Unix socket peer: one shared bucket).
    Addr(Option<std::net::IpAddr>),
}

impl std::fmt::Display for BucketKey<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "id:{id}"),
            Self::Addr(Some(ip)) => write!(f, "ip:{ip}"),
            Self::Addr(None) => f.write_str("ip:-"),
        }
    }
}

/// Emission interval and burst tolerance, in microseconds.
#[derive(Debug, Clone, Copy)]
struct Gcra {
    interval: u64,
    tolerance: u64,
}

impl Gcra {
    fn new(requests_per_second: f64, burst: u32) -> Self {
        let interval = (1_000_000.0 / requests_per_second).max(1.0) as u64;
        Self {
            interval,
            tolerance: interval * u64::from(burst),
        }
    }

    /// Given the stored arrival time and now, the new one or the wait.
    fn step(self, tat: u64, now: u64) -> Result<u64, u64> {
        let next = tat.max(now) + self.interval;
        if next - now <= self.tolerance {
            Ok(next)
        } else {
            Err(next - now - self.tolerance)
        }
    }
}

fn retry_after(wait_micros: u64) -> Admit {
    Admit::No {
        retry_after_secs: wait_micros.div_ceil(1_000_000).max(1),
    }
}

/// In-process buckets: one `AtomicU64` per key, no lock on the way.
pub struct LocalLimiter {
    gcra: Gcra,
    epoch: Instant,
    /// Keyed by a randomly seeded hash of the key, so callers cannot aim at
    /// another key's bucket; idle buckets (full again) are dropped.
    buckets: moka::sync::Cache<u64, Arc<AtomicU64>>,
    hasher: std::collections::hash_map::RandomState,
}

impl LocalLimiter {
    pub fn new(requests_per_second: f64, burst: u32, max_keys: u64) -> Self {
        let gcra = Gcra::new(requests_per_second, burst);
        let idle = Duration::from_micros(gcra.tolerance + gcra.interval) + Duration::from_secs(1);
        Self {
            gcra,
            epoch: Instant::now(),
            buckets: moka::sync::Cache::builder()
                .max_capacity(max_keys)
                .time_to_idle(idle)
                .build(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Give back what one `admit` of `key` took: the request turned out
    /// not to count against the budget.
    pub fn refund(&self, key: BucketKey<'_>) {
        if let Some(bucket) = self.buckets.get(&self.hasher.hash_one(key)) {
            let interval = self.gcra.interval;
            let _ = bucket.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |tat| {
                Some(tat.saturating_sub(interval))
            });
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    pub fn admit(&self, key: BucketKey<'_>) -> Admit {
        let now = self.now();
        let bucket = self
            .buckets
            .get_with(self.hasher.hash_one(key), || Arc::new(AtomicU64::new(0)));
        let mut tat = bucket.load(Ordering::Relaxed);
        loop {
            match self.gcra.step(tat, now) {
                Err(wait) => return retry_after(wait),
                Ok(next) => match bucket.compare_exchange_weak(
                    tat,
                    next,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Admit::Yes,
                    Err(current) => tat = current,
                },
            }
        }
    }
}

/// GCRA in one atomic step on the Redis server, on the server's clock (the
/// replicas' clocks may differ). Returns 0 to admit, else the wait in µs.
const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
if next - now > tolerance then return next - now - tolerance end
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000) + 1)
return 0
";

/// Buckets in Redis, shared by every gateway using the same prefix. One
/// key per bucket, so a cluster spreads them over its slots.
pub struct GlobalLimiter {
    gcra: Gcra,
    redis: Arc<Redis>,
    prefix: String,
    script: redis::Script,
}

#[derive(Debug, thiserror::Error)]
#[error("rate-limit store: {0}")]
pub struct StoreError(String);

impl GlobalLimiter {
    pub fn new(config: &RateLimitConfig, redis: Arc<Redis>, prefix: String) -> Self {
        Self {
            gcra: Gcra::new(config.requests_per_second, config.burst),
            redis,
            prefix,
            script: redis::Script::new(GCRA_SCRIPT),
        }
    }

    pub async fn admit(&self, key: BucketKey<'_>) -> Result<Admit, StoreError> {
        let mut conn = self
            .redis
            .connection()
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        let wait: u64 = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(self.gcra.interval)
            .arg(self.gcra.tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| StoreError(e.to_string()))?;
        Ok(if wait == 0 {
            Admit::Yes
        } else {
            retry_after(wait)
        })
    }
}

/// A route's limiter.
pub enum Limiter {
    Local(LocalLimiter),
    Global(GlobalLimiter),
}

impl Limiter {
    /// `prefix` names the route's keys in Redis.
    pub fn new(config: &RateLimitConfig, redis: Option<&Arc<Redis>>, prefix: &str) -> Self {
        match (config.scope, redis) {
            (RateLimitScope::Global, Some(redis)) => {
                Self::Global(GlobalLimiter::new(config, redis.clone(), prefix.to_owned()))
            }
            _ => Self::Local(LocalLimiter::new(
                config.requests_per_second,
                config.burst,
                config.max_keys,
            )),
        }
    }

    /// A store that cannot answer admits the request (like Envoy's global
    /// rate limit with `failure_mode_deny: false`): an outage of Redis must
    /// not become an outage of every route. The caller counts it.
    pub async fn admit(&self, key: BucketKey<'_>) -> Result<Admit, StoreError> {
        match self {
            Self::Local(l) => Ok(l.admit(key)),
            Self::Global(g) => g.admit(key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_allows_the_burst_then_the_rate() {
        // 10/s with a burst of 3: interval 100 ms.
        let g = Gcra {
            interval: 100_000,
            tolerance: 300_000,
        };
        let mut tat = 0;
        for _ in 0..3 {
            tat = g.step(tat, 1_000_000).unwrap();
        }
        let wait = g.step(tat, 1_000_000).unwrap_err();
        assert_eq!(wait, 100_000, "one interval until the next token");
        assert!(g.step(tat, 1_100_000).is_ok(), "a token per interval");
        assert_eq!(
            retry_after(1),
            Admit::No {
                retry_after_secs: 1
            }
        );
        assert_eq!(
            retry_after(2_000_001),
            Admit::No {
                retry_after_secs: 3
            }
        );
    }
}
