//! What crosses the gateway in each direction. Upstream, the request loses
//! every header the gateway owns (identity and forwarding headers, in any
//! spelling an application may read as the same), the private cookies and
//! (per route) the credentials, and gains the verified identity, the
//! decision's headers and forwarding headers set from what the gateway saw.
//! Downstream, an upstream's `Set-Cookie` for a private cookie is dropped,
//! so an application cannot plant or clear a gateway session.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;

use http::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::{Error, ErrorType, Result};

use crate::config::ForwardedHeaders;
use crate::inbound::Inbound;

/// Headers an application may trust for who the client is, which host,
/// scheme, path or method it used. Whatever a client sends under these
/// names (or under `x-forwarded-*`, in any spelling) never reaches the
/// upstream: Rails reads `Client-IP`, many apps `X-Real-IP` or a CDN's
/// `CF-Connecting-IP`, IIS and Laminas route by `X-Original-URL`, Express's
/// and Rack's method overrides turn an allowed POST into a DELETE.
const OWNED_FACTS: [&str; 19] = [
    "forwarded",
    "x-real-ip",
    "x-client-ip",
    "client-ip",
    "true-client-ip",
    "x-cluster-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-originating-ip",
    "x-remote-addr",
    "x-remote-ip",
    "x-host",
    "x-original-host",
    "front-end-https",
    "x-original-url",
    "x-rewrite-url",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];
const FORWARDED_PREFIX: &str = "x-forwarded-";

/// The header rules of this gateway.
pub struct Rules {
    pub owned_prefix: String,
    /// Removed from every `Cookie` upstream, dropped from every
    /// `Set-Cookie` downstream: the sessions' and `private_cookies`.
    pub private_cookies: Vec<String>,
    pub forwarded: ForwardedHeaders,
}

/// `name`, as an application could read it, starts with `prefix`: CGI,
/// PHP, WSGI and Rack read `_` as `-`, lighttpd's CGI any byte that is not
/// a letter or a digit (header names are lower case already).
fn reads_as_prefix(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name
            .bytes()
            .zip(prefix.bytes())
            .all(|(n, p)| n == p || (p == b'-' && !n.is_ascii_alphanumeric()))
}

fn reads_as(name: &str, other: &str) -> bool {
    name.len() == other.len() && reads_as_prefix(name, other)
}

impl Rules {
    /// A header an application could take for one the gateway owns: under
    /// the configured prefix or the identity headers' own, a forwarding
    /// header, or one of the other facts above.
    pub fn is_owned(&self, name: &str) -> bool {
        reads_as_prefix(name, &self.owned_prefix)
            || reads_as_prefix(name, decision::headers::OWNED_PREFIX)
            || reads_as_prefix(name, FORWARDED_PREFIX)
            || OWNED_FACTS.iter().any(|h| reads_as(name, h))
    }

    /// Remove every owned header the client sent. Most requests carry none,
    /// and then nothing is allocated.
    pub fn strip_owned(&self, req: &mut RequestHeader) {
        if !req.headers.keys().any(|k| self.is_owned(k.as_str())) {
            return;
        }
        let owned: Vec<HeaderName> = req
            .headers
            .keys()
            .filter(|k| self.is_owned(k.as_str()))
            .cloned()
            .collect();
        for name in owned {
            req.remove_header(&name);
        }
    }

    /// The forwarding headers, from what the gateway saw (`host`: the
    /// settled `Host`).
    pub fn add_forwarded(
        &self,
        req: &mut RequestHeader,
        inbound: &Inbound,
        host: Option<HeaderValue>,
    ) -> Result<()> {
        let proto = if inbound.https { "https" } else { "http" };
        if matches!(
            self.forwarded,
            ForwardedHeaders::XForwarded | ForwardedHeaders::Both
        ) {
            if let Some(client) = inbound.client {
                let address = ip_value(client)?;
                let chain = if inbound.via.is_empty() {
                    address.clone()
                } else {
                    let mut text = String::with_capacity(16 * (1 + inbound.via.len()));
                    let _ = write!(text, "{client}");
                    for hop in &inbound.via {
                        let _ = write!(text, ", {hop}");
                    }
                    header_value(text.as_bytes())?
                };
                req.insert_header("x-forwarded-for", chain)?;
                req.insert_header("x-real-ip", address)?;
            }
            req.insert_header("x-forwarded-proto", HeaderValue::from_static(proto))?;
            if let Some(h) = &host {
                req.insert_header("x-forwarded-host", h.clone())?;
            }
        }
        if matches!(
            self.forwarded,
            ForwardedHeaders::Forwarded | ForwardedHeaders::Both
        ) {
            // RFC 7239 §6: IPv6 addresses are quoted and bracketed.
            let mut text = match inbound.client {
                Some(IpAddr::V4(ip)) => format!("for={ip}"),
                Some(IpAddr::V6(ip)) => format!("for=\"[{ip}]\""),
                None => "for=unknown".to_owned(),
            };
            if let Some(h) = &host {
                text.push_str(";host=\"");
                text.push_str(h.to_str().unwrap_or_default());
                text.push('"');
            }
            text.push_str(";proto=");
            text.push_str(proto);
            req.insert_header("forwarded", header_value(text.as_bytes())?)?;
        }
        Ok(())
    }

    /// Drop an upstream's `Set-Cookie` for a private cookie; how many were.
    pub fn drop_private_set_cookies(&self, resp: &mut ResponseHeader) -> Result<usize> {
        let is_private =
            |v: &HeaderValue| self.is_private(crate::cookie::set_cookie_name(v.as_bytes()));
        let set = resp.headers.get_all(http::header::SET_COOKIE);
        if !set.iter().any(is_private) {
            return Ok(0);
        }
        let kept: Vec<HeaderValue> = set.iter().filter(|v| !is_private(v)).cloned().collect();
        let dropped = set.iter().count() - kept.len();
        resp.remove_header(&http::header::SET_COOKIE);
        for v in kept {
            resp.append_header(http::header::SET_COOKIE, v)?;
        }
        Ok(dropped)
    }

    /// Remove the private cookies from whichever `Cookie` header they come
    /// in (HTTP/2 clients may split them); the others are kept, in one
    /// header as RFC 9113 §8.2.3 folds them for HTTP/1.1.
    /// A cookie name that is, or that an app reads as, a private one.
    fn is_private(&self, name: &[u8]) -> bool {
        self.private_cookies
            .iter()
            .any(|p| crate::cookie::same_name(p.as_bytes(), name))
    }

    pub fn strip_cookies(&self, upstream: &mut RequestHeader) -> Result<()> {
        let is_private = |crumb: &[u8]| self.is_private(crate::cookie::name(crumb));
        if self.private_cookies.is_empty()
            || !crate::cookie::crumbs(&upstream.headers).any(is_private)
        {
            return Ok(());
        }
        let kept = crate::cookie::crumbs(&upstream.headers)
            .filter(|c| !is_private(c))
            .collect::<Vec<_>>()
            .join(&b"; "[..]);
        upstream.remove_header(&http::header::COOKIE);
        if !kept.is_empty() {
            upstream.insert_header(http::header::COOKIE, header_value(&kept)?)?;
        }
        Ok(())
    }
}

/// The hop-by-hop cleanup every forwarded HTTP/1 request gets, on every
/// forwarding path: the headers `Connection` nominates (never `Host`), and
/// the standard hop-by-hop ones (`Proxy-Authorization` among them); a
/// WebSocket upgrade then gets `Connection: Upgrade` and `Upgrade:
/// websocket` again. The forwarding headers a client may nominate are the
/// gateway's to set anyway (`Rules::add_forwarded`).
pub fn strip_hop_by_hop(req: &mut RequestHeader, websocket: bool) -> Result<()> {
    // One pass over the names; most requests have none to remove, and then
    // nothing is allocated or looked up again.
    let connection = req.headers.get_all(http::header::CONNECTION);
    let nominated = |name: &HeaderName| {
        *name != http::header::HOST
            && connection
                .iter()
                .flat_map(|v| v.as_bytes().split(|b| *b == b','))
                .any(|t| {
                    t.trim_ascii()
                        .eq_ignore_ascii_case(name.as_str().as_bytes())
                })
    };
    let is_hop = |name: &HeaderName| HOP_BY_HOP.contains(&name.as_str()) || nominated(name);
    if req.headers.keys().any(is_hop) {
        let hop: Vec<HeaderName> = req.headers.keys().filter(|n| is_hop(n)).cloned().collect();
        for name in hop {
            req.remove_header(&name);
        }
    }
    if websocket {
        req.insert_header(
            http::header::CONNECTION,
            HeaderValue::from_static("Upgrade"),
        )?;
        req.insert_header(http::header::UPGRADE, HeaderValue::from_static("websocket"))?;
    }
    Ok(())
}

/// The standard hop-by-hop headers (RFC 9110 §7.6.1, and what proxies
/// have used the same way).
const HOP_BY_HOP: [&str; 10] = [
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "connection",
    "upgrade",
    "http2-settings",
];

fn header_value(bytes: &[u8]) -> Result<HeaderValue> {
    HeaderValue::from_bytes(bytes)
        .map_err(|e| Error::because(ErrorType::InternalError, "header value", e))
}

/// An address as a header value, formatted on the stack (an IPv4 one
/// without the formatting machinery: it is on every forwarded request).
fn ip_value(ip: IpAddr) -> Result<HeaderValue> {
    let mut buf = [0u8; 48];
    let len = match ip {
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                let skip = if octet >= 100 {
                    0
                } else if octet >= 10 {
                    1
                } else {
                    2
                };
                for d in &digits[skip..] {
                    buf[len] = b'0' + d;
                    len += 1;
                }
            }
            len
        }
        IpAddr::V6(_) => {
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            write!(cursor, "{ip}")
                .map_err(|e| Error::because(ErrorType::InternalError, "address", e))?;
            usize::try_from(cursor.position()).unwrap_or(0)
        }
    };
    header_value(&buf[..len])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(private: &[&str]) -> Rules {
        Rules {
            owned_prefix: "x-auth-".into(),
            private_cookies: private.iter().map(|p| (*p).to_owned()).collect(),
            forwarded: ForwardedHeaders::Both,
        }
    }

    #[test]
    fn owned_headers_in_every_spelling() {
        let r = rules(&[]);
        for owned in [
            "x-auth-subject",
            "x_auth_subject",
            "x-auth_groups",
            "x_auth-anything",
            "x-forwarded-for",
            "x_forwarded_for",
            "x-forwarded-host",
            "x_forwarded_proto",
            "forwarded",
            "x-real-ip",
            "x_real_ip",
            "client_ip",
            "true-client-ip",
            // lighttpd's CGI reads any byte but a letter or digit as `_`.
            "x.auth.subject",
            "x+forwarded+for",
            "x~real~ip",
            "cf-connecting-ip",
            "x-original-url",
            "x_http_method_override",
            "x-method-override",
        ] {
            assert!(r.is_owned(owned), "{owned}");
        }
        for free in [
            "x-authx",
            "xauth-subject",
            "x-request-id",
            "forwardedx",
            "x-real-ipx",
            "cookie",
            "x-auth",
            "x0auth-subject",
        ] {
            assert!(!r.is_owned(free), "{free}");
        }
    }

    fn upstream_cookies(cookies: &[&[u8]], private: &[&str]) -> Vec<Vec<u8>> {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        for c in cookies {
            req.append_header("cookie", HeaderValue::from_bytes(c).unwrap())
                .unwrap();
        }
        rules(private).strip_cookies(&mut req).unwrap();
        req.headers
            .get_all("cookie")
            .iter()
            .map(|v| v.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn private_cookies_are_stripped_from_every_cookie_header() {
        let ours = ["sid", "sid_login"];
        type Headers<'a> = &'a [&'a [u8]];
        let cases: [(Headers, Headers); 7] = [
            // Nothing of ours: untouched, even split.
            (&[b"a=1; b=2"], &[b"a=1; b=2"]),
            (&[b"a=1", b"b=2"], &[b"a=1", b"b=2"]),
            // Ours in the second header, the rest folded into one.
            (&[b"a=1", b"sid=x; b=2"], &[b"a=1; b=2"]),
            // Only ours: no Cookie header at all.
            (&[b"sid=x", b"sid_login=y"], &[]),
            // Spacing and empty crumbs; a prefix of ours is not ours.
            (
                &[b" sid =x;;sidecar=1 ; sid_loginx=2"],
                &[b"sidecar=1; sid_loginx=2"],
            ),
            // Bytes that are not UTF-8 do not hide ours.
            (&[b"a=\xff; sid=x"], &[b"a=\xff"]),
            // A name without a value is still a name.
            (&[b"sid; a=1"], &[b"a=1"]),
        ];
        // Spellings an app reads as ours: PHP, Rack, ASP.NET Core.
        assert_eq!(
            upstream_cookies(&[b"SID_login=1; sid.login=2; sid%5Flogin=3; a=1"], &ours),
            [b"a=1"]
        );
        for (sent, expected) in cases {
            let got = upstream_cookies(sent, &ours);
            assert_eq!(got, expected, "{sent:?}");
        }
        assert_eq!(upstream_cookies(&[b"sid=x"], &[]), [b"sid=x"]);
    }

    #[test]
    fn private_set_cookies_are_dropped() {
        let mut resp = ResponseHeader::build(200, None).unwrap();
        for c in [
            "app=1; Path=/",
            "sid=evil; Path=/",
            " sid_login =x",
            "sidx=2",
            // Nameless: the browser sends `sid=planted` back.
            "=sid=planted; Path=/app",
            // Another spelling of ours, as PHP reads it.
            "SID.Login=x",
        ] {
            resp.append_header("set-cookie", c).unwrap();
        }
        assert_eq!(
            rules(&["sid", "sid_login"])
                .drop_private_set_cookies(&mut resp)
                .unwrap(),
            4
        );
        let kept: Vec<&str> = resp
            .headers
            .get_all("set-cookie")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(kept, ["app=1; Path=/", "sidx=2"]);
    }

    #[test]
    fn addresses_are_written_as_std_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.20.30.40",
            "100.200.255.9",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
            "::ffff:1.2.3.4",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    #[test]
    fn hop_by_hop_headers_stay_behind_and_a_websocket_keeps_its_upgrade() {
        for websocket in [true, false] {
            let mut req = RequestHeader::build("GET", b"/chat", None).unwrap();
            for (k, v) in [
                ("host", "app"),
                ("connection", "Upgrade, X-Secret, host"),
                ("upgrade", "websocket"),
                ("x-secret", "1"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic cm9vdDpyb290"),
                ("te", "trailers"),
                ("transfer-encoding", "chunked"),
                ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ] {
                req.append_header(k, v).unwrap();
            }
            strip_hop_by_hop(&mut req, websocket).unwrap();
            let mut names: Vec<&str> = req.headers.keys().map(HeaderName::as_str).collect();
            names.sort_unstable();
            if websocket {
                assert_eq!(
                    names,
                    ["connection", "host", "sec-websocket-key", "upgrade"]
                );
                assert_eq!(req.headers["connection"], "Upgrade");
            } else {
                assert_eq!(names, ["host", "sec-websocket-key"]);
            }
        }
    }
}
