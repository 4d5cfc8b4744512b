//! The gateway's Prometheus metrics. Labels are bounded: the route's
//! configured prefix (or `none`), the status code, a reason or mode from a
//! fixed set.

use prometheus::core::Collector;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

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
    pub decision_duration: HistogramVec,
    pub decision_cache: IntCounterVec,
    /// Decisions that could not be had (sidecar down or late), by reason
    /// and whether the route failed open.
    pub decision_failures: IntCounterVec,
    pub rate_limited: IntCounterVec,
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
        Self {
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
            decision_duration: histogram(
                "gateway_decision_duration_seconds",
                "Time to a policy decision, by decider (sidecar or embedded)",
                &["mode"],
            ),
            decision_cache: counter(
                "gateway_decision_cache_total",
                "Sidecar decisions served from the cache (hit) or asked for (miss)",
                &["result"],
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
            registry,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
