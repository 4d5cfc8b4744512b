//! Authorization for routes with `policy = true`. Two interchangeable
//! deciders give the same `Verdict`: the sidecar over ext_authz v3 gRPC
//! (HTTP/2, a small pool of multiplexed connections, a deadline, a bounded
//! decision cache), or the sidecar's engine linked in-process.
//!
//! Sidecar verdicts are cached under SHA-256 of token, method, host, path
//! and source address, each for min(configured TTL, token `exp` − now)
//! cut by up to a fifth by key (so decisions made together do not expire
//! together), single flight per key (requests that miss together share
//! one `Check`). Each verdict carries the `policy_version` the sidecar
//! reported; a new version empties the cache. With the change feed, each
//! also carries the feed cursor the sidecar's directory reflected, and one
//! from before the last entity change the gateway's own follower saw is
//! neither reused nor kept. Embedded verdicts are cached
//! per policy generation and token `exp`. No answer is an `AuthzError`: a
//! 503 unless the route fails open.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use decision::ext_authz::{self, Denial};
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::value::Kind;
use http::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tonic::transport::{Channel, Endpoint};

use crate::config::SidecarConfig;
use crate::metrics::Metrics;

/// What the decider said. On an allow, `headers` are set on the upstream
/// request (after `remove`); on a deny, `status`, `headers` and `body` are
/// the response.
#[derive(Debug)]
pub struct Verdict {
    pub allowed: bool,
    pub status: u16,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub remove: Vec<HeaderName>,
    pub body: Bytes,
    /// On a deny that asks for a stronger sign-in (RFC 9470): the
    /// `acr_values` and `max_age`, read back from the challenge.
    pub step_up: Option<(String, Option<u64>)>,
    /// The policy set that decided (sidecar verdicts only).
    version: Option<Arc<str>>,
    /// The change feed's cursor the sidecar's directory reflected.
    feed_cursor: Option<i64>,
    /// How long it may be reused.
    ttl: Duration,
}

impl Verdict {
    fn allow() -> Self {
        Self {
            allowed: true,
            status: 200,
            headers: Vec::new(),
            remove: Vec::new(),
            body: Bytes::new(),
            step_up: None,
            version: None,
            feed_cursor: None,
            ttl: Duration::ZERO,
        }
    }

    /// The contract's denial as the response it is, whichever engine
    /// decided.
    fn denied(denial: &Denial) -> Self {
        let mut headers = vec![(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        if let Some(c) = denial
            .challenge
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            headers.push((http::header::WWW_AUTHENTICATE, c));
        }
        Self {
            allowed: false,
            status: denial.status,
            headers,
            remove: Vec::new(),
            body: Bytes::from(denial.body.clone()),
            step_up: denial
                .challenge
                .as_deref()
                .and_then(decision::challenge::step_up_of),
            version: None,
            feed_cursor: None,
            ttl: Duration::ZERO,
        }
    }
}

/// The request as the decider sees it.
pub struct Query<'a> {
    pub method: &'a str,
    /// Normalised path, query included (the decider ignores the query).
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub source: Option<IpAddr>,
    pub request_id: &'a str,
    /// SHA-256 of the token behind the claims, only as part of the cache
    /// key; the token itself is never sent.
    pub token_digest: Option<&'a [u8; 32]>,
    /// The verified payload and its `exp`.
    pub claims: Option<(&'a Map<String, Value>, u64)>,
    /// The same claims as the engine reads them.
    pub parsed: Option<&'a decision::Claims>,
    /// With tracing on: the decision phase's `traceparent`, for the
    /// sidecar's metadata (made only when the sidecar is asked).
    pub traceparent: Option<&'a (dyn Fn() -> String + Sync)>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthzError {
    #[error("policy decision point unreachable: {0}")]
    Unavailable(String),
    #[error("policy decision point missed the {0:?} deadline")]
    Deadline(Duration),
}

impl AuthzError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "unavailable",
            Self::Deadline(_) => "deadline",
        }
    }
}

pub enum Authorizer {
    Embedded(Embedded),
    Sidecar(Box<SidecarClient>),
}

impl Authorizer {
    pub fn embedded(engine: Arc<decision::Engine>) -> Self {
        Self::Embedded(Embedded {
            engine,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(5))
                .build(),
            allow: Arc::new(Verdict::allow()),
            forbidden: Arc::new(Verdict::denied(&ext_authz::refusal(true, None))),
            unauthenticated: Arc::new(Verdict::denied(&ext_authz::refusal(false, None))),
        })
    }

    pub async fn check(
        &self,
        query: &Query<'_>,
        metrics: &Metrics,
    ) -> Result<Arc<Verdict>, AuthzError> {
        let started = Instant::now();
        let result = match self {
            Self::Embedded(e) => Ok(e.check(query, metrics)),
            Self::Sidecar(s) => s.check(query, metrics).await,
        };
        let histogram = match self {
            Self::Embedded(_) => &metrics.decision_embedded,
            Self::Sidecar(_) => &metrics.decision_sidecar,
        };
        histogram.observe(started.elapsed().as_secs_f64());
        result
    }
}

pub struct Embedded {
    engine: Arc<decision::Engine>,
    /// Verdicts by the same key as the sidecar's, with the engine's policy
    /// generation and the token's `exp`: a reload or entity write, or the
    /// token expiring, makes an entry unusable.
    cache: moka::sync::Cache<Key, (u64, u64, Arc<Verdict>)>,
    allow: Arc<Verdict>,
    forbidden: Arc<Verdict>,
    unauthenticated: Arc<Verdict>,
}

impl Embedded {
    fn check(&self, query: &Query<'_>, metrics: &Metrics) -> Arc<Verdict> {
        let generation = self.engine.snapshot().generation;
        let key = cache_key(query);
        let expires_at = query.claims.map_or(u64::MAX, |(_, exp)| exp);
        if let Some((g, exp, verdict)) = self.cache.get(&key)
            && g == generation
            && exp > crate::now_secs()
        {
            metrics.decision_hits.inc();
            return verdict;
        }
        metrics.decision_misses.inc();
        let verdict = self.decide(query);
        self.cache
            .insert(key, (generation, expires_at, verdict.clone()));
        verdict
    }

    fn decide(&self, query: &Query<'_>) -> Arc<Verdict> {
        let decision = self.engine.check(&decision::CheckRequest {
            method: query.method,
            path: query.path,
            host: query.host,
            source: query.source,
            claims: query.parsed,
            request_id: Some(query.request_id),
            time: None,
        });
        if decision.allowed() {
            self.allow.clone()
        } else if query.parsed.is_none() {
            self.unauthenticated.clone()
        } else if let Some(step) = &decision.outcome.step_up {
            Arc::new(Verdict::denied(&ext_authz::refusal(true, Some(step))))
        } else {
            self.forbidden.clone()
        }
    }
}

type Key = [u8; 32];

/// ext_authz client for the sidecar.
pub struct SidecarClient {
    endpoint: Endpoint,
    /// Created on first use, inside the proxy's runtime (a channel's
    /// connection task lives on the runtime that made it).
    pool: OnceLock<Vec<AuthorizationClient<Channel>>>,
    connections: usize,
    next: AtomicUsize,
    deadline: Duration,
    /// Verdicts by key; concurrent misses of one key share one check.
    cache: Option<moka::future::Cache<Key, Arc<Verdict>>>,
    cache_ttl: Duration,
    /// The policy version of the latest answer; cached verdicts of any other
    /// version are not used.
    version: ArcSwap<Arc<str>>,
    /// The feed cursor of the last entity change the gateway's follower
    /// saw: verdicts from a directory behind it are outdated.
    feed_changed: Arc<AtomicI64>,
}

/// The gateway's follower tells the sidecar client where the last entity
/// change is (the sidecar applies it; cached verdicts must wait for that).
struct FeedChanges(Arc<AtomicI64>);

impl feed::Sink for FeedChanges {
    fn reset(&self, _entities: Vec<Value>, cursor: i64) {
        self.0.fetch_max(cursor, Ordering::Release);
    }

    fn apply(&self, changes: Vec<Value>, cursor: i64) {
        if !changes.is_empty() {
            self.0.fetch_max(cursor, Ordering::Release);
        }
    }
}

/// Each cached verdict lives for its own TTL (never past the token's `exp`;
/// zero for one that may not be reused).
struct PerEntryTtl;

impl moka::Expiry<Key, Arc<Verdict>> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &Key,
        value: &Arc<Verdict>,
        _now: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

impl SidecarClient {
    pub fn new(config: &SidecarConfig) -> Result<Self, String> {
        let endpoint = Endpoint::from_shared(config.address.clone())
            .map_err(|e| format!("`sidecar.address` {:?}: {e}", config.address))?
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30));
        let cache = (config.cache_entries > 0 && config.cache_ttl_secs > 0).then(|| {
            moka::future::Cache::builder()
                .max_capacity(config.cache_entries)
                .expire_after(PerEntryTtl)
                .build()
        });
        Ok(Self {
            endpoint,
            pool: OnceLock::new(),
            connections: config.connections,
            next: AtomicUsize::new(0),
            deadline: Duration::from_millis(config.deadline_ms),
            cache,
            cache_ttl: Duration::from_secs(config.cache_ttl_secs),
            version: ArcSwap::from_pointee(Arc::from("")),
            feed_changed: Arc::default(),
        })
    }

    /// What the gateway's change-feed follower reports entity changes to.
    pub fn feed_sink(&self) -> Arc<dyn feed::Sink> {
        Arc::new(FeedChanges(self.feed_changed.clone()))
    }

    /// Whether a verdict's directory was at least as current as the last
    /// entity change the gateway knows of (a sidecar without a feed
    /// reports no cursor: nothing to wait for).
    fn fresh(&self, verdict: &Verdict) -> bool {
        verdict
            .feed_cursor
            .is_none_or(|c| c >= self.feed_changed.load(Ordering::Acquire))
    }

    fn is_current(&self, version: &str) -> bool {
        let current: &Arc<str> = &self.version.load();
        **current == *version
    }

    fn client(&self) -> AuthorizationClient<Channel> {
        let pool = self.pool.get_or_init(|| {
            (0..self.connections)
                .map(|_| AuthorizationClient::new(self.endpoint.connect_lazy()))
                .collect()
        });
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        pool[n % pool.len()].clone()
    }

    async fn check(
        &self,
        query: &Query<'_>,
        metrics: &Metrics,
    ) -> Result<Arc<Verdict>, AuthzError> {
        // The gRPC call's future is large; boxed, it is moved only when the
        // sidecar is asked, not with every request's future.
        let Some(cache) = &self.cache else {
            return Box::pin(self.ask(query, Duration::ZERO))
                .await
                .map(Arc::new);
        };
        let key = cache_key(query);
        if let Some(hit) = cache.get(&key).await {
            if hit.version.as_deref().is_some_and(|v| self.is_current(v)) && self.fresh(&hit) {
                metrics.decision_hits.inc();
                return Ok(hit);
            }
            cache.invalidate(&key).await;
        }
        Box::pin(self.miss(cache, key, query, metrics)).await
    }

    /// A verdict not in the cache. When an entry expires under load, every
    /// request for it misses at once; one check answers them all instead of
    /// a burst of identical ones racing the deadline.
    async fn miss(
        &self,
        cache: &moka::future::Cache<Key, Arc<Verdict>>,
        key: Key,
        query: &Query<'_>,
        metrics: &Metrics,
    ) -> Result<Arc<Verdict>, AuthzError> {
        let mut asked = false;
        let ttl = spread(self.cache_ttl, &key);
        let verdict = cache
            .try_get_with(key, async {
                asked = true;
                self.ask(query, ttl).await.map(Arc::new)
            })
            .await
            .map_err(|e| (*e).clone())?;
        if asked {
            metrics.decision_misses.inc();
        } else {
            metrics.decision_hits.inc();
        }
        Ok(verdict)
    }

    /// One ext_authz check, with how long its verdict may be reused: `ttl`,
    /// never past the token's `exp`, zero without a policy version to tie
    /// it to.
    async fn ask(&self, query: &Query<'_>, ttl: Duration) -> Result<Verdict, AuthzError> {
        let mut request = tonic::Request::new(check_request(query));
        if let Some(value) = query.traceparent.and_then(|make| make().parse().ok()) {
            request.metadata_mut().insert("traceparent", value);
        }
        let mut client = self.client();
        let response = tokio::time::timeout(self.deadline, client.check(request))
            .await
            .map_err(|_| AuthzError::Deadline(self.deadline))?
            .map_err(|status| AuthzError::Unavailable(status.message().to_owned()))?
            .into_inner();
        let mut verdict = verdict(&response);
        if let Some(version) = &verdict.version
            && !self.is_current(version)
        {
            // A new policy set: nothing decided by the old one is reused.
            self.version.store(Arc::new(version.clone()));
            if let Some(cache) = &self.cache {
                cache.invalidate_all();
            }
        }
        // Reused only when tied to a policy version and not from before a
        // directory change the gateway knows of.
        if verdict.version.is_some() && self.fresh(&verdict) {
            let left = query.claims.map_or(ttl, |(_, exp)| {
                Duration::from_secs(exp.saturating_sub(crate::now_secs()))
            });
            verdict.ttl = ttl.min(left);
        }
        Ok(verdict)
    }
}

/// The cache TTL shortened by up to a fifth, by key: decisions first made
/// together (a burst of new tokens, a restart under load) do not all expire
/// in the same instant and go back to the sidecar at once.
fn spread(ttl: Duration, key: &Key) -> Duration {
    ttl - ttl * u32::from(key[0] % 21) / 100
}

/// Everything a decision depends on, hashed: the token (which fixes the
/// claims; its digest, already worked out to find the claims), the request
/// line, the host and the source address.
fn cache_key(query: &Query<'_>) -> Key {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let path = query.path.split_once('?').map_or(query.path, |(p, _)| p);
    ctx.update(query.token_digest.map_or(&[0; 32], |d| d));
    for part in [query.method, query.host.unwrap_or(""), path] {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    match query.source {
        Some(IpAddr::V4(ip)) => ctx.update(&ip.octets()),
        Some(IpAddr::V6(ip)) => ctx.update(&ip.octets()),
        None => ctx.update(b"-"),
    }
    let mut key = [0u8; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// The ext_authz request, with the verified claims where the sidecar
/// reads them by default.
fn check_request(query: &Query<'_>) -> CheckRequest {
    decision::envoy::check_request(
        query.method,
        query.path,
        query.host.unwrap_or_default(),
        query.source,
        query.request_id,
        query.claims.map(|(claims, _)| claims),
    )
}

/// Read a `CheckResponse`. Anything but an explicit OK is a deny; a deny
/// without an HTTP status is a 403.
fn verdict(response: &CheckResponse) -> Verdict {
    let allowed = response.status.as_ref().is_some_and(|s| s.code == 0);
    let metadata = response.dynamic_metadata.as_ref();
    let version = metadata
        .and_then(|m| m.fields.get(decision::envoy::POLICY_VERSION))
        .and_then(|v| match &v.kind {
            Some(Kind::StringValue(s)) => Some(Arc::from(s.as_str())),
            _ => None,
        });
    let header = |h: &envoy_types::pb::envoy::config::core::v3::HeaderValueOption| {
        let h = h.header.as_ref()?;
        let value = if h.raw_value.is_empty() {
            HeaderValue::from_str(&h.value).ok()?
        } else {
            HeaderValue::from_bytes(&h.raw_value).ok()?
        };
        Some((HeaderName::from_bytes(h.key.as_bytes()).ok()?, value))
    };
    let mut out = Verdict {
        allowed,
        status: if allowed { 200 } else { 403 },
        headers: Vec::new(),
        remove: Vec::new(),
        body: Bytes::new(),
        step_up: None,
        version,
        feed_cursor: metadata
            .and_then(|m| m.fields.get(decision::envoy::FEED_CURSOR))
            .and_then(|v| match &v.kind {
                #[expect(clippy::cast_possible_truncation, reason = "a whole number below 2^53")]
                Some(Kind::NumberValue(n)) => Some(*n as i64),
                _ => None,
            }),
        ttl: Duration::ZERO,
    };
    match &response.http_response {
        Some(HttpResponse::OkResponse(ok)) if allowed => {
            out.headers = ok.headers.iter().filter_map(header).collect();
            out.remove = ok
                .headers_to_remove
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect();
        }
        Some(HttpResponse::DeniedResponse(denied)) if !allowed => {
            if let Some(code) = denied.status.as_ref().map(|s| s.code)
                && let Ok(code) = u16::try_from(code)
                && (400..600).contains(&code)
            {
                out.status = code;
            }
            out.headers = denied.headers.iter().filter_map(header).collect();
            out.body = Bytes::from(denied.body.clone());
            out.step_up = out
                .headers
                .iter()
                .filter(|(name, _)| *name == http::header::WWW_AUTHENTICATE)
                .find_map(|(_, v)| v.to_str().ok().and_then(decision::challenge::step_up_of));
        }
        _ => {}
    }
    if !allowed && out.body.is_empty() {
        let forbidden = Verdict::denied(&Denial::forbidden());
        out.headers = forbidden.headers;
        out.body = forbidden.body;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_ttls_are_spread_over_the_last_fifth() {
        let ttl = Duration::from_secs(5);
        let spread: std::collections::BTreeSet<Duration> =
            (0..=255u8).map(|b| super::spread(ttl, &[b; 32])).collect();
        assert_eq!(spread.first(), Some(&Duration::from_secs(4)));
        assert_eq!(spread.last(), Some(&ttl));
        assert_eq!(spread.len(), 21, "{spread:?}");
    }
}
