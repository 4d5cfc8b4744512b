//! Who is really calling: behind a reverse proxy the TCP peer is the proxy,
//! and the client's address is in `X-Forwarded-For`. That header is
//! believed only when the peer is a configured trusted proxy, and then read
//! from the right, skipping trusted hops, so a client cannot pick its own
//! address (lockout windows and audit records depend on it).

use std::net::IpAddr;

use axum::http::HeaderMap;

/// An address or a CIDR block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    addr: IpAddr,
    prefix: u8,
}

impl Block {
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

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| -> u128 {
            match ip {
                IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
                IpAddr::V6(v6) => u128::from(v6),
            }
        };
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
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

/// The client's address: the peer, or — when the peer is a trusted proxy —
/// the right-most `X-Forwarded-For` entry that is not itself trusted.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[Block]) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|b| b.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .copied()
        .find(|ip| !is_trusted(*ip))
        .or_else(|| hops.first().copied())
        .unwrap_or(peer)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().unwrap());
        h
    }

    #[test]
    fn blocks() {
        let b = Block::parse("10.0.0.0/8").unwrap();
        assert!(b.contains("10.9.8.7".parse().unwrap()));
        assert!(!b.contains("11.0.0.1".parse().unwrap()));
        assert!(b.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(
            Block::parse("::1")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        assert!(
            Block::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Block::parse("10.0.0.0/33").is_err());
        assert!(Block::parse("proxy").is_err());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = [
            Block::parse("127.0.0.1").unwrap(),
            Block::parse("10.0.0.0/8").unwrap(),
        ];
        let peer = "127.0.0.1".parse().unwrap();
        // The client's own claim (left) loses to what our proxies saw.
        assert_eq!(
            client_address(peer, &xff("6.6.6.6, 203.0.113.9, 10.0.0.2"), &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored.
        assert_eq!(
            client_address("198.51.100.1".parse().unwrap(), &xff("6.6.6.6"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        // No header: the peer.
        assert_eq!(client_address(peer, &HeaderMap::new(), &trusted), peer);
        // Nothing trusted configured: the peer, always.
        assert_eq!(client_address(peer, &xff("6.6.6.6"), &[]), peer);
    }
}
