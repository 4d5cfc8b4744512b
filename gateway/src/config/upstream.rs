//! `[[upstreams]]`: addresses (`ip:port`, or `host:port` resolved once
//! validated), balancing, timeouts, health checks.

use super::*;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub name: String,
    /// `ip:port` or `host:port`. A name is resolved once, when the config
    /// is loaded, to every address it has (as nginx does without
    /// `resolve`): right for a Kubernetes Service's stable cluster IP, not
    /// for a name whose addresses change while the gateway runs.
    pub addresses: Vec<String>,
    /// `addresses` resolved, after validation (`Config::load`).
    #[serde(skip)]
    pub resolved: Vec<SocketAddr>,
    /// Giving up on a TCP connect (then the next address, for idempotent
    /// requests).
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the upstream between reads.
    #[serde(default = "default_read_ms")]
    pub read_timeout_ms: u64,
    /// Longest wait for the upstream to take more of a request (an
    /// upstream that stopped reading a body without answering or closing).
    #[serde(default = "default_read_ms")]
    pub write_timeout_ms: u64,
    /// Connect to the upstream over TLS (certificate verified against the
    /// system roots).
    #[serde(default)]
    pub tls: bool,
    /// Server name for SNI and certificate verification (TLS only).
    #[serde(default)]
    pub sni: String,
    /// Speak HTTP/2 to the upstream (ALPN with TLS, prior knowledge
    /// without), as gRPC services need.
    #[serde(default)]
    pub http2: bool,
    /// How an address is chosen.
    #[serde(default)]
    pub balance: Balance,
    /// The key of `consistent_hash` (the source address when the request
    /// has no such identity).
    #[serde(default)]
    pub hash_on: HashOn,
    /// Probe every address; failing ones leave the rotation.
    pub health_check: Option<HealthCheckConfig>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    #[default]
    RoundRobin,
    /// Rendezvous hashing on `hash_on`: the same caller keeps the same
    /// address while it is healthy.
    ConsistentHash,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HashOn {
    #[default]
    Source,
    Subject,
    ClientId,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// GET this path; 2xx or 3xx is healthy.
    pub path: String,
    pub interval_ms: u64,
    pub timeout_ms: u64,
    /// Consecutive failures that take an address out.
    pub unhealthy_threshold: u32,
    /// Consecutive successes that bring it back.
    pub healthy_threshold: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval_ms: 5_000,
            timeout_ms: 1_000,
            unhealthy_threshold: 2,
            healthy_threshold: 2,
        }
    }
}

pub(super) fn default_connect_ms() -> u64 {
    1_000
}

pub(super) fn default_read_ms() -> u64 {
    30_000
}

/// An upstream address is an `ip:port` or a `host:port`.
pub(super) fn check_address(address: &str) -> Result<(), String> {
    if address.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    match address.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(format!("`{address}` is not ip:port or host:port")),
    }
}

/// One configured upstream address: an `ip:port` as it is, a `host:port`
/// through the system's resolver.
pub(super) fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    if let Ok(addr) = address.parse::<SocketAddr>() {
        return Ok(vec![addr]);
    }
    check_address(address)?;
    let found: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(address)
        .map_err(|e| format!("`{address}` does not resolve: {e}"))?
        .collect();
    if found.is_empty() {
        return Err(format!("`{address}` resolves to no address"));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::resolve;

    #[test]
    fn upstream_addresses_are_ip_port_or_resolvable_host_port() {
        assert_eq!(
            resolve("127.0.0.1:3000").unwrap(),
            ["127.0.0.1:3000".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]:3000").unwrap(),
            ["[::1]:3000".parse().unwrap()]
        );
        let local = resolve("localhost:3000").unwrap();
        assert!(
            local
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 3000),
            "{local:?}"
        );
        assert!(!local.is_empty());
        for bad in ["app", "app:", ":80", "app:http", "app:70000"] {
            let e = resolve(bad).unwrap_err();
            assert!(
                e.contains("is not ip:port or host:port") && e.contains(bad),
                "{bad}: {e}"
            );
        }
        // RFC 6761: `.invalid` never resolves.
        let e = resolve("upstream.invalid:80").unwrap_err();
        assert!(e.contains("`upstream.invalid:80` does not resolve"), "{e}");
    }
}
