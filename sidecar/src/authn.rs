//! Who is asking: verified claims handed over by the caller (Envoy's
//! jwt_authn metadata, the gateway, `/v1/check`'s `claims`), or, when
//! issuers are configured, the bearer token verified here.

use std::sync::Arc;

use tokens::{TokenError, Verifier};

use decision::Claims;
use decision::ext_authz::Rejected;
use decision::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Authn {
    verifier: Option<Arc<Verifier>>,
    metrics: Metrics,
}

impl Authn {
    pub fn new(verifier: Option<Arc<Verifier>>, metrics: Metrics) -> Self {
        Self { verifier, metrics }
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_deref()
    }

    /// Who is asking: the claims the proxy verified, else those of the
    /// bearer token in `authorization`.
    pub async fn identify(
        &self,
        verified: Option<Claims>,
        authorization: Option<&str>,
    ) -> Result<Option<Claims>, Rejected> {
        match verified {
            Some(claims) => Ok(Some(claims)),
            None => self.bearer(authorization).await,
        }
    }

    /// Claims from the `authorization` header when the sidecar verifies
    /// tokens itself. No verifier, no header, or another scheme: `None`
    /// (the request is anonymous and the policies decide).
    pub async fn bearer(&self, authorization: Option<&str>) -> Result<Option<Claims>, Rejected> {
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
            Rejected(format!("claims: {e}"))
        })
    }

    fn refuse(&self, e: &TokenError) -> Rejected {
        self.metrics
            .token_failures
            .with_label_values(&[e.reason()])
            .inc();
        Rejected(e.to_string())
    }
}
