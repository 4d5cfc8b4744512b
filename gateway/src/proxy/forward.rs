//! Towards the upstream: the peer, the request it receives (hop-by-hop and
//! owned headers removed, identity and forwarding headers set), who
//! forwards it (the gateway's direct HTTP/1.1 path, its WebSocket tunnel,
//! or pingora-proxy), and what every upstream response gets on its way
//! back.

use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use super::*;
use crate::header_names;

impl Gateway {
    /// The upstream address for this request's next attempt, as a peer.
    pub(super) fn peer(&self, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
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
        // `rewrite_upstream_request` strips an HTTP/1 upstream's hop-by-hop
        // headers on every path, so Pingora's own stripping would only
        // repeat it. (HTTP/2 upstreams keep Pingora's, which knows that
        // gRPC's `te: trailers` stays.)
        if !upstream.http2 {
            peer.options.http_upstream_request_policy =
                pingora::upstreams::peer::HttpUpstreamRequestPolicy::preserve();
        }
        peer.options.connection_timeout = Some(upstream.connect_timeout);
        peer.options.read_timeout = Some(upstream.read_timeout);
        peer.options.write_timeout = Some(upstream.write_timeout);
        Ok(Box::new(peer))
    }

    /// The request header as the upstream gets it: hop-by-hop headers
    /// removed (a WebSocket upgrade's own set again), the headers we own
    /// (identity, forwarding) replaced with verified ones, private cookies
    /// and (per route) the credentials removed, request id and trace
    /// context set.
    pub(super) fn rewrite_upstream_request(
        &self,
        upstream: &mut RequestHeader,
        ctx: &Ctx,
    ) -> Result<()> {
        let route = ctx.route.and_then(|i| self.routes.get(i));
        if route.is_none_or(|r| !self.upstreams[r.upstream].http2) {
            let websocket =
                upstream.version == http::Version::HTTP_11 && crate::tunnel::is_websocket(upstream);
            crate::rewrite::strip_hop_by_hop(upstream, websocket)?;
        }
        self.headers.strip_owned(upstream);
        let host = upstream.headers.get(http::header::HOST).cloned();
        self.headers.add_forwarded(upstream, &ctx.inbound, host)?;
        let forward = route.is_some_and(|r| r.forward_authorization);
        self.headers.strip_cookies(upstream)?;
        match &ctx.principal {
            // A session's access token, as the upstream would get a bearer.
            Some(Principal::Session(s)) if forward => {
                upstream.insert_header("authorization", format!("Bearer {}", s.access_token()))?;
            }
            _ if forward => {}
            _ => {
                upstream.remove_header(&http::header::AUTHORIZATION);
            }
        }
        upstream.insert_header("x-request-id", ctx.request_id.clone())?;
        self.set_trace_context(upstream, ctx)?;
        // An identity header the decision sets or removes is left to it
        // rather than written twice.
        let decided = |name: &str| {
            ctx.verdict.as_ref().is_some_and(|v| {
                v.headers.iter().any(|(n, _)| n == name) || v.remove.iter().any(|n| n == name)
            })
        };
        match &ctx.principal {
            Some(Principal::Bearer(b)) => {
                for (name, value) in b.headers.iter().filter(|(n, _)| !decided(n)) {
                    upstream.insert_header(*name, value.clone())?;
                }
            }
            Some(Principal::Session(s)) => {
                for (name, value) in identity_headers(&s.claims) {
                    if !decided(name) {
                        upstream.insert_header(name, value)?;
                    }
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

    /// With tracing, the upstream's parent is our span, and a client's
    /// trace state leaves with the trace it was not allowed to continue.
    /// Without, a client's trace context passes through when well-formed (a
    /// malformed one would only confuse the upstream's tracer).
    fn set_trace_context(&self, upstream: &mut RequestHeader, ctx: &Ctx) -> Result<()> {
        if let Some(trace) = &ctx.trace {
            upstream.insert_header("traceparent", trace.traceparent(Phase::Upstream))?;
            if !self.accept_traceparent {
                upstream.remove_header(&header_names::TRACESTATE);
            }
            return Ok(());
        }
        let well_formed = upstream
            .headers
            .get(header_names::TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(valid_traceparent);
        if !well_formed {
            upstream.remove_header(&header_names::TRACEPARENT);
            upstream.remove_header(&header_names::TRACESTATE);
        }
        Ok(())
    }

    /// The last step of `request_filter`: the policy decision, then an
    /// allowed upgrade goes through our tunnel and anything else back to
    /// Pingora to be proxied.
    pub(super) async fn authorize_then_tunnel_upgrades(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<bool> {
        if self.decide(session, ctx).await? {
            return Ok(true);
        }
        // Upgrades are WebSocket ones by now (`refuse_foreign_upgrade`). One
        // with a request body (rare: handshakes have none) stays with
        // Pingora, which sends the body before the switch. The tunnel's
        // future is boxed, so other requests' futures do not carry its size.
        if session.is_upgrade_req() && session.is_body_empty() {
            return Box::pin(self.tunnel(session, ctx)).await;
        }
        if self.forwards_directly(session, ctx) {
            return self.forward_directly(session, ctx).await;
        }
        Ok(false)
    }

    /// Whether the direct path (`crate::direct`) takes this request: an
    /// HTTP/1.1 request, no upgrade and no `Expect`, to an HTTP/1.1
    /// upstream. Anything else stays with pingora-proxy.
    fn forwards_directly(&self, session: &Session, ctx: &Ctx) -> bool {
        let req = session.req_header();
        let http1_upstream = ctx
            .route
            .and_then(|i| self.routes.get(i))
            .is_some_and(|r| !self.upstreams[r.upstream].http2);
        self.direct.is_some()
            && http1_upstream
            && session.as_http1().is_some()
            && req.version == http::Version::HTTP_11
            && !session.is_upgrade_req()
            && !req.headers.contains_key(http::header::EXPECT)
    }

    /// The direct path: an idle connection of this thread's (or a new one),
    /// the request, its response. Connect failures are retried as
    /// `fail_to_connect` allows on pingora-proxy's path; a reused
    /// connection the upstream had closed is replaced by a fresh one once.
    /// Failures go back to Pingora, which answers them (`fail_to_proxy`).
    async fn forward_directly(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let (Some(connector), Some(route)) = (&self.direct, ctx.route) else {
            return Err(Error::explain(
                ErrorType::InternalError,
                "direct path unset",
            ));
        };
        let upstream_index = self.routes.get(route).map_or(0, |r| r.upstream);
        let body = !session.is_body_empty();
        let idempotent = session.req_header().method.is_idempotent();
        ctx.forwarder = Forwarder::Direct;
        self.enter(ctx, Phase::Upstream);
        let mut fresh_only = false;
        loop {
            let peer = self.peer(ctx)?;
            let address = ctx
                .upstream
                .ok_or_else(|| Error::explain(ErrorType::InternalError, "no upstream address"))?;
            let key = (upstream_index, address);
            let pooled = if fresh_only {
                None
            } else {
                crate::direct::checkout(key, std::time::Instant::now())
            };
            let reused = pooled.is_some();
            let stream = match pooled {
                Some(stream) => stream,
                // Boxed: connecting (TLS included) is a large future, and
                // only a pool miss needs it.
                None => match Box::pin(connector.new_stream(&*peer)).await {
                    Ok(stream) => stream,
                    Err(mut e) => {
                        e.retry.decide_reuse(false);
                        let e = self.fail_to_connect(session, &peer, ctx, e.into_up());
                        if e.retry() {
                            continue;
                        }
                        return Err(e);
                    }
                },
            };
            let mut upstream = pingora::protocols::http::v1::client::HttpSession::new(stream);
            upstream.read_timeout = peer.options.read_timeout;
            upstream.write_timeout = peer.options.write_timeout;
            let mut request = session.req_header().clone();
            self.rewrite_upstream_request(&mut request, ctx)?;
            let framed = request.headers.contains_key(http::header::CONTENT_LENGTH)
                || request
                    .headers
                    .contains_key(http::header::TRANSFER_ENCODING);
            if body && !framed {
                request.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
            }
            let exchanged = crate::direct::exchange(
                &mut session.downstream_session,
                upstream,
                reused,
                request,
                |response| {
                    if let Some(trace) = &mut ctx.trace
                        && !response.status.is_informational()
                    {
                        trace.leave();
                    }
                    self.finish_response(response, ctx)
                },
            )
            .await;
            match exchanged {
                Ok(idle) => {
                    if let Some(stream) = idle {
                        crate::direct::release(key, stream, std::time::Instant::now());
                    }
                    return Ok(true);
                }
                // As pingora-proxy decides it: only what is safe to repeat.
                Err(crate::direct::Failed::Retryable(e)) if !idempotent => return Err(e),
                Err(crate::direct::Failed::Retryable(_)) => fresh_only = true,
                Err(crate::direct::Failed::Final(e)) => return Err(e),
            }
        }
    }

    /// An HTTP/1.1 upgrade (WebSocket), once allowed: proxied through our
    /// own tunnel (`tunnel.rs`), with connect failures retried on the
    /// route's other addresses as for any idempotent request.
    pub(super) async fn tunnel(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let mut request = session.req_header().clone();
        self.rewrite_upstream_request(&mut request, ctx)?;
        ctx.forwarder = Forwarder::Tunnel;
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
    /// request id and (on the final response, not a 1xx) a refreshed
    /// session's cookie; the upstream's own `Set-Cookie` for a private
    /// cookie is dropped (counted).
    pub(super) fn finish_response(
        &self,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
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
        if response.status.is_informational() {
            return Ok(());
        }
        if let Some(cookie) = ctx.set_cookie.take() {
            response.append_header("set-cookie", cookie)?;
        }
        Ok(())
    }
}

/// The identity headers (`decision::headers::identity`) as header values.
pub(super) fn identity_headers(
    claims: &decision::Claims,
) -> Vec<(&'static str, http::HeaderValue)> {
    decision::headers::identity(claims)
        .into_iter()
        .filter_map(|(name, value)| Some((name, http::HeaderValue::try_from(value).ok()?)))
        .collect()
}

/// This thread's upstream connection group. Pingora keeps one upstream
/// pool for every thread, and an idle connection is held by a watcher task
/// that has to be woken to hand it over, so a connection released on one
/// thread and taken on another costs cross-thread wake-ups. With work
/// stealing off a client connection stays on the thread that accepted it,
/// and grouped by thread each worker takes back only the upstream
/// connections it released, as nginx and Envoy workers keep their own
/// (`loadtest/reports/gateway.md` measures the difference).
pub(super) fn worker_group() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static GROUP: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    GROUP.with(|g| *g)
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
