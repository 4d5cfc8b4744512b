//! Canonical request hosts, the rule the gateway applies once (to `Host`,
//! HTTP/2 `:authority` or an absolute-form target, whichever the request
//! carries) and the sidecar's route mapping reads by: `name[:port]` with
//! the name in lower case and without its trailing dot, an IPv6 literal in
//! its shortest form, the port a number 1–65535 without leading zeros.
//! Anything else is refused rather than guessed at, since an upstream that
//! reads a host differently could serve another site's routes.

use std::borrow::Cow;
use std::net::Ipv6Addr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host has user information (`@`)")]
    Userinfo,
    #[error("host is not a DNS name, an IPv4 address or a bracketed IPv6 address")]
    Name,
    #[error("host's port is not a number from 1 to 65535")]
    Port,
}

/// The longest DNS name (RFC 1035 §2.3.4, without the root's dot).
const MAX_NAME: usize = 253;

/// Normalise one host (`Host` value or authority); borrowed when it is
/// canonical already.
pub fn normalize(raw: &str) -> Result<Cow<'_, str>, HostError> {
    if raw.contains('@') {
        return Err(HostError::Userinfo);
    }
    let (name, port) = split(raw)?;
    let name_canonical = if let Some(literal) = name.strip_prefix('[') {
        let inner = literal.strip_suffix(']').ok_or(HostError::Name)?;
        let ip: Ipv6Addr = inner.parse().map_err(|_| HostError::Name)?;
        let shortest = format!("[{ip}]");
        if shortest == name {
            Cow::Borrowed(name)
        } else {
            Cow::Owned(shortest)
        }
    } else {
        dns_name(name)?
    };
    let port_canonical = match port {
        None => None,
        Some(p) => {
            let valid = !p.is_empty()
                && p.len() <= 5
                && p.bytes().all(|b| b.is_ascii_digit())
                && !p.starts_with('0');
            match p.parse::<u16>() {
                Ok(n) if valid && n > 0 => Some(p),
                _ => return Err(HostError::Port),
            }
        }
    };
    Ok(match (name_canonical, port_canonical) {
        (Cow::Borrowed(_), _) => Cow::Borrowed(raw),
        (Cow::Owned(n), None) => Cow::Owned(n),
        (Cow::Owned(n), Some(p)) => Cow::Owned(format!("{n}:{p}")),
    })
}

/// The name part of a canonical host (without its port).
pub fn name(host: &str) -> &str {
    split(host).map_or(host, |(name, _)| name)
}

/// `name` and the text after its port's `:`, if any.
fn split(raw: &str) -> Result<(&str, Option<&str>), HostError> {
    if raw.starts_with('[') {
        let end = raw.find(']').ok_or(HostError::Name)? + 1;
        return match &raw[end..] {
            "" => Ok((&raw[..end], None)),
            rest => match rest.strip_prefix(':') {
                Some(port) => Ok((&raw[..end], Some(port))),
                None => Err(HostError::Name),
            },
        };
    }
    Ok(match raw.split_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (raw, None),
    })
}

/// Letters, digits, `-` and `_` in dot-separated labels, lower-cased, one
/// trailing dot removed.
fn dns_name(name: &str) -> Result<Cow<'_, str>, HostError> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    let labels_ok = trimmed.len() <= MAX_NAME
        && trimmed.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !labels_ok {
        return Err(HostError::Name);
    }
    if trimmed.len() == name.len() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Borrowed(name))
    } else {
        Ok(Cow::Owned(trimmed.to_ascii_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_table() {
        let ok = [
            ("app.example", "app.example"),
            ("App.Example.", "app.example"),
            ("app.example.:8000", "app.example:8000"),
            ("APP:443", "app:443"),
            ("127.0.0.1:8000", "127.0.0.1:8000"),
            ("[::1]", "[::1]"),
            ("[0:0::1]:80", "[::1]:80"),
            ("[2001:DB8::1]", "[2001:db8::1]"),
            ("my_service.internal", "my_service.internal"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize(raw).as_deref(), Ok(want), "{raw}");
        }
        let bad = [
            ("user@app.example", HostError::Userinfo),
            ("app..example", HostError::Name),
            (".app", HostError::Name),
            ("app.example..", HostError::Name),
            ("app example", HostError::Name),
            ("app/x", HostError::Name),
            ("[::1", HostError::Name),
            ("[::1]x", HostError::Name),
            ("[fe80::1%25eth0]", HostError::Name),
            ("app:", HostError::Port),
            ("app:0", HostError::Port),
            ("app:080", HostError::Port),
            ("app:65536", HostError::Port),
            ("app:+80", HostError::Port),
            ("app:80:80", HostError::Port),
        ];
        for (raw, want) in bad {
            assert_eq!(normalize(raw), Err(want), "{raw}");
        }
        assert!(matches!(
            normalize("app.example:8000"),
            Ok(Cow::Borrowed(_))
        ));
    }

    #[test]
    fn names_without_ports() {
        assert_eq!(name("app.example:8000"), "app.example");
        assert_eq!(name("[::1]:80"), "[::1]");
        assert_eq!(name("[::1]"), "[::1]");
        assert_eq!(name("app"), "app");
    }

    #[test]
    fn normalising_twice_changes_nothing() {
        for raw in ["A.B.", "[0::1]:9", "x_y.Z:1"] {
            let once = normalize(raw).unwrap().into_owned();
            assert_eq!(normalize(&once).unwrap(), once);
        }
    }
}
