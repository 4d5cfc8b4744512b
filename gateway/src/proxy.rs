//! The proxy: one `ProxyHttp` implementation, each phase with one job.
//! `request_filter` routes and authenticates (writing 401/403/404 itself),
//! `upstream_peer` picks an address, `upstream_request_filter` fixes the
//! identity headers the upstream sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::{Error, ErrorType, Result};
use tokens::{Verified, Verifier};

use crate::access_log::{AccessLog, AccessRecord};
use crate::authz::{Authorizer, Query, Verdict};
use crate::config::{AuthMode, Config, HashOn, RateLimitKey};
use crate::inbound::Inbound;
use crate::metrics::{Metrics, RouteMetrics};
use crate::ratelimit::{Admit, BucketKey, LocalLimiter};
use crate::refusal::{NO_DECISION, Refusal, refuse};
use crate::route::Routes;
use crate::session::{Active, Sessions};
use crate::sha256;
use crate::tunnel::Tunnels;
use crate::upstream::Upstream;

pub struct Gateway {
    routes: Routes,
    upstreams: Vec<Arc<Upstream>>,
    /// Without work stealing, each thread reuses only the upstream
    /// connections it released itself (`worker_group`).
    upstream_pool_per_thread: bool,
    verifier: Option<Arc<Verifier>>,
    /// How a request is read before routing.
    inbound: crate::inbound::Rules,
    /// What the upstream request and the client's response lose and gain.
    headers: crate::rewrite::Rules,
    /// Bearer tokens that failed verification, per client address.
    failed_auth: LocalLimiter,
    failed_auth_ipv6_prefix: u8,
    max_header_bytes: usize,
    metrics: Arc<Metrics>,
    /// Requests no route matched.
    unrouted: RouteMetrics,
    /// Verified bearer tokens by SHA-256, so a token seen before costs a
    /// hash and a lookup.
    bearers: moka::sync::Cache<[u8; 32], Arc<Bearer>>,
    authorizer: Option<Authorizer>,
    sessions: Option<Sessions>,
    access_log: Option<Arc<AccessLog>>,
    tunnels: Tunnels,
}

/// A verified bearer token with what every request needs from it worked
/// out once: the claims as policies read them and the identity headers.
struct Bearer {
    verified: Arc<Verified>,
    claims: decision::Claims,
    headers: Vec<(&'static str, http::HeaderValue)>,
}

impl Bearer {
    fn new(verified: Arc<Verified>, claims: decision::Claims) -> Self {
        let headers = identity_headers(&claims);
        Self {
            verified,
            claims,
            headers,
        }
    }
}

/// The identity headers (`decision::headers::identity`) as header values.
fn identity_headers(claims: &decision::Claims) -> Vec<(&'static str, http::HeaderValue)> {
    decision::headers::identity(claims)
        .into_iter()
        .filter_map(|(name, value)| Some((name, http::HeaderValue::try_from(value).ok()?)))
        .collect()
}

/// Verified bearers live until their token's `exp` (at most five minutes).
struct UntilExpiry;

impl moka::Expiry<[u8; 32], Arc<Bearer>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Bearer>,
        _now: std::time::Instant,
    ) -> Option<std::time::Duration> {
        let left = value.verified.expires_at.saturating_sub(crate::now_secs());
        Some(std::time::Duration::from_secs(left.min(300)))
    }
}

/// A verified caller: a bearer token, or a browser session.
enum Principal {
    Bearer(Arc<Bearer>),
    Session(Arc<Active>),
}

impl Principal {
    /// The claims as the policy engine and the identity headers read them.
    fn claims(&self) -> &decision::Claims {
        match self {
            Self::Bearer(b) => &b.claims,
            Self::Session(s) => &s.claims,
        }
    }

    /// The verified payload and when it expires.
    fn payload(&self) -> (&serde_json::Map<String, serde_json::Value>, u64) {
        match self {
            Self::Bearer(b) => (&b.verified.claims, b.verified.expires_at),
            Self::Session(s) => (&s.payload, s.expires_at()),
        }
    }
}

/// Per-request state.
pub struct Ctx {
    /// What was settled before routing: the client, its scheme.
    inbound: Inbound,
    route: Option<usize>,
    /// Who is asking, once verified.
    principal: Option<Principal>,
    /// A refreshed session's new cookie, sent with the response.
    set_cookie: Option<String>,
    /// The decision on routes with `policy`; its headers go upstream.
    verdict: Option<Arc<Verdict>>,
    started: std::time::Instant,
    /// The client's `x-request-id` when well-formed, else a new one; sent
    /// upstream and back to the client.
    request_id: http::HeaderValue,
    /// Connect attempts that failed (bounded retries on other addresses).
    connect_failures: usize,
    /// The address the request went to.
    upstream: Option<std::net::SocketAddr>,
}

/// This thread's upstream connection group. Pingora keeps one upstream
/// pool for every thread, and an idle connection is held by a watcher task
/// that has to be woken to hand it over, so a connection released on one
/// thread and taken on another costs cross-thread wake-ups. With work
/// stealing off a client connection stays on the thread that accepted it,
/// and grouped by thread each worker takes back only the upstream
/// connections it released, as nginx and Envoy workers keep their own
/// (`loadtest/reports/gateway.md` measures the difference).
fn worker_group() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static GROUP: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    GROUP.with(|g| *g)
}

/// A caller's request id is kept if it is short and plain.
fn acceptable_request_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// W3C trace context: `00-<32 hex>-<16 hex>-<2 hex>`.
fn valid_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    parts.len() == 4
        && hex(parts[0], 2)
        && parts[0] != "ff"
        && hex(parts[1], 32)
        && parts[1] != "0".repeat(32)
        && hex(parts[2], 16)
        && parts[2] != "0".repeat(16)
        && hex(parts[3], 2)
}

/// A fresh request id: this process's random prefix and a counter, in
/// hex: unique without asking the RNG per request.
fn new_request_id() -> http::HeaderValue {
    static PREFIX: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // A failing system RNG leaves zeros: ids stay unique in this process.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        u64::from_ne_bytes(bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut text = [0u8; 32];
    for (i, word) in [prefix, n].into_iter().enumerate() {
        for j in 0..16 {
            let nibble = ((word >> (60 - 4 * j)) & 0xf) as u8;
            text[i * 16 + j] = b"0123456789abcdef"[usize::from(nibble)];
        }
    }
    http::HeaderValue::from_bytes(&text).unwrap_or(http::HeaderValue::from_static("0"))
}

impl Gateway {
    pub fn new(
        config: &Config,
        verifier: Option<Arc<Verifier>>,
        authorizer: Option<Authorizer>,
        sessions: Option<Sessions>,
        access_log: Option<Arc<AccessLog>>,
        metrics: Arc<Metrics>,
        server: &ServerConf,
    ) -> Self {
        let upstreams: Vec<Arc<Upstream>> = config
            .upstreams
            .iter()
            .map(|u| {
                Arc::new(Upstream::new(
                    u,
                    config.upstream_ca_file.as_deref(),
                    &metrics,
                ))
            })
            .collect();
        let routes = Routes::new(config, &metrics);
        let limit = &config.failed_auth_limit;
        Self {
            inbound: crate::inbound::Rules {
                trusted_proxies: config.trusted_proxies.clone(),
                host_required: routes.host_specific(),
            },
            routes,
            upstreams,
            upstream_pool_per_thread: !config.work_stealing,
            verifier,
            headers: crate::rewrite::Rules {
                owned_prefix: config.owned_header_prefix.clone(),
                private_cookies: config
                    .private_cookies
                    .iter()
                    .map(String::as_str)
                    .chain(sessions.iter().flat_map(Sessions::cookie_names))
                    .map(str::to_owned)
                    .collect(),
                forwarded: config.forwarded_headers,
            },
            failed_auth: LocalLimiter::new(limit.requests_per_second, limit.burst, 100_000),
            failed_auth_ipv6_prefix: limit.ipv6_prefix,
            max_header_bytes: config.max_request_header_bytes,
            unrouted: RouteMetrics::new(&metrics, "none"),
            bearers: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .expire_after(UntilExpiry)
                .build(),
            metrics,
            authorizer,
            sessions,
            access_log,
            tunnels: Tunnels::new(server),
        }
    }

    /// On routes with `policy`, the decider (sidecar or embedded engine)
    /// decides. A deny is answered as the decider says (401/403, nothing
    /// internal); no answer is a 503 unless the route fails open.
    async fn decide(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(route) = ctx.route.and_then(|i| self.routes.get(i)) else {
            return Ok(false);
        };
        if !route.policy {
            return Ok(false);
        }
        let Some(authorizer) = &self.authorizer else {
            return refuse(session, Refusal::Unavailable(NO_DECISION.into())).await;
        };
        let req = session.req_header();
        let query = Query {
            method: req.method.as_str(),
            path: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            host: crate::inbound::host(req),
            source: ctx.inbound.client,
            request_id: ctx.request_id.to_str().unwrap_or_default(),
            token: match &ctx.principal {
                Some(Principal::Session(s)) => Some(s.access_token()),
                _ => bearer(req),
            },
            claims: ctx.principal.as_ref().map(Principal::payload),
            parsed: ctx.principal.as_ref().map(Principal::claims),
        };
        match authorizer.check(&query, &self.metrics).await {
            Ok(verdict) if verdict.allowed => {
                ctx.verdict = Some(verdict);
                Ok(false)
            }
            Ok(verdict) => {
                let mut header = ResponseHeader::build(verdict.status, Some(4))?;
                for (name, value) in &verdict.headers {
                    header.insert_header(name.clone(), value.clone())?;
                }
                header.insert_header("content-length", verdict.body.len().to_string())?;
                session
                    .write_response_header(Box::new(header), false)
                    .await?;
                session
                    .write_response_body(Some(verdict.body.clone()), true)
                    .await?;
                Ok(true)
            }
            Err(e) => {
                let outcome = if route.policy_fail_open {
                    "open"
                } else {
                    "closed"
                };
                self.metrics
                    .decision_failures
                    .with_label_values(&[e.reason(), outcome])
                    .inc();
                tracing::warn!(error = %e, outcome, request_id = ctx.request_id.to_str().unwrap_or_default(), "no policy decision");
                if route.policy_fail_open {
                    return Ok(false);
                }
                refuse(session, Refusal::Unavailable(NO_DECISION.into())).await
            }
        }
    }

    /// The route's rate limit, keyed as configured (the source address
    /// when the request has no such identity). Over the limit: 429.
    async fn limit(&self, session: &mut Session, ctx: &Ctx) -> Result<bool> {
        let Some(route) = ctx.route.and_then(|i| self.routes.get(i)) else {
            return Ok(false);
        };
        let Some(limit) = &route.rate_limit else {
            return Ok(false);
        };
        let claims = ctx.principal.as_ref().map(Principal::claims);
        let identity = match limit.key {
            RateLimitKey::ClientId => claims.and_then(|c| c.client_id.as_deref()),
            RateLimitKey::Subject => claims.and_then(|c| c.sub.as_deref()),
            RateLimitKey::Source => None,
        };
        let bucket = match identity {
            Some(id) => BucketKey::Id(id),
            None => BucketKey::Addr(
                ctx.inbound
                    .client
                    .map(|ip| bootstrap::net::bucket(ip, limit.ipv6_prefix)),
            ),
        };
        match limit.limiter.admit(bucket).await {
            Ok(Admit::Yes) => Ok(false),
            Ok(Admit::No { retry_after_secs }) => {
                self.metrics
                    .rate_limited
                    .with_label_values(&[route.prefix.as_str()])
                    .inc();
                refuse(session, Refusal::RateLimited { retry_after_secs }).await
            }
            Err(e) => {
                self.metrics
                    .decision_failures
                    .with_label_values(&["rate_limit_store", "open"])
                    .inc();
                tracing::warn!(error = %e, "rate limit not applied");
                Ok(false)
            }
        }
    }

    /// The upstream address for this request's next attempt, as a peer.
    fn peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let route = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let upstream = &self.upstreams[route.upstream];
        let claims = ctx.principal.as_ref().map(Principal::claims);
        let identity = match upstream.hash_on {
            HashOn::Source => None,
            HashOn::Subject => claims.and_then(|c| c.sub.as_deref()),
            HashOn::ClientId => claims.and_then(|c| c.client_id.as_deref()),
        };
        let ip_bytes = match ctx.inbound.client {
            Some(std::net::IpAddr::V4(v4)) => v4.to_ipv6_mapped().octets(),
            Some(std::net::IpAddr::V6(v6)) => v6.octets(),
            None => [0; 16],
        };
        let key = identity.map_or(&ip_bytes[..], str::as_bytes);
        let addr = upstream.pick(Some(key), ctx.connect_failures);
        ctx.upstream = Some(addr);
        let mut peer = HttpPeer::new(addr, upstream.tls, upstream.sni.clone());
        if self.upstream_pool_per_thread {
            peer.group_key = worker_group();
        }
        if upstream.http2 {
            // Without TLS there is no ALPN: HTTP/2 by prior knowledge.
            peer.options
                .set_http_version(2, if upstream.tls { 1 } else { 2 });
        }
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        Ok(Box::new(peer))
    }

    /// The request header as the upstream gets it: the headers we own
    /// (identity, forwarding) replaced with verified ones, private cookies
    /// and (per route) the credentials removed, request id and trace
    /// context set.
    fn rewrite_upstream_request(&self, upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        self.headers.strip_owned(upstream);
        let host = upstream.headers.get(http::header::HOST).cloned();
        self.headers.add_forwarded(upstream, &ctx.inbound, host)?;
        let route = ctx.route.and_then(|i| self.routes.get(i));
        let forward = route.is_some_and(|r| r.forward_authorization);
        self.headers.strip_cookies(upstream)?;
        match &ctx.principal {
            // A session's access token, as the upstream would get a bearer.
            Some(Principal::Session(s)) if forward => {
                upstream.insert_header("authorization", format!("Bearer {}", s.access_token()))?;
            }
            _ if forward => {}
            _ => {
                upstream.remove_header("authorization");
            }
        }
        upstream.insert_header("x-request-id", ctx.request_id.clone())?;
        // Trace context passes through; a malformed one would only confuse
        // the upstream's tracer.
        let traceparent_ok = upstream
            .headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .is_none_or(valid_traceparent);
        if !traceparent_ok {
            upstream.remove_header("traceparent");
            upstream.remove_header("tracestate");
        }
        match &ctx.principal {
            Some(Principal::Bearer(b)) => {
                for (name, value) in &b.headers {
                    upstream.insert_header(*name, value.clone())?;
                }
            }
            Some(Principal::Session(s)) => {
                for (name, value) in identity_headers(&s.claims) {
                    upstream.insert_header(name, value)?;
                }
            }
            None => {}
        }
        if let Some(verdict) = &ctx.verdict {
            for name in &verdict.remove {
                upstream.remove_header(name);
            }
            for (name, value) in &verdict.headers {
                upstream.insert_header(name.clone(), value.clone())?;
            }
        }
        Ok(())
    }

    /// The last step of `request_filter`: the policy decision, then an
    /// allowed upgrade goes through our tunnel and anything else back to
    /// Pingora to be proxied.
    async fn authorize_then_tunnel_upgrades(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<bool> {
        if self.decide(session, ctx).await? {
            return Ok(true);
        }
        // Upgrades are WebSocket ones by now (`refuse_foreign_upgrade`). One
        // with a request body (rare: handshakes have none) stays with
        // Pingora, which sends the body before the switch.
        if session.is_upgrade_req() && session.is_body_empty() {
            return self.tunnel(session, ctx).await;
        }
        Ok(false)
    }

    /// An HTTP/1.1 upgrade (WebSocket), once allowed: proxied through our
    /// own tunnel (`tunnel.rs`), with connect failures retried on the
    /// route's other addresses as for any idempotent request.
    async fn tunnel(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let mut request = session.req_header().clone();
        crate::rewrite::strip_hop_by_hop_for_websocket(&mut request)?;
        self.rewrite_upstream_request(&mut request, ctx)?;
        let addresses = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .map_or(1, |r| self.upstreams[r.upstream].len());
        loop {
            let mut peer = self.peer(ctx)?;
            peer.options.set_http_version(1, 1);
            match self.tunnels.connect(&peer).await {
                Ok(connected) => {
                    return crate::tunnel::run(session, connected, request, |r| {
                        self.finish_response(r, ctx)
                    })
                    .await;
                }
                Err(e) => {
                    ctx.connect_failures += 1;
                    if ctx.connect_failures < addresses {
                        continue;
                    }
                    tracing::warn!(error = %e, request_id = ctx.request_id.to_str().unwrap_or_default(), "upgrade: upstream unreachable");
                    return refuse(session, Refusal::BadGateway).await;
                }
            }
        }
    }

    /// What every upstream response gets on its way to the client: the
    /// request id and a refreshed session's cookie; the upstream's own
    /// `Set-Cookie` for a private cookie is dropped (counted).
    fn finish_response(&self, response: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
        let dropped = self.headers.drop_private_set_cookies(response)?;
        if dropped > 0 {
            self.metrics
                .private_set_cookies_dropped
                .inc_by(dropped as u64);
            tracing::warn!(
                dropped,
                request_id = ctx.request_id.to_str().unwrap_or_default(),
                "the upstream set a private cookie"
            );
        }
        response.insert_header("x-request-id", ctx.request_id.clone())?;
        if let Some(cookie) = ctx.set_cookie.take() {
            response.append_header("set-cookie", cookie)?;
        }
        Ok(())
    }

    /// The upstream pools (main starts their health checks).
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// A bearer token from a configured issuer (a JWT, or an opaque token
    /// the issuer introspects); refusals are 401s with an RFC 6750
    /// challenge, counted by reason; an unreachable issuer is a 503.
    async fn authenticate_bearer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let (Some(verifier), Some(token)) = (&self.verifier, bearer(session.req_header())) else {
            self.metrics
                .auth_failures
                .with_label_values(&["missing"])
                .inc();
            return refuse(session, Refusal::TokenRequired).await;
        };
        let key = sha256(token.as_bytes());
        if let Some(bearer) = self.bearers.get(&key)
            && bearer.verified.expires_at > crate::now_secs()
        {
            self.metrics.token_hits.inc();
            ctx.principal = Some(Principal::Bearer(bearer));
            return Ok(false);
        }
        self.metrics.token_misses.inc();
        // Tokens that fail are charged to the client's budget. An opaque
        // token costs an introspection call, so it is charged before the
        // call (concurrent requests cannot all slip past a check) and
        // refunded when it is good; a JWT is checked locally, always.
        let source = BucketKey::Addr(
            ctx.inbound
                .client
                .map(|ip| bootstrap::net::bucket(ip, self.failed_auth_ipv6_prefix)),
        );
        let opaque = !token.contains('.');
        if opaque && let Admit::No { retry_after_secs } = self.failed_auth.admit(source) {
            self.metrics
                .auth_failures
                .with_label_values(&["too_many_failures"])
                .inc();
            return refuse(session, Refusal::RateLimited { retry_after_secs }).await;
        }
        let verified = match verifier.verify(token).await {
            Ok(v) => {
                if opaque {
                    self.failed_auth.refund(source);
                }
                v
            }
            Err(e) => {
                self.metrics
                    .auth_failures
                    .with_label_values(&[e.reason()])
                    .inc();
                if e.is_unavailable() {
                    // The issuer's fault, not the client's.
                    if opaque {
                        self.failed_auth.refund(source);
                    }
                    // Fail closed, but do not tell the client its token is bad.
                    return refuse(session, Refusal::IssuerUnavailable).await;
                }
                if !opaque {
                    self.failed_auth.admit(source);
                }
                return refuse(session, Refusal::InvalidToken(e.reason().into())).await;
            }
        };
        match decision::Claims::from_json(&verified.claims) {
            Ok(claims) => {
                let bearer = Arc::new(Bearer::new(verified, claims));
                self.bearers.insert(key, bearer.clone());
                ctx.principal = Some(Principal::Bearer(bearer));
                Ok(false)
            }
            Err(e) => {
                self.metrics
                    .auth_failures
                    .with_label_values(&["bad_claim"])
                    .inc();
                self.failed_auth.admit(source);
                refuse(session, Refusal::InvalidToken(e.0.into())).await
            }
        }
    }

    /// A browser session; without one, a page request is sent to sign in
    /// and anything else gets a 401.
    async fn authenticate_session(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(sessions) = &self.sessions else {
            return refuse(
                session,
                Refusal::Unavailable("session mode is not configured".into()),
            )
            .await;
        };
        match sessions.lookup(session.req_header()).await {
            Some(active) => {
                ctx.set_cookie = sessions.renewed_cookie(&active);
                ctx.principal = Some(Principal::Session(active));
                Ok(false)
            }
            None => {
                self.metrics
                    .auth_failures
                    .with_label_values(&["no_session"])
                    .inc();
                sessions.challenge(session).await
            }
        }
    }
}

fn bearer(req: &RequestHeader) -> Option<&str> {
    let value = req.headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            inbound: Inbound::default(),
            route: None,
            principal: None,
            set_cookie: None,
            verdict: None,
            started: std::time::Instant::now(),
            request_id: http::HeaderValue::from_static(""),
            connect_failures: 0,
            upstream: None,
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.finish_response(response, ctx)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.and_then(|i| self.routes.get(i));
        let elapsed = ctx.started.elapsed();
        route.map_or(&self.unrouted, |r| &r.metrics).observe(
            &self.metrics,
            status,
            elapsed.as_secs_f64(),
        );
        if let Some(log) = &self.access_log {
            let req = session.req_header();
            let claims = ctx.principal.as_ref().map(Principal::claims);
            log.record(AccessRecord {
                time: std::time::SystemTime::now(),
                request_id: ctx.request_id.clone(),
                method: req.method.clone(),
                path: req.uri.path().to_owned(),
                route: route.map(|r| r.label.clone()),
                status,
                duration: elapsed,
                source: ctx.inbound.client,
                upstream: ctx.upstream,
                subject: claims.and_then(|c| c.sub.clone()),
                client_id: claims.and_then(|c| c.client_id.clone()),
            });
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = session
            .req_header()
            .headers
            .get("x-request-id")
            .filter(|v| v.to_str().is_ok_and(acceptable_request_id))
            .map_or_else(new_request_id, Clone::clone);
        let header_bytes: usize = session
            .req_header()
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len())
            .sum();
        if header_bytes > self.max_header_bytes {
            return refuse(session, Refusal::HeadersTooLarge).await;
        }
        // Only WebSocket upgrades go on; any other (h2c) becomes a plain
        // request, so no connection can switch past the per-request checks.
        crate::tunnel::refuse_foreign_upgrade(session.req_header_mut())?;
        // Settle once what every later step reads: host, path, client.
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
        match crate::inbound::read(session.req_header_mut(), peer, tls, &self.inbound) {
            Ok(inbound) => ctx.inbound = inbound,
            Err(e) => return refuse(session, e.into()).await,
        }
        if let Some(sessions) = &self.sessions
            && let Some(endpoint) = sessions.endpoint(session.req_header().uri.path())
        {
            return sessions.serve(endpoint, session).await;
        }
        let req = session.req_header();
        let host = crate::inbound::host(req).map(decision::host::name);
        let index = match self.routes.find(host, req.uri.path()) {
            Ok(Some(index)) => index,
            Ok(None) => return refuse(session, Refusal::NoRoute).await,
            Err(prefix) => {
                let e = crate::inbound::Unreadable::CaseOnly(prefix.to_owned());
                return refuse(session, e.into()).await;
            }
        };
        ctx.route = Some(index);
        let Some(route) = self.routes.get(index) else {
            return Err(Error::explain(ErrorType::InternalError, "route index"));
        };
        // The upstream ignores case: so do policy and routing, on one spelling.
        if route.case_insensitive
            && let Err(e) = crate::inbound::lower_case_path(session.req_header_mut())
        {
            return refuse(session, e.into()).await;
        }
        // Limits by address apply before any work on credentials.
        let by_source = route
            .rate_limit
            .as_ref()
            .is_some_and(|l| l.key == RateLimitKey::Source);
        if (by_source || route.auth == AuthMode::Public) && self.limit(session, ctx).await? {
            return Ok(true);
        }
        let answered = match route.auth {
            AuthMode::Public => return self.authorize_then_tunnel_upgrades(session, ctx).await,
            AuthMode::Jwt => self.authenticate_bearer(session, ctx).await?,
            AuthMode::Session => self.authenticate_session(session, ctx).await?,
        };
        if answered {
            return Ok(true);
        }
        if !by_source && self.limit(session, ctx).await? {
            return Ok(true);
        }
        // Scopes as the policy engine reads them (`scope` or `scp`).
        let granted = ctx
            .principal
            .as_ref()
            .map_or(&[][..], |p| p.claims().scopes.as_slice());
        if let Some(missing) = route.scopes.iter().find(|s| !granted.contains(s)) {
            return refuse(session, Refusal::InsufficientScope(missing.clone())).await;
        }
        self.authorize_then_tunnel_upgrades(session, ctx).await
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        let _ = session;
        self.peer(ctx)
    }

    /// A request that never reached the upstream may go to the next
    /// address, but only if repeating it is harmless (an idempotent
    /// method), and at most once per address.
    fn fail_to_connect(
        &self,
        session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failures += 1;
        let idempotent = matches!(
            session.req_header().method,
            http::Method::GET
                | http::Method::HEAD
                | http::Method::OPTIONS
                | http::Method::PUT
                | http::Method::DELETE
                | http::Method::TRACE
        );
        let addresses = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .map_or(1, |r| self.upstreams[r.upstream].len());
        if idempotent && ctx.connect_failures < addresses {
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        self.rewrite_upstream_request(upstream, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_has_its_own_upstream_group() {
        let here = worker_group();
        assert_eq!(worker_group(), here, "stable within a thread");
        let there = std::thread::spawn(worker_group).join().unwrap();
        assert_ne!(there, here);
    }
}
