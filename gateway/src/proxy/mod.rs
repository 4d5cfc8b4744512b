//! The proxy: one `ProxyHttp` implementation, each phase with one job;
//! this file holds the phases and the state they share, the work is done
//! in the modules below. `request_filter` settles the request
//! (`crate::inbound`), routes, rate-limits and authenticates ([`authn`])
//! and asks the policies ([`decide`]), answering refusals itself
//! (`crate::refusal`); `upstream_peer` and `upstream_request_filter`
//! ([`forward`]) pick the address and write the request the upstream sees.
//!
//! `request_filter`, in order: keep or make `x-request-id`; settle the
//! request (400 naming what cannot be read unambiguously); serve the
//! session endpoints (`/_auth/*`); route (none: 404); rate-limit by the
//! client's address before any credential work; authenticate (`jwt`: the
//! `tokens` verifier, after the client's failed-authentication budget —
//! an opaque token is charged before its introspection and refunded when
//! good, a JWT is charged when refused; `session`: the browser session);
//! rate-limit by identity; required scopes (403 `insufficient_scope`);
//! decide; an allowed WebSocket upgrade then leaves for `crate::tunnel`.
//! `upstream_peer` asks the pool (with work stealing off, the default, a
//! thread takes back only the upstream connections it released);
//! `fail_to_connect` retries idempotent methods on another address, at
//! most once per address; `response_filter` drops the upstream's
//! `Set-Cookie` for private cookies and adds `x-request-id` and a
//! refreshed session's cookie.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::modules::http::HttpModules;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::server::configuration::ServerConf;
use pingora::{Error, ErrorType, Result};
use tokens::{Verified, Verifier};

use crate::access_log::{AccessLog, AccessRecord};
use crate::authz::{Authorizer, Query, Verdict};
use crate::config::{AuthMode, Config, HashOn, RateLimitKey};
use crate::header_names;
use crate::inbound::Inbound;
use crate::metrics::{Forwarder, Metrics, RouteMetrics};
use crate::ratelimit::{Admit, BucketKey, LocalLimiter};
use crate::refusal::{NO_DECISION, Refusal, for_failure, refuse};
use crate::route::Routes;
use crate::session::{Active, Sessions};
use crate::sha256;
use crate::tunnel::Tunnels;
use crate::upstream::Upstream;

mod authn;
mod decide;
mod forward;
mod request_id;
mod trace;

use authn::{Bearer, Principal, UntilExpiry};
use forward::identity_headers;
use request_id::{acceptable_request_id, new_request_id, valid_traceparent};
use trace::{Phase, Trace};

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
    /// Opens upstream connections for the direct HTTP/1.1 path
    /// (`crate::direct`); `None` leaves every request to pingora-proxy.
    direct: Option<pingora::connectors::TransportConnector>,
    /// The change feed: revocations refuse tokens and sessions; with the
    /// embedded engine, its entities.
    feed: Option<feed::Running>,
    /// With tracing on: every request's spans start here.
    tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
    /// Whether a client's `traceparent` continues its trace.
    accept_traceparent: bool,
}

/// What a gateway is built from besides its configuration.
pub struct Parts {
    pub verifier: Option<Arc<Verifier>>,
    pub authorizer: Option<Authorizer>,
    pub sessions: Option<Sessions>,
    pub access_log: Option<Arc<AccessLog>>,
    pub metrics: Arc<Metrics>,
    pub feed: Option<feed::Running>,
    /// `redis_url`'s server or cluster: global rate limits.
    pub redis: Option<Arc<bootstrap::redis::Redis>>,
    /// The exporter's tracer, with tracing on.
    pub tracer: Option<opentelemetry_sdk::trace::SdkTracer>,
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
    /// Who forwarded it there.
    forwarder: Forwarder,
    /// The request's spans, with tracing on (boxed: without, a request
    /// carries a pointer's worth).
    trace: Option<Box<Trace>>,
}

impl Gateway {
    pub fn new(config: &Config, parts: Parts, server: &ServerConf) -> Self {
        let Parts {
            verifier,
            authorizer,
            sessions,
            access_log,
            metrics,
            feed,
            redis,
            tracer,
        } = parts;
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
        let routes = Routes::new(config, &metrics, redis.as_ref());
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
            direct: (config.forwarding == crate::config::Forwarding::Direct).then(|| {
                pingora::connectors::TransportConnector::new(Some(
                    pingora::connectors::ConnectorOptions::from_server_conf(server),
                ))
            }),
            feed,
            tracer,
            accept_traceparent: config.tracing.accepts_traceparent(false),
        }
    }

    /// Ends the request's phase in progress and starts `phase`.
    fn enter(&self, ctx: &mut Ctx, phase: Phase) {
        if let (Some(tracer), Some(trace)) = (&self.tracer, &mut ctx.trace) {
            trace.enter(tracer, phase);
        }
    }

    /// The upstream pools (main starts their health checks).
    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = Ctx;

    /// None: Pingora's default adds a (disabled) compression module, whose
    /// context every request would allocate.
    fn init_downstream_modules(&self, _modules: &mut HttpModules) {}

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
            forwarder: Forwarder::Pingora,
            trace: None,
        }
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(trace) = &mut ctx.trace {
            trace.leave();
        }
        self.finish_response(response, ctx)
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let route = ctx.route.and_then(|i| self.routes.get(i));
        let elapsed = ctx.started.elapsed();
        if ctx.upstream.is_some() {
            self.metrics.forwarded(ctx.forwarder);
        }
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
                trace_id: ctx.trace.as_deref().map(Trace::trace_id),
            });
        }
        if let Some(trace) = &mut ctx.trace {
            trace.finish(status);
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        ctx.request_id = session
            .req_header()
            .headers
            .get(header_names::X_REQUEST_ID)
            .filter(|v| v.to_str().is_ok_and(acceptable_request_id))
            .map_or_else(new_request_id, Clone::clone);
        if let Some(tracer) = &self.tracer {
            let req = session.req_header();
            let parent = if self.accept_traceparent {
                bootstrap::telemetry::extract(&bootstrap::telemetry::Headers(&req.headers))
            } else {
                opentelemetry::Context::new()
            };
            ctx.trace = Some(Box::new(Trace::start(tracer, &parent, req.method.as_str())));
        }
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
            return Box::pin(sessions.serve(endpoint, session)).await;
        }
        self.enter(ctx, Phase::Route);
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
        if let Some(trace) = &mut ctx.trace {
            trace.routed(session.req_header().method.as_str(), &route.label);
        }
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
        if route.auth != AuthMode::Public {
            self.enter(ctx, Phase::Authenticate);
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
        // Retries to other addresses stay in the one upstream phase.
        if ctx.connect_failures == 0 {
            self.enter(ctx, Phase::Upstream);
        }
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

    /// Failures before the response began, on either forwarding path, are
    /// answered as refusals (`refusal::for_failure`): 504 when the upstream
    /// timed out, 502 when it failed otherwise.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, _ctx: &mut Ctx) -> FailToProxy {
        let written = session.response_written().map(|r| r.status);
        let error_code = match written {
            Some(status) if !status.is_informational() => status.as_u16(),
            _ => {
                session.set_keepalive(None);
                let answered = match (for_failure(e), e.etype()) {
                    (Some(refusal), _) => {
                        let status = refusal.status();
                        refuse(session, refusal).await.map(|_| status)
                    }
                    (None, ErrorType::HTTPStatus(code)) => {
                        session.respond_error(*code).await.map(|()| *code)
                    }
                    (None, _) => Ok(0),
                };
                answered.unwrap_or_else(|e| {
                    tracing::debug!(error = %e, "the failure could not be answered");
                    0
                })
            }
        };
        FailToProxy {
            error_code,
            can_reuse_downstream: false,
        }
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
