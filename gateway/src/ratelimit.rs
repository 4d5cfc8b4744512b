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
    breaker: Breaker,
    epoch: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("rate-limit store: {0}")]
    Failed(String),
    /// Not asked: it failed within the last `STORE_COOL_DOWN`.
    #[error("rate-limit store: not asked, it failed within the last second")]
    Skipped,
}

/// After the store fails, requests skip it for this long, then one request
/// asks it again: a Redis outage costs one store timeout per cool-down,
/// not one per request (measured by `loadtest faults`).
const STORE_COOL_DOWN: Duration = Duration::from_secs(1);

/// Whether the store is asked: closed while it answers; open for a
/// cool-down after a failure; then half-open, when the first caller
/// probes it and the others keep skipping until the probe answers.
/// `open_until` is in microseconds since the limiter's epoch, 0 when closed.
#[derive(Debug, Default)]
struct Breaker {
    open_until: AtomicU64,
}

impl Breaker {
    fn cool_down() -> u64 {
        u64::try_from(STORE_COOL_DOWN.as_micros()).unwrap_or(u64::MAX)
    }

    /// Whether this caller may ask the store at `now`.
    fn may_ask(&self, now: u64) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        if now < until {
            return false;
        }
        // The first caller past the cool-down probes; the others find the
        // cool-down renewed and skip.
        self.open_until
            .compare_exchange(
                until,
                now.saturating_add(Self::cool_down()),
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_ok()
    }

    fn answered(&self) {
        self.open_until.store(0, Ordering::Release);
    }

    fn failed(&self, now: u64) {
        self.open_until.store(
            now.saturating_add(Self::cool_down()).max(1),
            Ordering::Release,
        );
    }
}

impl GlobalLimiter {
    pub fn new(config: &RateLimitConfig, redis: Arc<Redis>, prefix: String) -> Self {
        Self {
            gcra: Gcra::new(config.requests_per_second, config.burst),
            redis,
            prefix,
            script: redis::Script::new(GCRA_SCRIPT),
            breaker: Breaker::default(),
            epoch: Instant::now(),
        }
    }

    pub async fn admit(&self, key: BucketKey<'_>) -> Result<Admit, StoreError> {
        let now = || u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX);
        if !self.breaker.may_ask(now()) {
            return Err(StoreError::Skipped);
        }
        match self.ask(key).await {
            Ok(admit) => {
                self.breaker.answered();
                Ok(admit)
            }
            Err(e) => {
                self.breaker.failed(now());
                Err(e)
            }
        }
    }

    async fn ask(&self, key: BucketKey<'_>) -> Result<Admit, StoreError> {
        let failed = |e: redis::RedisError| StoreError::Failed(e.to_string());
        let mut conn = self.redis.connection().await.map_err(failed)?;
        let wait: u64 = self
            .script
            .key(format!("{}{key}", self.prefix))
            .arg(self.gcra.interval)
            .arg(self.gcra.tolerance)
            .invoke_async(&mut conn)
            .await
            .map_err(failed)?;
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
    fn a_failed_store_is_skipped_for_the_cool_down_then_probed_once() {
        let b = Breaker::default();
        let cool = Breaker::cool_down();
        assert!(b.may_ask(5) && b.may_ask(6), "closed: everyone asks");
        b.failed(10);
        assert!(!b.may_ask(11), "open: skipped");
        assert!(!b.may_ask(10 + cool - 1));
        assert!(b.may_ask(10 + cool), "half-open: the first caller probes");
        assert!(!b.may_ask(10 + cool), "and the others do not");
        assert!(!b.may_ask(10 + 2 * cool - 1));
        b.failed(10 + cool + 3);
        assert!(!b.may_ask(10 + 2 * cool), "the probe failed: open again");
        assert!(b.may_ask(10 + 2 * cool + 3));
        b.answered();
        assert!(b.may_ask(0) && b.may_ask(1), "the probe answered: closed");
        b.failed(0);
        assert!(!b.may_ask(0), "a failure at the epoch opens it too");
    }

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
