//! The proxy: one `ProxyHttp` implementation, each phase with one job.
//! `request_filter` routes and authenticates (writing 401/403/404 itself),
//! `upstream_peer` picks an address, `upstream_request_filter` fixes the
//! identity headers the upstream sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::{Error, ErrorType, Result};
use tokens::{Verified, Verifier};

use crate::access_log::{AccessLog, AccessRecord};
use crate::authz::{Authorizer, Query, Verdict};
use crate::config::{AuthMode, Config, HashOn, RateLimitKey};
use crate::metrics::{Metrics, RouteMetrics};
use crate::ratelimit::{Admit, BucketKey, Limiter};
use crate::reply::{Reply, reply};
use crate::session::{Active, Sessions};
use crate::sha256;
use crate::tunnel::Tunnels;
use crate::upstream::Upstream;

struct Route {
    host: Option<String>,
    prefix: String,
    upstream: usize,
    auth: AuthMode,
    scopes: Vec<String>,
    forward_authorization: bool,
    policy: bool,
    policy_fail_open: bool,
    rate_limit: Option<(Limiter, RateLimitKey)>,
    metrics: RouteMetrics,
    /// The prefix, for the access log.
    label: Arc<str>,
}

pub struct Gateway {
    /// Longest prefix first, so the first match is the most specific.
    routes: Vec<Route>,
    upstreams: Vec<Arc<Upstream>>,
    /// Without work stealing, each thread reuses only the upstream
    /// connections it released itself (`worker_group`).
    upstream_pool_per_thread: bool,
    verifier: Option<Arc<Verifier>>,
    owned_prefix: String,
    /// Cookies removed before the upstream: the sessions' and the
    /// configured `private_cookies`.
    private_cookies: Vec<String>,
    max_header_bytes: usize,
    metrics: Arc<Metrics>,
    /// Requests no route matched.
    unrouted: RouteMetrics,
    /// Verified bearer tokens by SHA-256, so a token seen before costs a
    /// hash and a lookup.
    bearers: moka::sync::Cache<[u8; 32], Arc<Bearer>>,
    authorizer: Option<Authorizer>,
    sessions: Option<Sessions>,
    access_log: Option<AccessLog>,
    tunnels: Tunnels,
}

/// A verified bearer token with what every request needs from it worked
/// out once: the claims as policies read them and the identity headers.
struct Bearer {
    verified: Arc<Verified>,
    claims: sidecar::Claims,
    headers: Vec<(&'static str, http::HeaderValue)>,
}

impl Bearer {
    fn new(verified: Arc<Verified>, claims: sidecar::Claims) -> Self {
        let headers = identity_headers(&claims);
        Self {
            verified,
            claims,
            headers,
        }
    }
}

/// The identity headers (`sidecar::headers::identity`) as header values.
fn identity_headers(claims: &sidecar::Claims) -> Vec<(&'static str, http::HeaderValue)> {
    sidecar::headers::identity(claims)
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
    fn claims(&self) -> &sidecar::Claims {
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
        access_log: Option<AccessLog>,
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
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|r| Route {
                metrics: RouteMetrics::new(&metrics, &r.path_prefix),
                label: Arc::from(r.path_prefix.as_str()),
                host: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
                prefix: r.path_prefix.clone(),
                upstream: config
                    .upstreams
                    .iter()
                    .position(|u| u.name == r.upstream)
                    .unwrap_or(0),
                auth: r.auth,
                scopes: r.scopes.clone(),
                forward_authorization: r.forward_authorization,
                policy: r.policy,
                policy_fail_open: r.policy_fail_open,
                rate_limit: r.rate_limit.as_ref().map(|l| {
                    (
                        Limiter::new(
                            l,
                            config.redis_url.as_deref(),
                            &format!("{}rl:{}:", config.redis_prefix, r.path_prefix),
                        ),
                        l.key,
                    )
                }),
            })
            .collect();
        // Host-specific routes before any-host ones, then longest prefix.
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        Self {
            routes,
            upstreams,
            upstream_pool_per_thread: !config.work_stealing,
            verifier,
            owned_prefix: config.owned_header_prefix.clone(),
            private_cookies: config
                .private_cookies
                .iter()
                .map(String::as_str)
                .chain(sessions.iter().flat_map(Sessions::cookie_names))
                .map(str::to_owned)
                .collect(),
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
            return respond(
                session,
                503,
                None,
                r#"{"error":"unavailable","message":"policy decision point unavailable"}"#,
            )
            .await;
        };
        let req = session.req_header();
        let query = Query {
            method: req.method.as_str(),
            path: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            host: req.headers.get("host").and_then(|h| h.to_str().ok()),
            source: session
                .client_addr()
                .and_then(|a| a.as_inet())
                .map(|a| a.ip()),
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
                respond(
                    session,
                    503,
                    None,
                    r#"{"error":"unavailable","message":"policy decision point unavailable"}"#,
                )
                .await
            }
        }
    }

    /// The route's rate limit, keyed as configured (the source address
    /// when the request has no such identity). Over the limit: 429.
    async fn limit(&self, session: &mut Session, ctx: &Ctx) -> Result<bool> {
        let Some(route) = ctx.route.and_then(|i| self.routes.get(i)) else {
            return Ok(false);
        };
        let Some((limiter, key)) = &route.rate_limit else {
            return Ok(false);
        };
        let claims = ctx.principal.as_ref().map(Principal::claims);
        let identity = match key {
            RateLimitKey::ClientId => claims.and_then(|c| c.client_id.as_deref()),
            RateLimitKey::Subject => claims.and_then(|c| c.sub.as_deref()),
            RateLimitKey::Source => None,
        };
        let bucket = match identity {
            Some(id) => BucketKey::Id(id),
            None => BucketKey::Addr(
                session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
            ),
        };
        match limiter.admit(bucket).await {
            Ok(Admit::Yes) => Ok(false),
            Ok(Admit::No { retry_after_secs }) => {
                self.metrics
                    .rate_limited
                    .with_label_values(&[route.prefix.as_str()])
                    .inc();
                let mut header = ResponseHeader::build(429, Some(4))?;
                let body = Bytes::from_static(
                    br#"{"error":"rate_limited","message":"too many requests; see Retry-After"}"#,
                );
                header.insert_header("content-type", "application/json")?;
                header.insert_header("content-length", body.len().to_string())?;
                header.insert_header("retry-after", retry_after_secs.to_string())?;
                session
                    .write_response_header(Box::new(header), false)
                    .await?;
                session.write_response_body(Some(body), true).await?;
                Ok(true)
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
    fn peer(&self, session: &Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
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
        let ip = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let ip_bytes = match ip {
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

    /// The request header as the upstream gets it: the identity headers
    /// we own replaced with verified ones, private cookies and (per route)
    /// the credentials removed, request id and trace context set.
    fn rewrite_upstream_request(&self, upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        // Whatever the client sent under our prefix is a forgery. Most
        // requests carry none, and then nothing is allocated.
        let forged = |k: &http::HeaderName| k.as_str().starts_with(&self.owned_prefix);
        if upstream.headers.keys().any(forged) {
            let owned: Vec<http::HeaderName> = upstream
                .headers
                .keys()
                .filter(|k| forged(k))
                .cloned()
                .collect();
            for name in owned {
                upstream.remove_header(&name);
            }
        }
        let route = ctx.route.and_then(|i| self.routes.get(i));
        let forward = route.is_some_and(|r| r.forward_authorization);
        strip_cookies(upstream, &self.private_cookies)?;
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
        self.rewrite_upstream_request(&mut request, ctx)?;
        let addresses = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .map_or(1, |r| self.upstreams[r.upstream].len());
        loop {
            let mut peer = self.peer(session, ctx)?;
            peer.options.set_http_version(1, 1);
            match self.tunnels.connect(&peer).await {
                Ok(connected) => {
                    return crate::tunnel::run(session, connected, request, |r| {
                        finish_response(r, ctx)
                    })
                    .await;
                }
                Err(e) => {
                    ctx.connect_failures += 1;
                    if ctx.connect_failures < addresses {
                        continue;
                    }
                    tracing::warn!(error = %e, request_id = ctx.request_id.to_str().unwrap_or_default(), "upgrade: upstream unreachable");
                    return respond(
                        session,
                        502,
                        None,
                        r#"{"error":"bad_gateway","message":"the upstream cannot be reached"}"#,
                    )
                    .await;
                }
            }
        }
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
            return respond(
                session,
                401,
                Some("Bearer realm=\"portcullis\"".into()),
                r#"{"error":"unauthorized","message":"a bearer token is required"}"#,
            )
            .await;
        };
        let refused = |reason: &str| {
            format!(
                "Bearer realm=\"portcullis\", error=\"invalid_token\", error_description=\"{reason}\""
            )
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
        let verified = match verifier.verify(token).await {
            Ok(v) => v,
            Err(e) => {
                self.metrics
                    .auth_failures
                    .with_label_values(&[e.reason()])
                    .inc();
                if e.is_unavailable() {
                    // Fail closed, but do not tell the client its token is bad.
                    return respond(
                        session,
                        503,
                        None,
                        r#"{"error":"temporarily_unavailable","message":"the token's issuer cannot be reached to check it"}"#,
                    )
                    .await;
                }
                return respond(
                    session,
                    401,
                    Some(refused(e.reason())),
                    r#"{"error":"invalid_token","message":"the bearer token was refused"}"#,
                )
                .await;
            }
        };
        match sidecar::Claims::from_json(&verified.claims) {
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
                respond(
                    session,
                    401,
                    Some(refused(e.0)),
                    r#"{"error":"invalid_token","message":"the bearer token was refused"}"#,
                )
                .await
            }
        }
    }

    /// A browser session; without one, a page request is sent to sign in
    /// and anything else gets a 401.
    async fn authenticate_session(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(sessions) = &self.sessions else {
            return respond(
                session,
                503,
                None,
                r#"{"error":"unavailable","message":"session mode is not configured"}"#,
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

    fn route(&self, host: Option<&str>, path: &str) -> Option<usize> {
        let host = host.map(|h| h.rsplit_once(':').map_or(h, |(name, _)| name));
        self.routes.iter().position(|r| {
            r.host
                .as_deref()
                .is_none_or(|h| host.is_some_and(|x| x.eq_ignore_ascii_case(h)))
                && path.starts_with(&r.prefix)
                && (r.prefix.ends_with('/')
                    || path.len() == r.prefix.len()
                    || path.as_bytes()[r.prefix.len()] == b'/')
        })
    }
}

async fn respond(
    session: &mut Session,
    status: u16,
    challenge: Option<String>,
    body: impl Into<Bytes>,
) -> Result<bool> {
    let mut r = Reply::json(status, body);
    if let Some(c) = challenge {
        r = r.header("www-authenticate", c);
    }
    reply(session, r).await
}

/// What every response gets on its way to the client: the request id, and
/// a refreshed session's cookie.
fn finish_response(response: &mut ResponseHeader, ctx: &mut Ctx) -> Result<()> {
    response.insert_header("x-request-id", ctx.request_id.clone())?;
    if let Some(cookie) = ctx.set_cookie.take() {
        response.append_header("set-cookie", cookie)?;
    }
    Ok(())
}

/// Remove the cookies named `private` from whichever `Cookie` header they
/// come in (HTTP/2 clients may split them); the others are kept, in one
/// header as RFC 9113 §8.2.3 folds them for HTTP/1.1.
fn strip_cookies(upstream: &mut RequestHeader, private: &[String]) -> Result<()> {
    let is_private = |crumb: &[u8]| {
        let name = crumb
            .split(|b| *b == b'=')
            .next()
            .unwrap_or(crumb)
            .trim_ascii();
        private.iter().any(|p| p.as_bytes() == name)
    };
    let crumbs = || {
        upstream
            .headers
            .get_all(http::header::COOKIE)
            .into_iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
            .map(<[u8]>::trim_ascii)
            .filter(|c| !c.is_empty())
    };
    if private.is_empty() || !crumbs().any(is_private) {
        return Ok(());
    }
    let kept = crumbs()
        .filter(|c| !is_private(c))
        .collect::<Vec<_>>()
        .join(&b"; "[..]);
    upstream.remove_header(&http::header::COOKIE);
    if !kept.is_empty() {
        let value = http::HeaderValue::from_bytes(&kept)
            .map_err(|e| Error::because(ErrorType::InternalError, "cookie", e))?;
        upstream.insert_header(http::header::COOKIE, value)?;
    }
    Ok(())
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
        finish_response(response, ctx)
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
                source: session
                    .client_addr()
                    .and_then(|a| a.as_inet())
                    .map(|a| a.ip()),
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
            return respond(
                session,
                431,
                None,
                r#"{"error":"request_header_fields_too_large","message":"the request headers are larger than this gateway accepts"}"#,
            )
            .await;
        }
        // Only WebSocket upgrades go on; any other (h2c) becomes a plain
        // request, so no connection can switch past the per-request checks.
        crate::tunnel::refuse_foreign_upgrade(session.req_header_mut())?;
        // Normalise once: routing, policy and the upstream all see this path.
        let path = session.req_header().uri.path();
        match sidecar::path::normalize(path) {
            Ok(std::borrow::Cow::Borrowed(_)) => {}
            Ok(std::borrow::Cow::Owned(canonical)) => {
                let target = match session.req_header().uri.query() {
                    Some(q) => format!("{canonical}?{q}"),
                    None => canonical,
                };
                match target.parse::<http::Uri>() {
                    Ok(uri) => session.req_header_mut().set_uri(uri),
                    Err(_) => {
                        return respond(
                            session,
                            400,
                            None,
                            r#"{"error":"bad_request","message":"invalid request target"}"#,
                        )
                        .await;
                    }
                }
            }
            Err(e) => {
                let body = serde_json::json!({"error": "bad_request", "message": e.to_string()})
                    .to_string();
                return respond(session, 400, None, body).await;
            }
        }
        if let Some(sessions) = &self.sessions
            && let Some(endpoint) = sessions.endpoint(session.req_header().uri.path())
        {
            return sessions.serve(endpoint, session).await;
        }
        let req = session.req_header();
        let host = req
            .headers
            .get("host")
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri.host());
        let Some(index) = self.route(host, req.uri.path()) else {
            return respond(
                session,
                404,
                None,
                r#"{"error":"not_found","message":"no route"}"#,
            )
            .await;
        };
        ctx.route = Some(index);
        let route = &self.routes[index];
        // Limits by address apply before any work on credentials.
        let by_source = route
            .rate_limit
            .as_ref()
            .is_some_and(|(_, key)| *key == RateLimitKey::Source);
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
            let challenge = format!(
                "Bearer realm=\"portcullis\", error=\"insufficient_scope\", scope=\"{missing}\""
            );
            return respond(
                session,
                403,
                Some(challenge),
                r#"{"error":"insufficient_scope","message":"the token lacks a required scope"}"#,
            )
            .await;
        }
        self.authorize_then_tunnel_upgrades(session, ctx).await
    }

    async fn upstream_peer(&self, session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        self.peer(session, ctx)
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

    fn upstream_cookies(cookies: &[&[u8]], private: &[&str]) -> Vec<Vec<u8>> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for c in cookies {
            req.append_header("cookie", http::HeaderValue::from_bytes(c).unwrap())
                .unwrap();
        }
        let private: Vec<String> = private.iter().map(|p| (*p).to_owned()).collect();
        strip_cookies(&mut req, &private).unwrap();
        req.headers
            .get_all("cookie")
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn each_thread_has_its_own_upstream_group() {
        let here = worker_group();
        assert_eq!(worker_group(), here, "stable within a thread");
        let there = std::thread::spawn(worker_group).join().unwrap();
        assert_ne!(there, here);
    }

    #[test]
    fn private_cookies_are_stripped_from_every_cookie_header() {
        let ours = ["sid", "sid_login"];
        type Headers<'a> = &'a [&'a [u8]];
        let cases: [(Headers, Headers); 7] = [
            // Nothing of ours: untouched, even split.
            (&[b"a=1; b=2"], &[b"a=1; b=2"]),
            (&[b"a=1", b"b=2"], &[b"a=1", b"b=2"]),
            // Ours in the second header, the rest folded into one.
            (&[b"a=1", b"sid=x; b=2"], &[b"a=1; b=2"]),
            // Only ours: no Cookie header at all.
            (&[b"sid=x", b"sid_login=y"], &[]),
            // Spacing and empty crumbs; a prefix of ours is not ours.
            (
                &[b" sid =x;;sidecar=1 ; sid_loginx=2"],
                &[b"sidecar=1; sid_loginx=2"],
            ),
            // Bytes that are not UTF-8 do not hide ours.
            (&[b"a=\xff; sid=x"], &[b"a=\xff"]),
            // A name without a value is still a name.
            (&[b"sid; a=1"], &[b"a=1"]),
        ];
        for (sent, expected) in cases {
            let got = upstream_cookies(sent, &ours);
            assert_eq!(got, expected, "{sent:?}");
        }
        assert_eq!(upstream_cookies(&[b"sid=x"], &[]), [b"sid=x"]);
    }
}
