//! Canonical request paths: the one rule the gateway applies before routing
//! and the sidecar enforces before deciding (`policies/README.md`, "The
//! path rule"). The gateway rewrites a request to its canonical path, so
//! routing, policy and the upstream all read the same string; the sidecar,
//! which may sit behind a proxy that did not, refuses anything
//! non-canonical, so a policy is never asked about a path the upstream reads
//! differently.
//!
//! Servers disagree on paths in known ways: Tomcat and Spring drop `;`
//! parameters from each segment before resolving dot segments
//! (`/public/..;/admin` is `/admin` to them), IIS and Windows drop a
//! segment's trailing dots and spaces, some frameworks decode twice, some
//! read `\` as `/`. What cannot be made unambiguous is refused; the rest has
//! one spelling.

use std::borrow::Cow;

/// Why a path cannot be made canonical.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path must start with `/`")]
    NotAbsolute,
    #[error("path contains an encoded `/` or `\\`")]
    EncodedSeparator,
    #[error("path contains a NUL byte or control character")]
    ControlCharacter,
    #[error("path contains a `\\`")]
    Backslash,
    #[error("path contains a malformed percent-escape")]
    BadEscape,
    #[error("path is not valid UTF-8 once decoded")]
    InvalidUtf8,
    #[error("path contains `;` (a path parameter, which Tomcat and Spring strip before routing)")]
    Parameter,
    #[error("path contains an encoded `%` (`%25`), which a second decoding would change")]
    EncodedPercent,
    #[error("a path segment ends in `.` or a space, which IIS and Windows servers drop")]
    TrailingDot,
}

/// Normalise the path part of a request target (no query string): decode
/// escapes of unreserved characters, encode every other byte that may not
/// stand for itself in a path (non-ASCII, `"`, `{`, …) with upper-case hex,
/// upper-case the hex of the escapes kept, collapse duplicate slashes,
/// resolve `.` and `..` segments (never above the root). Refused: encoded
/// separators, `;` parameters, encoded `%`, NUL and control bytes,
/// backslashes, segments ending in `.` or a space, escapes that decode to
/// invalid UTF-8.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(path)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s if drops_trailing(s) => return Err(PathError::TrailingDot),
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(decoded.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing_slash && !segments.is_empty()) {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// A canonical path with its letters in lower case (escapes keep their
/// upper-case hex), for routes whose upstream ignores case: still canonical.
/// Canonical paths are ASCII (everything else is escaped).
pub fn lower_case(canonical: &str) -> Cow<'_, str> {
    let bytes = canonical.as_bytes();
    // Positions of upper-case letters that are not an escape's hex digits.
    let mut escape = 0;
    let is_letter_to_lower = |b: u8, escape: &mut u8| {
        if *escape > 0 {
            *escape -= 1;
            false
        } else if b == b'%' {
            *escape = 2;
            false
        } else {
            b.is_ascii_uppercase()
        }
    };
    if !bytes.iter().any(|b| is_letter_to_lower(*b, &mut escape)) {
        return Cow::Borrowed(canonical);
    }
    let mut escape = 0;
    canonical
        .chars()
        .map(|c| match u8::try_from(c) {
            Ok(b) if is_letter_to_lower(b, &mut escape) => c.to_ascii_lowercase(),
            _ => c,
        })
        .collect::<String>()
        .into()
}

/// A segment that Windows servers would read without its trailing dots or
/// spaces (`.` and `..` are dot segments, resolved before this).
fn drops_trailing(segment: &str) -> bool {
    segment.ends_with('.') || segment.ends_with("%20")
}

/// May this byte stand for itself in a canonical path? RFC 3986 `pchar`
/// without `;` (refused) and `%` (escapes), plus `/`.
fn is_plain(byte: u8) -> bool {
    is_unreserved(byte)
        || matches!(
            byte,
            b'!' | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
                | b'/'
        )
}

/// Fast check for the common case: a path that is already canonical needs no
/// allocation. `Ok(false)` sends the path to the full normalisation, which
/// reports what is wrong; the errors found here are the same ones.
fn is_canonical(path: &str) -> Result<bool, PathError> {
    let bytes = path.as_bytes();
    let mut canonical = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Parameter),
            c if c < 0x20 || c == 0x7f => return Err(PathError::ControlCharacter),
            b'%' => {
                let byte = escape_at(bytes, i)?;
                check_escaped(byte)?;
                // Non-ASCII escapes take the slow path, which checks their UTF-8.
                if byte >= 0x80
                    || is_unreserved(byte)
                    || bytes[i + 1].is_ascii_lowercase()
                    || bytes[i + 2].is_ascii_lowercase()
                {
                    canonical = false;
                }
                i += 3;
                continue;
            }
            b'/' => {
                let rest = &bytes[i + 1..];
                if rest.first() == Some(&b'/')
                    || rest == b"."
                    || rest == b".."
                    || rest.starts_with(b"./")
                    || rest.starts_with(b"../")
                    || ends_segment_with_drop(&bytes[..i])
                {
                    canonical = false;
                }
            }
            c if !is_plain(c) => canonical = false,
            _ => {}
        }
        i += 1;
    }
    Ok(canonical && !ends_segment_with_drop(bytes))
}

/// Does the segment ending here end in `.` or an encoded space?
fn ends_segment_with_drop(before: &[u8]) -> bool {
    before.ends_with(b".") || before.ends_with(b"%20")
}

fn escape_at(bytes: &[u8], i: usize) -> Result<u8, PathError> {
    let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
    let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
    match (hi, lo) {
        (Some(hi), Some(lo)) => Ok((hi * 16 + lo) as u8),
        _ => Err(PathError::BadEscape),
    }
}

fn check_escaped(byte: u8) -> Result<(), PathError> {
    match byte {
        b'/' | b'\\' => Err(PathError::EncodedSeparator),
        b'%' => Err(PathError::EncodedPercent),
        b';' => Err(PathError::Parameter),
        c if c < 0x20 || c == 0x7f => Err(PathError::ControlCharacter),
        _ => Ok(()),
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decode escapes of unreserved characters; keep the other escapes with
/// upper-case hex, and encode the bytes that may not stand for themselves.
/// Escaped bytes outside ASCII must form valid UTF-8.
fn decode(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len() + path.len() / 2);
    let mut utf8_run: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte == b'%' {
            let decoded = escape_at(bytes, i)?;
            check_escaped(decoded)?;
            if decoded >= 0x80 {
                // Stays encoded, but must be part of valid UTF-8.
                utf8_run.push(decoded);
                push_escape(&mut out, decoded);
            } else {
                flush_utf8(&mut utf8_run)?;
                if is_unreserved(decoded) {
                    out.push(decoded as char);
                } else {
                    push_escape(&mut out, decoded);
                }
            }
            i += 3;
            continue;
        }
        flush_utf8(&mut utf8_run)?;
        match byte {
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Parameter),
            c if c < 0x20 || c == 0x7f => return Err(PathError::ControlCharacter),
            c if is_plain(c) => out.push(c as char),
            c => push_escape(&mut out, c),
        }
        i += 1;
    }
    flush_utf8(&mut utf8_run)?;
    Ok(out)
}

fn flush_utf8(run: &mut Vec<u8>) -> Result<(), PathError> {
    if !run.is_empty() {
        std::str::from_utf8(run).map_err(|_| PathError::InvalidUtf8)?;
        run.clear();
    }
    Ok(())
}

fn push_escape(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0xf)] as char);
}

/// Percent-decode a path parameter (after routing) into the entity id it names.
pub fn decode_param(raw: &str) -> Result<Cow<'_, str>, PathError> {
    if !raw.contains('%') {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(escape_at(bytes, i)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PathError::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let ok = [
            ("/", "/"),
            ("/api/orders/1", "/api/orders/1"),
            ("//api///orders", "/api/orders"),
            ("/api/./orders", "/api/orders"),
            ("/admin/../public/x", "/public/x"),
            ("/../../etc", "/etc"),
            ("/%2e%2e/admin", "/admin"),
            ("/a/%2E/b", "/a/b"),
            ("/%61pi", "/api"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/dir/", "/dir/"),
            ("/dir/..", "/"),
            ("/a/b/..", "/a/"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            // One spelling for what may not stand for itself.
            ("/café", "/caf%C3%A9"),
            ("/a\"b{c}", "/a%22b%7Bc%7D"),
            ("/a|b^c`d", "/a%7Cb%5Ec%60d"),
            // Sub-delimiters, `:` and `@` stand for themselves.
            ("/a!$&'()*+,=:@b", "/a!$&'()*+,=:@b"),
            ("/v1.2/x", "/v1.2/x"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/%2E%2E", "/"),
        ];
        for (input, want) in ok {
            assert_eq!(normalize(input).as_deref(), Ok(want), "{input}");
        }
        let bad = [
            ("api", PathError::NotAbsolute),
            ("/a%2Fb", PathError::EncodedSeparator),
            ("/a%2fb", PathError::EncodedSeparator),
            ("/a%5Cb", PathError::EncodedSeparator),
            ("/a\\b", PathError::Backslash),
            ("/a%00b", PathError::ControlCharacter),
            ("/a\0b", PathError::ControlCharacter),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("/a%C3", PathError::InvalidUtf8),
            ("/a%FF%FE", PathError::InvalidUtf8),
            // Tomcat and Spring: `/public/..;/admin` is `/admin`.
            ("/public/..;/admin", PathError::Parameter),
            ("/public/.;/admin", PathError::Parameter),
            ("/x;jsessionid=1", PathError::Parameter),
            ("/public/..%3B/admin", PathError::Parameter),
            ("/public/..%3b/admin", PathError::Parameter),
            // Decoded twice, `%252e%252e` is `..`.
            ("/public/%252e%252e/admin", PathError::EncodedPercent),
            // IIS: `/admin./x` and `/admin%20/x` are `/admin/x`.
            ("/admin./x", PathError::TrailingDot),
            ("/admin%2E/x", PathError::TrailingDot),
            ("/admin...", PathError::TrailingDot),
            ("/admin%20/x", PathError::TrailingDot),
            ("/admin%20", PathError::TrailingDot),
            ("/x/.../y", PathError::TrailingDot),
        ];
        for (input, want) in bad {
            assert_eq!(normalize(input), Err(want), "{input}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        assert!(matches!(normalize("/api/orders/o-1"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/a%20b/c%3F"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/api//orders"), Ok(Cow::Owned(_))));
        assert!(matches!(normalize("/caf\u{e9}"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/../b//c/./d/", "/%2e%2E/%41", "/x/%c3%a9/..", "/é/\"x\""] {
            let once = normalize(p).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn lower_case_keeps_escapes_and_stays_canonical() {
        assert_eq!(lower_case("/Admin/X%3F%C3%A9"), "/admin/x%3F%C3%A9");
        assert!(matches!(lower_case("/admin/x%3F"), Cow::Borrowed(_)));
        let lowered = lower_case("/API/Orders%2C1");
        assert_eq!(normalize(&lowered).unwrap(), lowered);
    }

    #[test]
    fn params_decode() {
        assert_eq!(decode_param("o-1").unwrap(), "o-1");
        assert_eq!(decode_param("a%20b").unwrap(), "a b");
        assert!(decode_param("%FF").is_err());
    }
}
