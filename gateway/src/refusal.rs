//! Every refusal the gateway writes itself: one type, rendered by one
//! function as `{"error": code, "message": ...}` with the status, challenge
//! and headers that go with it. Policy denials are the decision contract's
//! own [`decision::ext_authz::Denial`], whichever engine decided.

use std::borrow::Cow;

use decision::challenge;
use serde_json::json;

use pingora::proxy::Session;

use crate::reply::{Reply, reply};

/// Write `refusal` as the whole response.
pub async fn refuse(session: &mut Session, refusal: Refusal) -> pingora::Result<bool> {
    reply(session, refusal.reply()).await
}

#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// 400: the request cannot be read as every upstream would read it, or
    /// a gateway endpoint got a malformed request.
    BadRequest(Cow<'static, str>),
    /// 401 with a challenge: a route that needs a bearer token got none.
    TokenRequired,
    /// 401 with a challenge naming why the token was refused.
    InvalidToken(Cow<'static, str>),
    /// 401 without a challenge: a session route (or endpoint) and no
    /// session; the message says what to do.
    NoSession(&'static str),
    /// 403: the request is understood and refused (not by policy).
    Forbidden(&'static str),
    /// 403 with a challenge: the token lacks a scope the route requires.
    InsufficientScope(String),
    /// 403: the authorization server refused the sign-in.
    SignInRefused {
        error: String,
        description: Option<String>,
    },
    /// 404: no route takes this request.
    NoRoute,
    /// 405 with `Allow`.
    MethodNotAllowed {
        message: &'static str,
        allow: &'static str,
    },
    /// 413.
    PayloadTooLarge(&'static str),
    /// 429 with `Retry-After`.
    RateLimited { retry_after_secs: u64 },
    /// 431.
    HeadersTooLarge,
    /// The sign-in could not be completed: 401 (refused tokens), 502 (the
    /// provider failed) or 503 (our session store did).
    SignInFailed { status: u16, message: String },
    /// 502: the upstream cannot be reached, or its answer cannot be read.
    BadGateway,
    /// 504: the upstream did not connect or answer within its timeouts.
    GatewayTimeout,
    /// 500: the gateway failed (a bug; the log says what).
    Internal,
    /// 503: a component the route needs is down or not configured.
    Unavailable(Cow<'static, str>),
    /// 503: a token's issuer cannot be reached to check it; the client's
    /// token is not called bad.
    IssuerUnavailable,
}

/// The message of a 503 for a route whose decider cannot answer.
pub const NO_DECISION: &str = "policy decision point unavailable";

/// 503 when Redis cannot say whether a session lives (or was ended by a
/// logout on another replica): not a sign-in prompt, which would loop.
pub fn session_store_down() -> Refusal {
    Refusal::Unavailable("the session store cannot be reached".into())
}

/// What the client is told when forwarding failed before its response
/// began, on either forwarding path: `None` when the client is gone (or
/// the error already names its status, which Pingora renders).
pub fn for_failure(e: &pingora::Error) -> Option<Refusal> {
    use pingora::ErrorType::*;
    match (e.esource(), e.etype()) {
        (_, HTTPStatus(_)) => None,
        (pingora::ErrorSource::Upstream, ConnectTimedout | ReadTimedout | WriteTimedout) => {
            Some(Refusal::GatewayTimeout)
        }
        (pingora::ErrorSource::Upstream, _) => Some(Refusal::BadGateway),
        (pingora::ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed) => None,
        (pingora::ErrorSource::Downstream, _) => Some(Refusal::BadRequest(
            format!("the request could not be read: {}", e.etype().as_str()).into(),
        )),
        (pingora::ErrorSource::Internal | pingora::ErrorSource::Unset, _) => {
            Some(Refusal::Internal)
        }
    }
}

impl From<crate::inbound::Unreadable> for Refusal {
    fn from(e: crate::inbound::Unreadable) -> Self {
        Self::BadRequest(e.to_string().into())
    }
}

impl Refusal {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::TokenRequired | Self::InvalidToken(_) | Self::NoSession(_) => 401,
            Self::Forbidden(_) | Self::InsufficientScope(_) | Self::SignInRefused { .. } => 403,
            Self::NoRoute => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::PayloadTooLarge(_) => 413,
            Self::RateLimited { .. } => 429,
            Self::HeadersTooLarge => 431,
            Self::SignInFailed { status, .. } => *status,
            Self::BadGateway => 502,
            Self::GatewayTimeout => 504,
            Self::Internal => 500,
            Self::Unavailable(_) | Self::IssuerUnavailable => 503,
        }
    }

    /// The `error` code of the body.
    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::TokenRequired | Self::NoSession(_) => "unauthorized",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::InsufficientScope(_) => "insufficient_scope",
            Self::SignInRefused { .. } => "access_denied",
            Self::NoRoute => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::PayloadTooLarge(_) => "payload_too_large",
            Self::RateLimited { .. } => "rate_limited",
            Self::HeadersTooLarge => "request_header_fields_too_large",
            Self::SignInFailed { .. } => "sign_in_failed",
            Self::BadGateway => "bad_gateway",
            Self::GatewayTimeout => "gateway_timeout",
            Self::Internal => "internal_error",
            Self::Unavailable(_) => "unavailable",
            Self::IssuerUnavailable => "temporarily_unavailable",
        }
    }

    /// What the body's `message` tells the client; never a token, never
    /// which policy decided.
    fn message(&self) -> Cow<'_, str> {
        match self {
            Self::BadRequest(m) | Self::Unavailable(m) => Cow::Borrowed(m),
            Self::TokenRequired => "a bearer token is required".into(),
            Self::InvalidToken(_) => "the bearer token was refused".into(),
            Self::NoSession(m) | Self::Forbidden(m) | Self::PayloadTooLarge(m) => (*m).into(),
            Self::MethodNotAllowed { message, .. } => (*message).into(),
            Self::InsufficientScope(_) => "the token lacks a required scope".into(),
            Self::SignInRefused { error, .. } => {
                format!("the authorization server answered `{error}`").into()
            }
            Self::NoRoute => "no route".into(),
            Self::RateLimited { .. } => "too many requests; see Retry-After".into(),
            Self::HeadersTooLarge => {
                "the request headers are larger than this gateway accepts".into()
            }
            Self::SignInFailed { message, .. } => Cow::Borrowed(message),
            Self::BadGateway => "the upstream cannot be reached".into(),
            Self::GatewayTimeout => "the upstream did not answer in time".into(),
            Self::Internal => "the gateway failed to forward the request".into(),
            Self::IssuerUnavailable => "the token's issuer cannot be reached to check it".into(),
        }
    }

    /// The response: the one place a refusal becomes bytes.
    pub fn reply(&self) -> Reply {
        let mut body = json!({"error": self.code(), "message": self.message()});
        if let Self::SignInRefused { description, .. } = self {
            body["description"] = json!(description);
        }
        let reply = Reply::json(self.status(), body.to_string());
        match self {
            Self::TokenRequired => reply.header("www-authenticate", challenge::bearer()),
            Self::InvalidToken(why) => {
                reply.header("www-authenticate", challenge::invalid_token(why))
            }
            Self::InsufficientScope(scope) => {
                reply.header("www-authenticate", challenge::insufficient_scope(scope))
            }
            Self::MethodNotAllowed { allow, .. } => reply.header("allow", (*allow).to_owned()),
            Self::RateLimited { retry_after_secs } => {
                reply.header("retry-after", retry_after_secs.to_string())
            }
            _ => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refusal_names_its_error_in_json_with_the_status_it_renders() {
        let all = [
            Refusal::BadRequest("`x` is wrong".into()),
            Refusal::TokenRequired,
            Refusal::InvalidToken("expired".into()),
            Refusal::NoSession("no valid session"),
            Refusal::Forbidden("no"),
            Refusal::InsufficientScope("orders:read".into()),
            Refusal::SignInRefused {
                error: "access_denied".into(),
                description: None,
            },
            Refusal::NoRoute,
            Refusal::MethodNotAllowed {
                message: "GET then POST",
                allow: "GET, POST",
            },
            Refusal::PayloadTooLarge("too big"),
            Refusal::RateLimited {
                retry_after_secs: 3,
            },
            Refusal::HeadersTooLarge,
            Refusal::SignInFailed {
                status: 502,
                message: "provider down".into(),
            },
            Refusal::BadGateway,
            Refusal::GatewayTimeout,
            Refusal::Internal,
            Refusal::Unavailable("policy decision point unavailable".into()),
            Refusal::IssuerUnavailable,
        ];
        for refusal in all {
            let (status, headers, body) = refusal.reply().into_parts();
            assert_eq!(status, refusal.status());
            let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(body["error"], refusal.code(), "{refusal:?}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
            let challenge = headers.iter().find(|(n, _)| *n == "www-authenticate");
            assert_eq!(
                challenge.is_some(),
                matches!(
                    refusal,
                    Refusal::TokenRequired
                        | Refusal::InvalidToken(_)
                        | Refusal::InsufficientScope(_)
                ),
                "{refusal:?}"
            );
        }
    }
}
