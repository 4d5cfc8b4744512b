//! The request as the gateway reads it, settled once before routing: one
//! credential, one host, one canonical path, one client address. The
//! request is rewritten to what was settled (origin-form target, canonical
//! path, normalised `Host`), so routing, authentication, the policy
//! question, the upstream request and the access log cannot read it
//! differently from each other or from the upstream. What cannot be made
//! unambiguous is refused with a 400 naming the problem.

use std::borrow::Cow;
use std::net::IpAddr;

use bootstrap::net::Cidr;
use http::HeaderValue;
use pingora::http::RequestHeader;
use pingora::protocols::http::authority::{RawTargetAuthority, raw_target_authority};

use crate::header_names;

/// Why a request cannot be read unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    #[error("the request has more than one `Authorization` header")]
    SeveralAuthorizations,
    #[error("the request has more than one `Host` header")]
    SeveralHosts,
    #[error("the request target is not valid UTF-8")]
    TargetNotUtf8,
    #[error("the request target must be a path or an absolute http(s) URL")]
    TargetForm,
    #[error("the request's authority and `Host` header differ")]
    HostMismatch,
    #[error("invalid host: {0}")]
    Host(#[from] decision::host::HostError),
    #[error("the request names no host, and this gateway routes by host")]
    NoHost,
    #[error(transparent)]
    Path(#[from] decision::path::PathError),
    #[error(
        "the path differs from the route `{0}` only in letter case, which many upstreams ignore"
    )]
    CaseOnly(String),
}

/// What the rest of the request's life reads.
#[derive(Debug, Default)]
pub struct Inbound {
    /// The client, behind any trusted proxies (`None`: a Unix socket peer,
    /// or a trusted proxy passed on something that is no address).
    pub client: Option<IpAddr>,
    /// The trusted hops after the client, ending with the peer.
    pub via: Vec<IpAddr>,
    /// The client's scheme: ours, or a trusted proxy's `X-Forwarded-Proto`.
    pub https: bool,
}

/// What reading a request depends on.
pub struct Rules {
    pub trusted_proxies: Vec<Cidr>,
    /// Some route names a host: a request without one cannot be routed.
    pub host_required: bool,
}

/// Settle `req` (rewriting it in place) and say what was settled. `peer`
/// is the TCP peer, `tls` whether it came over our TLS listener.
pub fn read(
    req: &mut RequestHeader,
    peer: Option<IpAddr>,
    tls: bool,
    rules: &Rules,
) -> Result<Inbound, Unreadable> {
    if req
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .nth(1)
        .is_some()
    {
        return Err(Unreadable::SeveralAuthorizations);
    }
    if !req.raw_path_is_utf8() {
        return Err(Unreadable::TargetNotUtf8);
    }
    let has_host = settle_target(req)?;
    if !has_host && rules.host_required {
        return Err(Unreadable::NoHost);
    }
    let (client, via, trusted) = match peer {
        Some(peer) => {
            let origin = bootstrap::net::origin(
                peer,
                req.headers
                    .get_all(header_names::X_FORWARDED_FOR)
                    .iter()
                    .map(HeaderValue::as_bytes),
                &rules.trusted_proxies,
            );
            let trusted = rules.trusted_proxies.iter().any(|c| c.contains(peer));
            (origin.client, origin.via, trusted)
        }
        None => (None, Vec::new(), false),
    };
    // Behind a trusted proxy that ended TLS, the client's scheme is its word.
    let https = match req
        .headers
        .get(header_names::X_FORWARDED_PROTO)
        .map(HeaderValue::as_bytes)
    {
        Some(b"https") if trusted => true,
        Some(b"http") if trusted => false,
        _ => tls,
    };
    Ok(Inbound { client, via, https })
}

/// The host and canonical path, with the request rewritten to carry them:
/// `Host` set to the normalised host (also for HTTP/2, whose `:authority`
/// is kept, normalised), the target in origin-form with the canonical
/// path. True when the request names a host.
fn settle_target(req: &mut RequestHeader) -> Result<bool, Unreadable> {
    let bad_host = || Unreadable::Host(decision::host::HostError::Name);
    let (has_host, fresh_host, absolute, authority_stale) = {
        let mut hosts = req.headers.get_all(http::header::HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err(Unreadable::SeveralHosts);
        }
        let header = header.map(HeaderValue::as_bytes).filter(|h| !h.is_empty());
        let (authority, absolute) = match raw_target_authority(req.raw_path()) {
            RawTargetAuthority::None if req.raw_path().first() == Some(&b'/') => {
                (req.uri.authority().map(|a| a.as_str().as_bytes()), false)
            }
            RawTargetAuthority::Absolute {
                scheme, authority, ..
            } if scheme.eq_ignore_ascii_case(b"http") || scheme.eq_ignore_ascii_case(b"https") => {
                (Some(authority), true)
            }
            _ => return Err(Unreadable::TargetForm),
        };
        if let (Some(h), Some(a)) = (header, authority)
            && h != a
        {
            return Err(Unreadable::HostMismatch);
        }
        let (fresh_host, authority_stale) = match header.or(authority) {
            None => (None, false),
            Some(raw) => {
                let raw = std::str::from_utf8(raw).map_err(|_| bad_host())?;
                let canonical = decision::host::normalize(raw)?;
                // Allocates only when `Host` has to be (re)written.
                let fresh = (header != Some(canonical.as_bytes()))
                    .then(|| HeaderValue::from_str(&canonical))
                    .transpose()
                    .map_err(|_| bad_host())?;
                let stale = !absolute && authority.is_some_and(|a| a != canonical.as_bytes());
                (fresh, stale)
            }
        };
        (
            header.or(authority).is_some(),
            fresh_host,
            absolute,
            authority_stale,
        )
    };
    let canonical = match decision::path::normalize(req.uri.path())? {
        Cow::Borrowed(_) => None,
        Cow::Owned(c) => Some(c),
    };
    if canonical.is_some() || absolute || authority_stale {
        let path = canonical.as_deref().unwrap_or(req.uri.path());
        let target = match req.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        let mut parts = http::uri::Parts::default();
        if let (Some(scheme), false) = (req.uri.scheme(), absolute) {
            let host = fresh_host.as_ref().or(req.headers.get(http::header::HOST));
            parts.scheme = Some(scheme.clone());
            parts.authority = host
                .map(|h| http::uri::Authority::try_from(h.as_bytes()))
                .transpose()
                .map_err(|_| bad_host())?;
        }
        parts.path_and_query = Some(target.parse().map_err(|_| Unreadable::TargetForm)?);
        req.set_uri(http::Uri::from_parts(parts).map_err(|_| Unreadable::TargetForm)?);
    }
    if let Some(h) = fresh_host {
        req.insert_header(http::header::HOST, h)
            .map_err(|_| bad_host())?;
    }
    Ok(has_host)
}

/// The settled host (`name[:port]`) of a request `read` has seen.
pub fn host(req: &RequestHeader) -> Option<&str> {
    req.headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty())
}

/// For a `case_insensitive` route: the (canonical) path in lower case, so
/// policy and upstream read the spelling routing matched.
pub fn lower_case_path(req: &mut RequestHeader) -> Result<(), Unreadable> {
    let std::borrow::Cow::Owned(lower) = decision::path::lower_case(req.uri.path()) else {
        return Ok(());
    };
    let target = match req.uri.query() {
        Some(q) => format!("{lower}?{q}"),
        None => lower,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = req.uri.scheme().cloned();
    parts.authority = req.uri.authority().cloned();
    parts.path_and_query = Some(target.parse().map_err(|_| Unreadable::TargetForm)?);
    req.set_uri(http::Uri::from_parts(parts).map_err(|_| Unreadable::TargetForm)?);
    Ok(())
}
