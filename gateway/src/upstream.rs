//! Upstream pools: which address a request goes to (round robin, or
//! rendezvous hashing so one client or user keeps landing on the same
//! address), and active health checks that take failing addresses out of
//! rotation and put them back when they recover.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus::IntGauge;

use crate::config::{Balance, HashOn, HealthCheckConfig, UpstreamConfig};
use crate::metrics::Metrics;

pub struct Upstream {
    pub name: String,
    addresses: Vec<SocketAddr>,
    /// Per address; all start healthy.
    healthy: Vec<AtomicBool>,
    next: AtomicUsize,
    pub balance: Balance,
    pub hash_on: HashOn,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub tls: bool,
    pub sni: String,
    pub http2: bool,
    health_check: Option<HealthCheckConfig>,
    /// CAs for TLS upstreams (else the system roots).
    ca_file: Option<std::path::PathBuf>,
    gauges: Vec<IntGauge>,
}

impl Upstream {
    pub fn new(
        config: &UpstreamConfig,
        ca_file: Option<&std::path::Path>,
        metrics: &Metrics,
    ) -> Self {
        let gauges: Vec<IntGauge> = config
            .resolved
            .iter()
            .map(|a| {
                let g = metrics
                    .upstream_healthy
                    .with_label_values(&[config.name.as_str(), &a.to_string()]);
                g.set(1);
                g
            })
            .collect();
        Self {
            name: config.name.clone(),
            addresses: config.resolved.clone(),
            healthy: config
                .resolved
                .iter()
                .map(|_| AtomicBool::new(true))
                .collect(),
            next: AtomicUsize::new(0),
            balance: config.balance,
            hash_on: config.hash_on,
            connect_timeout: Duration::from_millis(config.connect_timeout_ms),
            read_timeout: Duration::from_millis(config.read_timeout_ms),
            write_timeout: Duration::from_millis(config.write_timeout_ms),
            tls: config.tls,
            sni: config.sni.clone(),
            http2: config.http2,
            health_check: config.health_check.clone(),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            gauges,
        }
    }

    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    fn is_healthy(&self, i: usize) -> bool {
        self.healthy[i].load(Ordering::Relaxed)
    }

    /// The address for a request's `attempt`-th try (0 first). Only healthy
    /// addresses are used; if none is healthy, all are (a guess beats a
    /// certain 502). `key` is the hash key for consistent hashing.
    pub fn pick(&self, key: Option<&[u8]>, attempt: usize) -> SocketAddr {
        let any_healthy = (0..self.len()).any(|i| self.is_healthy(i));
        let usable = |i: usize| !any_healthy || self.is_healthy(i);
        let count = (0..self.len()).filter(|i| usable(*i)).count().max(1);
        match (self.balance, key) {
            (Balance::ConsistentHash, Some(key)) => {
                // Rendezvous: every address scores the key; the best wins,
                // then the next best on a retry. Removing an address moves
                // only the keys it had.
                let scored = (0..self.len())
                    .filter(|i| usable(*i))
                    .map(|i| (score(key, &self.addresses[i]), i));
                let i = if attempt == 0 {
                    scored.max().map_or(0, |best| best.1)
                } else {
                    let mut ranked: Vec<(u64, usize)> = scored.collect();
                    ranked.sort_unstable_by(|a, b| b.cmp(a));
                    ranked.get(attempt % count).map_or(0, |r| r.1)
                };
                self.addresses[i]
            }
            _ => {
                let n = self.next.fetch_add(1, Ordering::Relaxed) % count;
                let i = (0..self.len()).filter(|i| usable(*i)).nth(n).unwrap_or(0);
                self.addresses[i]
            }
        }
    }

    /// Probe every address forever (on the caller's runtime).
    pub fn spawn_health_checks(self: &Arc<Self>) {
        let Some(check) = &self.health_check else {
            return;
        };
        for i in 0..self.len() {
            let (pool, check) = (self.clone(), check.clone());
            tokio::spawn(async move { pool.watch(i, &check).await });
        }
    }

    async fn watch(&self, i: usize, check: &HealthCheckConfig) {
        let addr = self.addresses[i];
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.tls {
            self.sni.clone()
        } else {
            addr.ip().to_string()
        };
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_millis(check.timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, addr);
        if let Some(path) = &self.ca_file {
            // The same trust as the proxy's own connections.
            let roots = std::fs::read(path)
                .ok()
                .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).ok());
            let Some(roots) = roots else {
                tracing::error!(ca_file = %path.display(), "upstream CA file unreadable: no health checks");
                return;
            };
            builder = builder.tls_built_in_root_certs(false);
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder.build();
        let Ok(client) = client else {
            tracing::error!(upstream = %self.name, %addr, "health check client could not be built");
            return;
        };
        let url = format!("{scheme}://{host}:{}{}", addr.port(), check.path);
        let (mut successes, mut failures) = (0u32, 0u32);
        let mut interval = tokio::time::interval(Duration::from_millis(check.interval_ms));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let ok = match client.get(&url).send().await {
                Ok(resp) => resp.status().is_success() || resp.status().is_redirection(),
                Err(_) => false,
            };
            if ok {
                successes += 1;
                failures = 0;
            } else {
                failures += 1;
                successes = 0;
            }
            let healthy = self.is_healthy(i);
            if healthy && failures >= check.unhealthy_threshold {
                self.healthy[i].store(false, Ordering::Relaxed);
                self.gauges[i].set(0);
                tracing::warn!(upstream = %self.name, %addr, "upstream address unhealthy: out of rotation");
            } else if !healthy && successes >= check.healthy_threshold {
                self.healthy[i].store(true, Ordering::Relaxed);
                self.gauges[i].set(1);
                tracing::info!(upstream = %self.name, %addr, "upstream address healthy again");
            }
        }
    }
}

/// A stable 64-bit score of (key, address): SipHash with fixed keys, so
/// every gateway replica ranks addresses the same way.
fn score(key: &[u8], addr: &SocketAddr) -> u64 {
    use std::hash::{Hash, Hasher};
    #[expect(
        deprecated,
        reason = "SipHasher's fixed keys are what makes replicas agree"
    )]
    let mut h = std::hash::SipHasher::new();
    key.hash(&mut h);
    addr.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize, balance: Balance) -> Upstream {
        let metrics = Metrics::new();
        let config = UpstreamConfig {
            name: "p".into(),
            addresses: Vec::new(),
            resolved: (0..n)
                .map(|i| SocketAddr::from(([127, 0, 0, 1], 9000 + i as u16)))
                .collect(),
            connect_timeout_ms: 1,
            read_timeout_ms: 1,
            write_timeout_ms: 1,
            tls: false,
            sni: String::new(),
            http2: false,
            balance,
            hash_on: crate::config::HashOn::Source,
            health_check: None,
        };
        Upstream::new(&config, None, &metrics)
    }

    #[test]
    fn round_robin_skips_unhealthy_addresses_unless_all_are() {
        let p = pool(3, Balance::RoundRobin);
        p.healthy[1].store(false, Ordering::Relaxed);
        let picked: Vec<u16> = (0..6).map(|_| p.pick(None, 0).port()).collect();
        assert_eq!(picked, [9000, 9002, 9000, 9002, 9000, 9002]);
        for h in &p.healthy {
            h.store(false, Ordering::Relaxed);
        }
        let all: std::collections::BTreeSet<u16> = (0..6).map(|_| p.pick(None, 0).port()).collect();
        assert_eq!(all.len(), 3, "none healthy: all are tried");
    }

    #[test]
    fn consistent_hashing_keeps_keys_and_moves_few() {
        let p = pool(4, Balance::ConsistentHash);
        let keys: Vec<String> = (0..400).map(|i| format!("user-{i}")).collect();
        let before: Vec<SocketAddr> = keys.iter().map(|k| p.pick(Some(k.as_bytes()), 0)).collect();
        let again: Vec<SocketAddr> = keys.iter().map(|k| p.pick(Some(k.as_bytes()), 0)).collect();
        assert_eq!(before, again, "stable");
        let used: std::collections::BTreeSet<_> = before.iter().collect();
        assert_eq!(used.len(), 4, "spread over every address");
        // Take one address out: only its keys move.
        p.healthy[2].store(false, Ordering::Relaxed);
        let gone = p.addresses[2];
        for (k, b) in keys.iter().zip(&before) {
            let now = p.pick(Some(k.as_bytes()), 0);
            if *b != gone {
                assert_eq!(now, *b, "{k} moved although its address is fine");
            } else {
                assert_ne!(now, gone);
            }
        }
        // A retry goes to the next best, not the same address.
        assert_ne!(p.pick(Some(b"user-1"), 0), p.pick(Some(b"user-1"), 1));
    }
}
