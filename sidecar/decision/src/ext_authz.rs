//! The ext_authz answer, whatever the transport. Envoy's gRPC `Check` and
//! its HTTP mode (the sidecar service) ask the same question and get the
//! same answer; only the encoding differs.

use std::net::IpAddr;

use crate::challenge;
use crate::claims::Claims;
use crate::engine::{CheckRequest, Engine};
use crate::headers;
use crate::outcome::StepUp;

/// One request a proxy wants decided.
#[derive(Debug)]
pub struct Question<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: Option<&'a str>,
    pub source: Option<IpAddr>,
    pub request_id: Option<&'a str>,
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
/// no policy and no reason beyond `error`; the gateway's embedded engine
/// and the sidecar (gRPC and HTTP) send exactly these.
#[derive(Debug, Clone, PartialEq)]
pub struct Denial {
    pub status: u16,
    pub error: &'static str,
    pub challenge: Option<String>,
    /// `{"error": ..., "message": ...}`
    pub body: String,
}

impl Denial {
    fn new(status: u16, error: &'static str, message: &str, challenge: Option<String>) -> Self {
        let body = serde_json::json!({"error": error, "message": message}).to_string();
        Self {
            status,
            error,
            challenge,
            body,
        }
    }

    /// The policies want an identity and the request has none.
    pub fn unauthenticated() -> Self {
        Self::new(
            401,
            "unauthorized",
            "credentials are required",
            Some(challenge::bearer()),
        )
    }

    /// The policies refuse this identity.
    pub fn forbidden() -> Self {
        Self::new(403, "forbidden", "denied by policy", None)
    }

    /// The policies want a stronger or fresher sign-in (RFC 9470).
    pub fn insufficient_user_authentication(step: &StepUp) -> Self {
        Self::new(
            401,
            "insufficient_user_authentication",
            "a stronger sign-in is required",
            Some(challenge::insufficient_user_authentication(
                &step.acr_values,
                step.max_age,
            )),
        )
    }

    /// A bearer token was sent and refused, whatever the policies say; or
    /// it cannot be judged now (503).
    pub fn rejected(rejected: &Rejected) -> Self {
        match rejected {
            Rejected::Token(why) => Self::new(
                401,
                "invalid_token",
                "the bearer token was refused",
                Some(challenge::invalid_token(why)),
            ),
            Rejected::Unavailable(_) => {
                Self::new(503, "unavailable", "tokens cannot be checked now", None)
            }
        }
    }
}

/// A bearer token that was sent and refused, or that cannot be judged now
/// (the revocations are out of date: fail closed); the string says why.
#[derive(Debug, Clone)]
pub enum Rejected {
    Token(String),
    Unavailable(String),
}

/// Decide `question` for `identity`: the claims the proxy or the sidecar
/// verified, `None` for an anonymous request, or a refused token.
pub fn answer(
    engine: &Engine,
    identity: Result<Option<Claims>, Rejected>,
    question: Question<'_>,
) -> Answer {
    let claims = match identity {
        Ok(claims) => claims,
        Err(rejected) => return Answer::Deny(Denial::rejected(&rejected)),
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
    // For a trace of the request (the sidecar's span declares the fields):
    // which policies decided, never the token or the claims.
    let span = tracing::Span::current();
    if !span.is_disabled() {
        span.record("decision.allowed", decision.allowed());
        span.record("decision.policies", decision.outcome.policies.join(","));
    }
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
    } else {
        Answer::Deny(refusal(claims.is_some(), decision.outcome.step_up.as_ref()))
    }
}

/// The denial of a request the policies refused: without a verified
/// identity the client is asked for one (401); with one, for a stronger
/// sign-in when a determining policy says so (401, RFC 9470), otherwise
/// it is forbidden.
pub fn refusal(identified: bool, step_up: Option<&StepUp>) -> Denial {
    match (identified, step_up) {
        (false, _) => Denial::unauthenticated(),
        (true, Some(step)) => Denial::insufficient_user_authentication(step),
        (true, None) => Denial::forbidden(),
    }
}
