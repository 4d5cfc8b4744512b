//! The policy question for routes with `policy = true`, and the route's
//! rate limit.

use pingora::Result;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use super::*;
use crate::ratelimit::StoreError;

impl Gateway {
    /// On routes with `policy`, the decider (sidecar or embedded engine)
    /// decides. A deny is answered as the decider says (401/403, nothing
    /// internal), except that a browser session asked for a stronger
    /// sign-in is sent to get it; no answer is a 503 unless the route
    /// fails open.
    pub(super) async fn decide(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let Some(route) = ctx.route.and_then(|i| self.routes.get(i)) else {
            return Ok(false);
        };
        if !route.policy {
            return Ok(false);
        }
        let Some(authorizer) = &self.authorizer else {
            return refuse(session, Refusal::Unavailable(NO_DECISION.into())).await;
        };
        self.enter(ctx, Phase::Decide);
        let traceparent = ctx
            .trace
            .as_deref()
            .map(|t| move || t.traceparent(Phase::Decide));
        let req = session.req_header();
        let query = Query {
            method: req.method.as_str(),
            path: req.uri.path_and_query().map_or("/", |p| p.as_str()),
            host: crate::inbound::host(req),
            source: ctx.inbound.client,
            request_id: ctx.request_id.to_str().unwrap_or_default(),
            token_digest: ctx.principal.as_ref().map(Principal::token_digest),
            claims: ctx.principal.as_ref().map(Principal::payload),
            parsed: ctx.principal.as_ref().map(Principal::claims),
            traceparent: traceparent
                .as_ref()
                .map(|f| f as &(dyn Fn() -> String + Sync)),
        };
        // Entities from a feed that cannot be vouched for (and told to
        // fail closed): no decision, as if the decider were down.
        let result = if self
            .feed
            .as_ref()
            .is_some_and(feed::Running::entities_unknown)
        {
            Err(crate::authz::AuthzError::Unavailable(
                "the directory is out of date: the change feed has not answered".into(),
            ))
        } else {
            authorizer.check(&query, &self.metrics).await
        };
        if let Some(trace) = &mut ctx.trace {
            trace.leave();
        }
        match result {
            Ok(verdict) if verdict.allowed => {
                ctx.verdict = Some(verdict);
                Ok(false)
            }
            Ok(verdict) => {
                // A browser page reserved for a stronger sign-in goes to
                // get it; an API client gets the RFC 9470 challenge.
                if let (Some((acr, max_age)), Some(Principal::Session(_)), Some(sessions)) =
                    (&verdict.step_up, &ctx.principal, &self.sessions)
                    && crate::session::wants_page(session.req_header())
                {
                    return sessions.step_up(session, acr, *max_age).await;
                }
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
    pub(super) async fn limit(&self, session: &mut Session, ctx: &Ctx) -> Result<bool> {
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
                // Once per failure of the store, not per request skipping it.
                if !matches!(e, StoreError::Skipped) {
                    tracing::warn!(error = %e, "rate limit not applied");
                }
                Ok(false)
            }
        }
    }
}
