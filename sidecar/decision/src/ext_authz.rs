//! The ext_authz answer, whatever the transport. Envoy's gRPC `Check`
//! ([`crate::grpc`]) and its HTTP mode ([`crate::http`]) ask the same
//! question and get the same answer; only the encoding differs.

use std::net::IpAddr;

use crate::authn::Authn;
use crate::claims::Claims;
use crate::engine::{CheckRequest, Engine};
use crate::headers;

/// One request a proxy wants decided.
#[derive(Debug)]
pub struct Question<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub source: Option<IpAddr>,
    pub request_id: Option<&'a str>,
    /// Claims the proxy verified (Envoy's jwt_authn, the gateway). Without
    /// them the bearer token in `authorization` is verified here, when
    /// issuers are configured; otherwise the request is anonymous.
    pub claims: Option<Claims>,
    pub authorization: Option<&'a str>,
    /// Names of the request's headers under the owned prefix (`x-auth-`):
    /// spoofed unless we set them, so removed.
    pub sent_owned: Vec<&'a str>,
}

#[derive(Debug, PartialEq)]
pub enum Answer {
    Allow {
        /// Identity headers to set upstream, replacing any the client sent.
        set: Vec<(&'static str, String)>,
        /// The other owned headers and any other `x-auth-*` the client
        /// sent, to remove. Envoy removes after it sets, so a header being
        /// set is never listed here.
        remove: Vec<String>,
    },
    Deny(Denial),
}

/// A refusal: 401 (no identity, or a refused token) or 403. The body names
/// no policy and no reason beyond `error`.
#[derive(Debug, PartialEq)]
pub struct Denial {
    pub status: u16,
    pub error: &'static str,
    pub challenge: Option<String>,
    /// `{"error": ..., "request_id": ...}`
    pub body: String,
}

impl Denial {
    fn new(status: u16, error: &'static str, challenge: Option<String>, id: Option<&str>) -> Self {
        let body = serde_json::json!({"error": error, "request_id": id}).to_string();
        Self {
            status,
            error,
            challenge,
            body,
        }
    }
}

pub async fn answer(engine: &Engine, authn: &Authn, question: Question<'_>) -> Answer {
    let claims = match question.claims {
        Some(c) => Some(c),
        None => match authn.bearer(question.authorization).await {
            Ok(c) => c,
            Err(rejected) => {
                return Answer::Deny(Denial::new(
                    401,
                    "invalid_token",
                    Some(rejected.challenge()),
                    question.request_id,
                ));
            }
        },
    };
    let decision = engine.check(&CheckRequest {
        method: question.method,
        path: question.path,
        host: question.host,
        source: question.source,
        claims: claims.as_ref(),
        request_id: question.request_id,
        time: None,
    });
    if decision.allowed() {
        let set = claims.as_ref().map(headers::identity).unwrap_or_default();
        let mut remove: Vec<String> = Vec::new();
        for name in headers::OWNED.into_iter().chain(question.sent_owned) {
            let name = name.to_ascii_lowercase();
            if !set.iter().any(|(k, _)| *k == name) && !remove.contains(&name) {
                remove.push(name);
            }
        }
        Answer::Allow { set, remove }
    } else if claims.is_none() {
        // No verified identity: ask for one.
        Answer::Deny(Denial::new(
            401,
            "unauthenticated",
            Some("Bearer".into()),
            question.request_id,
        ))
    } else {
        Answer::Deny(Denial::new(403, "forbidden", None, question.request_id))
    }
}
