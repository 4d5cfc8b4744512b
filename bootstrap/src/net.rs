//! Who the client is. Behind a reverse proxy the TCP peer is the proxy and
//! the client's address is in `X-Forwarded-For`; that header is believed
//! only when the peer is one of the configured `trusted_proxies`, and then
//! read from the right, skipping trusted hops, so a client cannot pick its
//! own address (rate limits, lockouts, policies and audit records depend on
//! it). The gateway and the authserver read it by this one rule.

use std::net::IpAddr;

/// An address or a CIDR block (`10.0.0.0/8`, `2001:db8::/32`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: prefix must be 0..={max}"))?,
        };
        Ok(Self { addr, prefix })
    }

    /// Parse a config list of strings, naming the entry at fault as `key[i]`.
    pub fn parse_all(key: &str, texts: &[String]) -> Result<Vec<Self>, crate::ConfigError> {
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| {
                Self::parse(t).map_err(|e| crate::ConfigError::invalid(format!("{key}[{i}]"), e))
            })
            .collect()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = unmapped(ip);
        if ip.is_ipv4() != self.addr.is_ipv4() {
            return false;
        }
        // IPv4 addresses sit in the top 32 bits, so one mask serves both.
        let prefix = u32::from(self.prefix);
        if prefix == 0 {
            return true;
        }
        let mask = u128::MAX << (128 - prefix);
        bits(ip) & mask == bits(self.addr) & mask
    }
}

/// In config files: `"10.0.0.0/8"`; an error names the entry.
impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// An IPv4 address that arrived as `::ffff:a.b.c.d` is that IPv4 address.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// IPv6 addresses are handed out by the /64 (or shorter) prefix, so one
/// client owns many: `ip` with only its first `prefix` bits kept (IPv4
/// addresses are kept whole).
pub fn bucket(ip: IpAddr, v6_prefix: u8) -> IpAddr {
    match unmapped(ip) {
        IpAddr::V6(v6) if v6_prefix < 128 => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(v6_prefix))
                .unwrap_or(0);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
        other => other,
    }
}

/// Where a request came from, by the rule above.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The client's address; `None` when a trusted proxy passed on
    /// something that is not one (never the proxy in its place: a policy
    /// trusting internal ranges would then trust every client).
    pub client: Option<IpAddr>,
    /// The hops believed after the client, nearest the client first, ending
    /// with the peer (empty when the client is the peer): what this proxy
    /// passes on as the rest of `X-Forwarded-For`.
    pub via: Vec<IpAddr>,
}

/// An `X-Forwarded-For` entry: an address, or an address with a port as
/// some load balancers write it (`192.0.2.1:4711`, `[2001:db8::1]:4711`).
fn entry_address(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?;
    text.parse::<IpAddr>()
        .or_else(|_| text.parse::<std::net::SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(unmapped)
}

/// The client's address: the peer, or, when the peer is a trusted proxy,
/// the right-most `X-Forwarded-For` entry that is not itself trusted
/// (`forwarded_for`: the header's values, in order), read from the right
/// without collecting them. An entry that is no address makes the client
/// unknown.
pub fn origin<'a>(
    peer: IpAddr,
    forwarded_for: impl DoubleEndedIterator<Item = &'a [u8]>,
    trusted: &[Cidr],
) -> Origin {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|b| b.contains(ip));
    let peer = unmapped(peer);
    if !is_trusted(peer) {
        return Origin {
            client: Some(peer),
            via: Vec::new(),
        };
    }
    let entries = forwarded_for
        .rev()
        .flat_map(|v| v.rsplit(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|e| !e.is_empty());
    let mut via = vec![peer];
    let mut client = Some(peer);
    for entry in entries {
        let Some(ip) = entry_address(entry) else {
            client = None;
            break;
        };
        if !is_trusted(ip) {
            client = Some(ip);
            break;
        }
        via.push(ip);
        client = Some(ip);
    }
    // `via` was gathered from the peer outwards; the client is not a hop.
    if client.is_some() && via.last().copied() == client {
        via.pop();
    }
    via.reverse();
    Origin { client, via }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn from(peer: &str, xff: &[&str], trusted: &[Cidr]) -> Origin {
        origin(ip(peer), xff.iter().map(|v| v.as_bytes()), trusted)
    }

    #[test]
    fn blocks() {
        let b = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(b.contains(ip("10.9.8.7")));
        assert!(!b.contains(ip("11.0.0.1")));
        assert!(b.contains(ip("::ffff:10.1.1.1")));
        assert!(Cidr::parse("::1").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("8.8.8.8")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        assert!(
            Cidr::parse("2001:db8::/32")
                .unwrap()
                .contains(ip("2001:db8:1::9"))
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("proxy").is_err());
        let e = Cidr::parse_all("trusted_proxies", &["10.0.0.0/8".into(), "x".into()]).unwrap_err();
        assert!(e.to_string().contains("trusted_proxies[1]"), "{e}");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [
            Cidr::parse("127.0.0.1").unwrap(),
            Cidr::parse("10.0.0.0/8").unwrap(),
        ];
        // The client's own claim (left) loses to what our proxies saw.
        let o = from("127.0.0.1", &["6.6.6.6, 203.0.113.9", "10.0.0.2"], &trusted);
        assert_eq!(o.client, Some(ip("203.0.113.9")));
        assert_eq!(o.via, [ip("10.0.0.2"), ip("127.0.0.1")]);
        // An untrusted peer's header is ignored.
        let o = from("198.51.100.1", &["6.6.6.6"], &trusted);
        assert_eq!((o.client, o.via), (Some(ip("198.51.100.1")), vec![]));
        // No header: the peer.
        assert_eq!(
            from("127.0.0.1", &[], &trusted).client,
            Some(ip("127.0.0.1"))
        );
        // Nothing trusted configured: the peer, always.
        assert_eq!(
            from("127.0.0.1", &["6.6.6.6"], &[]).client,
            Some(ip("127.0.0.1"))
        );
        // Every hop trusted: the left-most is the client.
        let o = from("127.0.0.1", &["10.1.1.1, 10.2.2.2"], &trusted);
        assert_eq!(o.client, Some(ip("10.1.1.1")));
        assert_eq!(o.via, [ip("10.2.2.2"), ip("127.0.0.1")]);
        // Something that is no address makes the client unknown, never the
        // (internal) hop that passed it.
        let o = from("127.0.0.1", &["6.6.6.6, unknown, 10.0.0.3"], &trusted);
        assert_eq!(o.client, None);
        assert_eq!(o.via, [ip("10.0.0.3"), ip("127.0.0.1")]);
        // Ports, as some load balancers append them.
        let o = from("127.0.0.1", &["198.51.100.7:4711"], &trusted);
        assert_eq!(o.client, Some(ip("198.51.100.7")));
        let o = from("127.0.0.1", &["[2001:db8::7]:4711, 10.0.0.3:80"], &trusted);
        assert_eq!(o.client, Some(ip("2001:db8::7")));
        // Mapped IPv4 is IPv4.
        let o = from("::ffff:127.0.0.1", &["::ffff:192.0.2.1"], &trusted);
        assert_eq!(o.client, Some(ip("192.0.2.1")));
    }

    #[test]
    fn ipv6_buckets_by_prefix() {
        assert_eq!(bucket(ip("2001:db8:1:2:3:4:5:6"), 64), ip("2001:db8:1:2::"));
        assert_eq!(bucket(ip("2001:db8:1:2:3:4:5:6"), 48), ip("2001:db8:1::"));
        assert_eq!(bucket(ip("2001:db8::1"), 128), ip("2001:db8::1"));
        assert_eq!(bucket(ip("2001:db8::1"), 0), ip("::"));
        assert_eq!(bucket(ip("192.0.2.7"), 64), ip("192.0.2.7"));
        assert_eq!(bucket(ip("::ffff:192.0.2.7"), 64), ip("192.0.2.7"));
    }
}
