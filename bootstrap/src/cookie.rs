//! The one reader of `Cookie` headers, for every service: every header
//! (HTTP/2 clients may split cookies over several), split on `;`, each
//! crumb's name and value trimmed, bytes as they came.

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
    fn cookies_are_read_by_exact_name() {
        let h = headers(&[b"a=1; portcullis-session=xyz; portcullis-session-old=no; b="]);
        assert_eq!(find(&h, "portcullis-session"), Some("xyz"));
        assert_eq!(find(&h, "b"), None);
        assert_eq!(find(&HeaderMap::new(), "a"), None);
    }
}
