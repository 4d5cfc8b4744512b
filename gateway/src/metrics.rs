//! The gateway's Prometheus metrics. Labels are bounded: the route's
//! configured prefix (or `none`), the status code, a reason or mode from a
//! fixed set.

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

const VALID: &str = "metric names and labels are constants";

/// Latency buckets from 100 µs (a cached decision) to 5 s.
const BUCKETS: [f64; 13] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Requests refused for their credentials, by reason.
    pub auth_failures: IntCounterVec,
    /// `gateway_decision_cache_total{result="hit"|"miss"}` and
    /// `gateway_decision_duration_seconds{mode="sidecar"|"embedded"}`,
    /// resolved once.
    pub decision_hits: IntCounter,
    pub decision_misses: IntCounter,
    pub decision_sidecar: Histogram,
    pub decision_embedded: Histogram,
    /// `gateway_token_cache_total{result="hit"|"miss"}`: verified bearer
    /// tokens reused, or verified.
    pub token_hits: IntCounter,
    pub token_misses: IntCounter,
    /// `gateway_token_verification_duration_seconds`: verifying a bearer
    /// token not in the cache (signature, claims, a JWKS fetch for a new
    /// key, an introspection call).
    pub token_verification: Histogram,
    /// Decisions that could not be had (sidecar down or late), by reason
    /// and whether the route failed open.
    pub decision_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
    /// Access-log records dropped because the writer fell behind.
    pub access_log_dropped: IntCounter,
    /// Connections answered 408: a request header took too long.
    pub header_timeouts: IntCounter,
    /// 1 while an upstream address is in rotation.
    pub upstream_healthy: IntGaugeVec,
    /// Upstream `Set-Cookie`s for the gateway's own (private) cookies, dropped.
    pub private_set_cookies_dropped: IntCounter,
    /// `gateway_forwarded_total{path}`: requests that went upstream, by who
    /// forwarded them (indexed by [`Forwarder`]).
    forwarded: [IntCounter; 3],
}

/// Who forwarded a request upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Forwarder {
    /// pingora-proxy.
    #[default]
    Pingora,
    /// The gateway's own HTTP/1.1 path (`crate::direct`).
    Direct,
    /// The gateway's WebSocket tunnel.
    Tunnel,
}

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants; every test builds them"
    )]
    pub fn new() -> Self {
        let registry = Registry::new();
        fn register<C: Collector + Clone + 'static>(registry: &Registry, c: C) -> C {
            registry.register(Box::new(c.clone())).expect(VALID);
            c
        }
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                IntCounterVec::new(Opts::new(name, help), labels).expect(VALID),
            )
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            register(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                    labels,
                )
                .expect(VALID),
            )
        };
        let decision_cache = counter(
            "gateway_decision_cache_total",
            "Decisions served from the gateway's cache (hit) or decided (miss)",
            &["result"],
        );
        let decision_duration = histogram(
            "gateway_decision_duration_seconds",
            "Time to a policy decision, by decider (sidecar or embedded)",
            &["mode"],
        );
        let token_cache = counter(
            "gateway_token_cache_total",
            "Bearer tokens served from the verified-token cache (hit) or verified (miss)",
            &["result"],
        );
        let token_verification = histogram(
            "gateway_token_verification_duration_seconds",
            "Time to verify a bearer token the cache did not hold",
            &[],
        )
        .with_label_values(&[] as &[&str]);
        let forwarded = counter(
            "gateway_forwarded_total",
            "Requests sent upstream, by who forwarded them: direct (the gateway's HTTP/1.1 path), pingora (pingora-proxy: HTTP/2, Expect, HTTP/1.0) or tunnel (WebSocket)",
            &["path"],
        );
        Self {
            forwarded: ["pingora", "direct", "tunnel"].map(|p| forwarded.with_label_values(&[p])),
            token_verification,
            token_hits: token_cache.with_label_values(&["hit"]),
            token_misses: token_cache.with_label_values(&["miss"]),
            decision_hits: decision_cache.with_label_values(&["hit"]),
            decision_misses: decision_cache.with_label_values(&["miss"]),
            decision_sidecar: decision_duration.with_label_values(&["sidecar"]),
            decision_embedded: decision_duration.with_label_values(&["embedded"]),
            requests: counter(
                "gateway_requests_total",
                "Requests by route prefix and status",
                &["route", "status"],
            ),
            duration: histogram(
                "gateway_request_duration_seconds",
                "Time from request to the end of the response, by route",
                &["route"],
            ),
            auth_failures: counter(
                "gateway_auth_failures_total",
                "Requests refused for their credentials, by reason",
                &["reason"],
            ),
            decision_failures: counter(
                "gateway_decision_failures_total",
                "Decisions the sidecar did not give, by reason and outcome",
                &["reason", "outcome"],
            ),
            rate_limited: counter(
                "gateway_rate_limited_total",
                "Requests refused with 429, by route prefix",
                &["route"],
            ),
            access_log_dropped: register(
                &registry,
                IntCounter::new(
                    "gateway_access_log_dropped_total",
                    "Access-log records dropped because the writer fell behind",
                )
                .expect(VALID),
            ),
            header_timeouts: register(
                &registry,
                IntCounter::new(
                    "gateway_request_header_timeouts_total",
                    "Requests answered 408 because their header took longer than request_header_timeout_secs",
                )
                .expect(VALID),
            ),
            private_set_cookies_dropped: register(
                &registry,
                IntCounter::new(
                    "gateway_upstream_private_cookies_dropped_total",
                    "Set-Cookie headers from upstreams naming a private cookie (the gateway's sessions, private_cookies), dropped",
                )
                .expect(VALID),
            ),
            upstream_healthy: register(
                &registry,
                IntGaugeVec::new(
                    Opts::new(
                        "gateway_upstream_healthy",
                        "1 while an upstream address passes its health checks",
                    ),
                    &["upstream", "address"],
                )
                .expect(VALID),
            ),
            registry,
        }
    }
}

impl Metrics {
    pub fn forwarded(&self, by: Forwarder) {
        self.forwarded[by as usize].inc();
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Statuses whose counters are resolved up front: the common answers.
const COMMON_STATUSES: [u16; 15] = [
    200, 201, 204, 301, 302, 304, 400, 401, 403, 404, 429, 500, 502, 503, 504,
];

/// One route's request metrics, resolved once so the hot path does no
/// label lookup.
#[derive(Debug)]
pub struct RouteMetrics {
    route: String,
    duration: Histogram,
    statuses: [IntCounter; COMMON_STATUSES.len()],
}

impl RouteMetrics {
    pub fn new(metrics: &Metrics, route: &str) -> Self {
        Self {
            route: route.to_owned(),
            duration: metrics.duration.with_label_values(&[route]),
            statuses: COMMON_STATUSES
                .map(|s| metrics.requests.with_label_values(&[route, &s.to_string()])),
        }
    }

    pub fn observe(&self, metrics: &Metrics, status: u16, seconds: f64) {
        self.duration.observe(seconds);
        match COMMON_STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.statuses[i].inc(),
            None => metrics
                .requests
                .with_label_values(&[self.route.as_str(), status_label(status)])
                .inc(),
        }
    }
}

/// Uncommon statuses by class (bounded label values); 0 when no response
/// was written.
fn status_label(status: u16) -> &'static str {
    match status {
        0 => "none",
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
