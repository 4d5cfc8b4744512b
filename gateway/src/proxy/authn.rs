//! Who is calling: a bearer token from a configured issuer (verified once,
//! cached until `exp`, failures charged to the client's budget), or a
//! browser session. Either is refused, on every request, when the change
//! feed revoked it (its user, its session or itself).

use std::sync::Arc;

use pingora::Result;
use pingora::http::RequestHeader;
use pingora::proxy::Session;

use super::*;

/// A verified bearer token with what every request needs from it worked
/// out once: the claims as policies read them and the identity headers.
pub(super) struct Bearer {
    /// SHA-256 of the token: its key here and in the decision cache.
    pub(super) digest: [u8; 32],
    pub(super) verified: Arc<Verified>,
    pub(super) claims: decision::Claims,
    pub(super) headers: Vec<(&'static str, http::HeaderValue)>,
}

impl Bearer {
    pub(super) fn new(digest: [u8; 32], verified: Arc<Verified>, claims: decision::Claims) -> Self {
        let headers = identity_headers(&claims);
        Self {
            digest,
            verified,
            claims,
            headers,
        }
    }
}

/// Verified bearers live until their token's `exp` (at most five minutes).
pub(super) struct UntilExpiry;

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
pub(super) enum Principal {
    Bearer(Arc<Bearer>),
    Session(Arc<Active>),
}

impl Principal {
    /// The claims as the policy engine and the identity headers read them.
    pub(super) fn claims(&self) -> &decision::Claims {
        match self {
            Self::Bearer(b) => &b.claims,
            Self::Session(s) => &s.claims,
        }
    }

    /// SHA-256 of the token behind the claims (the bearer token, or the
    /// session's access token).
    pub(super) fn token_digest(&self) -> &[u8; 32] {
        match self {
            Self::Bearer(b) => &b.digest,
            Self::Session(s) => s.access_digest(),
        }
    }

    /// The verified payload and when it expires.
    pub(super) fn payload(&self) -> (&serde_json::Map<String, serde_json::Value>, u64) {
        match self {
            Self::Bearer(b) => (&b.verified.claims, b.verified.expires_at),
            Self::Session(s) => (&s.payload, s.expires_at()),
        }
    }
}

impl Gateway {
    /// A bearer token from a configured issuer (a JWT, or an opaque token
    /// the issuer introspects); refusals are 401s with an RFC 6750
    /// challenge, counted by reason; an unreachable issuer is a 503.
    pub(super) async fn authenticate_bearer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<bool> {
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
            return self.admit_bearer(session, ctx, bearer).await;
        }
        self.metrics.token_misses.inc();
        // Tokens that fail are charged to the client's budget. An opaque
        // token costs an introspection call, so it is charged before the
        // call (concurrent requests cannot all slip past a check) and
        // refunded when it is good; a JWT is checked locally, always.
        let source = self.failure_bucket(ctx);
        let opaque = !token.contains('.');
        if opaque && let Admit::No { retry_after_secs } = self.failed_auth.admit(source) {
            self.metrics
                .auth_failures
                .with_label_values(&["too_many_failures"])
                .inc();
            return refuse(session, Refusal::RateLimited { retry_after_secs }).await;
        }
        let started = std::time::Instant::now();
        // Boxed: verifying (a key fetch, an introspection) is a large
        // future, and cached tokens never need it.
        let result = Box::pin(verifier.verify(token)).await;
        self.metrics
            .token_verification
            .observe(started.elapsed().as_secs_f64());
        let verified = match result {
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
                let bearer = Arc::new(Bearer::new(key, verified, claims));
                self.bearers.insert(key, bearer.clone());
                self.admit_bearer(session, ctx, bearer).await
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
    pub(super) async fn authenticate_session(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
    ) -> Result<bool> {
        let Some(sessions) = &self.sessions else {
            return refuse(
                session,
                Refusal::Unavailable("session mode is not configured".into()),
            )
            .await;
        };
        let found = match sessions.lookup(session.req_header()).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "session unreadable");
                return refuse(session, crate::refusal::session_store_down()).await;
            }
        };
        let active = match found {
            Some(active) => match self.vet(&active.claims) {
                feed::Verdict::Pass => Some(active),
                // Ended at the authserver (or its user disabled): signed out.
                feed::Verdict::Revoked => {
                    self.metrics
                        .auth_failures
                        .with_label_values(&["revoked"])
                        .inc();
                    sessions.forget(&active).await;
                    return sessions.challenge(session).await;
                }
                feed::Verdict::Unknown => return refuse(session, feed_unknown()).await,
            },
            None => None,
        };
        match active {
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

impl Gateway {
    /// The budget a client's refused tokens are charged to: its address
    /// (an IPv6 client's prefix).
    fn failure_bucket(&self, ctx: &Ctx) -> BucketKey<'static> {
        BucketKey::Addr(
            ctx.inbound
                .client
                .map(|ip| bootstrap::net::bucket(ip, self.failed_auth_ipv6_prefix)),
        )
    }

    /// What the change feed says of a verified caller.
    fn vet(&self, claims: &decision::Claims) -> feed::Verdict {
        self.feed
            .as_ref()
            .and_then(|f| f.guard.as_ref())
            .map_or(feed::Verdict::Pass, |g| g.check(claims))
    }

    /// A verified bearer, unless the change feed revoked it: then it is
    /// dropped from the cache and charged to the client's budget like any
    /// refused token (a user enabled again verifies afresh).
    async fn admit_bearer(
        &self,
        session: &mut Session,
        ctx: &mut Ctx,
        bearer: Arc<Bearer>,
    ) -> Result<bool> {
        match self.vet(&bearer.claims) {
            feed::Verdict::Pass => {
                ctx.principal = Some(Principal::Bearer(bearer));
                Ok(false)
            }
            feed::Verdict::Revoked => {
                self.bearers.invalidate(&bearer.digest);
                self.metrics
                    .auth_failures
                    .with_label_values(&["revoked"])
                    .inc();
                self.failed_auth.admit(self.failure_bucket(ctx));
                refuse(session, Refusal::InvalidToken("revoked".into())).await
            }
            feed::Verdict::Unknown => refuse(session, feed_unknown()).await,
        }
    }
}

/// 503 for the feed issuer's callers while the feed, told to fail closed,
/// cannot vouch for what was revoked.
fn feed_unknown() -> Refusal {
    Refusal::Unavailable("revocations are out of date: the change feed has not answered".into())
}

fn bearer(req: &RequestHeader) -> Option<&str> {
    let value = req
        .headers
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
