//! Who is asking: verified claims handed over by the caller (Envoy's
//! jwt_authn metadata, the gateway, `/v1/check`'s `claims`), or, when
//! issuers are configured, the bearer token verified here (and refused
//! when the change feed revoked it). With the feed stale and told to fail
//! closed, nobody is identified (503).

use std::sync::Arc;

use tokens::{TokenError, Verifier};

use decision::Claims;
use decision::ext_authz::Rejected;
use decision::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Authn {
    verifier: Option<Arc<Verifier>>,
    metrics: Metrics,
    feed: Option<feed::Running>,
}

impl Authn {
    pub fn new(
        verifier: Option<Arc<Verifier>>,
        metrics: Metrics,
        feed: Option<feed::Running>,
    ) -> Self {
        Self {
            verifier,
            metrics,
            feed,
        }
    }

    /// The change feed this sidecar follows, if any.
    pub fn feed(&self) -> Option<&feed::Running> {
        self.feed.as_ref()
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_deref()
    }

    /// Who is asking: the claims the proxy verified, else those of the
    /// bearer token in `authorization`; refused when the change feed
    /// revoked them.
    pub async fn identify(
        &self,
        verified: Option<Claims>,
        authorization: Option<&str>,
    ) -> Result<Option<Claims>, Rejected> {
        if self
            .feed
            .as_ref()
            .is_some_and(feed::Running::entities_unknown)
        {
            return Err(Rejected::Unavailable(
                "the directory is out of date: the change feed has not answered".into(),
            ));
        }
        let claims = match verified {
            Some(claims) => Some(claims),
            None => self.bearer(authorization).await?,
        };
        if let (Some(claims), Some(guard)) =
            (&claims, self.feed.as_ref().and_then(|f| f.guard.as_ref()))
        {
            match guard.check(claims) {
                feed::Verdict::Pass => {}
                feed::Verdict::Revoked => {
                    self.metrics
                        .token_failures
                        .with_label_values(&["revoked"])
                        .inc();
                    return Err(Rejected::Token("the token was revoked".into()));
                }
                feed::Verdict::Unknown => {
                    return Err(Rejected::Unavailable(
                        "revocations are out of date: the change feed has not answered".into(),
                    ));
                }
            }
        }
        Ok(claims)
    }

    /// Claims from the `authorization` header when the sidecar verifies
    /// tokens itself. No verifier, no header, or another scheme: `None`
    /// (the request is anonymous and the policies decide).
    async fn bearer(&self, authorization: Option<&str>) -> Result<Option<Claims>, Rejected> {
        let (Some(verifier), Some(value)) = (&self.verifier, authorization) else {
            return Ok(None);
        };
        let Some(token) = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
        else {
            return Ok(None);
        };
        let verified = verifier.verify(token).await.map_err(|e| self.refuse(&e))?;
        Claims::from_json(&verified.claims).map(Some).map_err(|e| {
            self.metrics
                .token_failures
                .with_label_values(&["bad_claim"])
                .inc();
            Rejected::Token(format!("claims: {e}"))
        })
    }

    fn refuse(&self, e: &TokenError) -> Rejected {
        self.metrics
            .token_failures
            .with_label_values(&[e.reason()])
            .inc();
        Rejected::Token(e.to_string())
    }
}
