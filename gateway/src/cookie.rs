//! The one reader of `Cookie` headers: every header (HTTP/2 clients may
//! split cookies over several), split on `;`, each crumb's name and value
//! trimmed, bytes as they came. The session lookup and the stripping of
//! private cookies both read them here, so a cookie the gateway honours is
//! always one it can remove.

use http::HeaderMap;

/// Every `name=value` crumb of every `Cookie` header, trimmed; empty ones
/// skipped.
pub fn crumbs(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(http::header::COOKIE)
        .into_iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|c| !c.is_empty())
}

/// A crumb's name (all of it when it has no `=`).
pub fn name(crumb: &[u8]) -> &[u8] {
    crumb
        .split(|b| *b == b'=')
        .next()
        .unwrap_or(crumb)
        .trim_ascii()
}

/// Do two cookie names read as one to some application? PHP turns `.`,
/// space and `[` into `_`, Rack percent-decodes names, ASP.NET Core
/// ignores case: compared that way, so no spelling of a private cookie
/// reaches or leaves an app.
pub fn same_name(a: &[u8], b: &[u8]) -> bool {
    folded(a).eq(folded(b))
}

fn folded(name: &[u8]) -> impl Iterator<Item = u8> + '_ {
    let hex = |b: &u8| (*b as char).to_digit(16).map(|d| d as u8);
    let mut i = 0;
    std::iter::from_fn(move || {
        let b = *name.get(i)?;
        let (byte, used) = match (
            b,
            name.get(i + 1).and_then(hex),
            name.get(i + 2).and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => (h * 16 + l, 3),
            _ => (b, 1),
        };
        i += used;
        Some(match byte {
            b'.' | b' ' | b'[' => b'_',
            other => other.to_ascii_lowercase(),
        })
    })
}

/// The name under which the browser will send back the cookie a
/// `Set-Cookie` value sets: its name, or for a nameless cookie
/// (`=sid=x`, or no `=` at all) the start of its value, which the browser
/// then sends alone.
pub fn set_cookie_name(value: &[u8]) -> &[u8] {
    let pair = value
        .split(|b| *b == b';')
        .next()
        .unwrap_or(value)
        .trim_ascii();
    match pair.iter().position(|b| *b == b'=') {
        Some(0) => name(&pair[1..]),
        _ => name(pair),
    }
}

/// The first non-empty value of cookie `name`, if it is UTF-8.
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    crumbs(headers).find_map(|crumb| {
        let (n, v) = crumb.split_at(crumb.iter().position(|b| *b == b'=')?);
        let v = v[1..].trim_ascii();
        (n.trim_ascii() == name.as_bytes() && !v.is_empty())
            .then(|| std::str::from_utf8(v).ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::header::COOKIE,
                http::HeaderValue::from_bytes(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_in_every_header() {
        let h = headers(&[b"a=1; sid = x ", b"b=2;;sid=y", b"c"]);
        let names: Vec<&[u8]> = crumbs(&h).map(name).collect();
        assert_eq!(names, [&b"a"[..], b"sid", b"b", b"sid", b"c"]);
        assert_eq!(find(&h, "sid"), Some("x"));
        assert_eq!(find(&h, "b"), Some("2"));
        assert_eq!(find(&h, "c"), None, "no value");
        assert_eq!(find(&headers(&[b"sid=; sid=z"]), "sid"), Some("z"));
        assert_eq!(find(&headers(&[b"sid=\xff"]), "sid"), None);
    }

    #[test]
    fn names_an_app_reads_as_one() {
        for same in [
            &b"portcullis_session"[..],
            b"Portcullis.Session",
            b"portcullis%5Fsession",
            b"portcullis[session",
            b"PORTCULLIS SESSION",
        ] {
            assert!(
                same_name(same, b"portcullis_session"),
                "{:?}",
                String::from_utf8_lossy(same)
            );
        }
        for other in [
            &b"portcullis_sessions"[..],
            b"portcullissession",
            b"portcullis-session",
        ] {
            assert!(
                !same_name(other, b"portcullis_session"),
                "{:?}",
                String::from_utf8_lossy(other)
            );
        }
    }

    #[test]
    fn set_cookie_names_as_the_browser_sends_them_back() {
        assert_eq!(set_cookie_name(b"sid=x; Path=/"), b"sid");
        assert_eq!(set_cookie_name(b" sid =x"), b"sid");
        // Nameless: the value is sent alone.
        assert_eq!(set_cookie_name(b"=sid=x; Path=/app"), b"sid");
        assert_eq!(set_cookie_name(b"sid; Path=/"), b"sid");
        assert_eq!(set_cookie_name(b"=x"), b"x");
    }
}
