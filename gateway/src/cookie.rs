//! Cookies as the gateway reads them: through the one reader
//! (`bootstrap::cookie`), which the session lookup and the stripping of
//! private cookies both use, so a cookie the gateway honours is always one
//! it can remove; and names compared as applications read them.

pub use bootstrap::cookie::{crumbs, find, name};

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

#[cfg(test)]
mod tests {
    use super::*;

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
