//! Who is asking: verified claims handed over by the caller (Envoy's
//! jwt_authn metadata, the gateway, `/v1/check`'s `claims`), or, when
//! issuers are configured, the bearer token verified here.

use std::sync::Arc;

use tokens::{TokenError, Verifier};

use crate::claims::Claims;
use crate::metrics::Metrics;

#[derive(Debug, Clone)]
pub struct Authn {
    verifier: Option<Arc<Verifier>>,
    metrics: Metrics,
}

/// A bearer token was sent and refused: the answer is 401 with an RFC 6750
/// challenge, whatever the policies say.
#[derive(Debug, Clone)]
pub struct Rejected(pub String);

impl Rejected {
    /// `WWW-Authenticate` value for the refusal.
    pub fn challenge(&self) -> String {
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            self.0.replace(['"', '\\'], "'")
        )
    }
}

impl Authn {
    pub fn new(verifier: Option<Arc<Verifier>>, metrics: Metrics) -> Self {
        Self { verifier, metrics }
    }

    pub fn verifier(&self) -> Option<&Verifier> {
        self.verifier.as_deref()
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
