//! Canonical request paths. The gateway normalises once and everything after
//! it (routing, policy, upstream) sees the same string; the sidecar, which may
//! sit behind a proxy that did not normalise, refuses anything non-canonical,
//! so a policy can never be asked about a path the upstream reads differently.

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
}

/// Normalise the path part of a request target (no query string):
/// decode percent-escapes of unreserved characters, upper-case the hex of the
/// others, collapse duplicate slashes, resolve `.` and `..` segments (never
/// above the root). Encoded separators, NUL and control bytes, backslashes
/// and escapes that decode to invalid UTF-8 are refused.
pub fn normalize(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if is_canonical(path)? {
        return Ok(Cow::Borrowed(path));
    }
    let decoded = decode_unreserved(path)?;
    let mut segments: Vec<&str> = Vec::new();
    let trailing_slash =
        decoded.ends_with('/') || decoded.ends_with("/.") || decoded.ends_with("/..");
    for segment in decoded.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
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

/// Fast check for the common case: a path that is already canonical needs no
/// allocation. Errors are reported here too, so both paths refuse the same input.
fn is_canonical(path: &str) -> Result<bool, PathError> {
    let bytes = path.as_bytes();
    let mut canonical = true;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => return Err(PathError::Backslash),
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
                {
                    canonical = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    Ok(canonical)
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
        c if c < 0x20 || c == 0x7f => Err(PathError::ControlCharacter),
        _ => Ok(()),
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

/// Decode escapes of unreserved characters; keep the rest encoded with
/// upper-case hex. Escaped bytes outside ASCII must form valid UTF-8.
fn decode_unreserved(path: &str) -> Result<String, PathError> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut utf8_run: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte = escape_at(bytes, i)?;
            check_escaped(byte)?;
            if byte >= 0x80 {
                utf8_run.push(byte);
            } else {
                flush_utf8(&mut utf8_run)?;
                if is_unreserved(byte) {
                    out.push(byte as char);
                } else {
                    push_escape(&mut out, byte);
                }
            }
            // Non-ASCII escapes stay encoded, but must decode to valid UTF-8.
            if byte >= 0x80 {
                push_escape(&mut out, byte);
            }
            i += 3;
        } else {
            flush_utf8(&mut utf8_run)?;
            let ch_len = utf8_char_len(bytes[i]);
            out.push_str(&path[i..i + ch_len]);
            i += ch_len;
        }
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

fn utf8_char_len(first: u8) -> usize {
    match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        _ => 4,
    }
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
            ("/café", "/café"),
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
        ];
        for (input, want) in bad {
            assert_eq!(normalize(input), Err(want), "{input}");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        assert!(matches!(normalize("/api/orders/o-1"), Ok(Cow::Borrowed(_))));
        assert!(matches!(normalize("/api//orders"), Ok(Cow::Owned(_))));
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for p in ["/a/../b//c/./d/", "/%2e%2E/%41", "/x/%c3%a9/.."] {
            let once = normalize(p).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once, "{p}");
        }
    }

    #[test]
    fn params_decode() {
        assert_eq!(decode_param("o-1").unwrap(), "o-1");
        assert_eq!(decode_param("a%20b").unwrap(), "a b");
        assert!(decode_param("%FF").is_err());
    }
}
