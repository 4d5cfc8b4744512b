//! Header names the hot path looks up or removes on every request, parsed
//! once: a lookup by `&str` parses the name again each time.
//!
//! Headers the gateway adds keep `&'static str` names on purpose: Pingora
//! parses an inserted name whichever form it is given, and a `HeaderName`
//! would make it allocate a copy for the name's original case as well.

use http::HeaderName;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
