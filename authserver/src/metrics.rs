//! The authserver's Prometheus metrics: DESIGN.md's `auth_requests_total`
//! and `auth_request_duration_seconds`, plus counters of tokens issued and
//! logins (gauges of live tokens and sessions would need a scan of the
//! ephemeral store; not kept).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

const VALID: &str = "metric names and labels are constants";

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// By method, matched route template (bounded) and status.
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Tokens issued, by type (`access`, `id`, `refresh`).
    pub tokens_issued: IntCounterVec,
    /// Logins by outcome (`success`, `failure`, `locked`).
    pub logins: IntCounterVec,
}

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants; every test builds them"
    )]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "auth_requests_total",
                "HTTP requests by method, route and status",
            ),
            &["method", "endpoint", "status"],
        )
        .expect(VALID);
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "auth_request_duration_seconds",
                "HTTP request duration by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["endpoint"],
        )
        .expect(VALID);
        let tokens_issued = IntCounterVec::new(
            Opts::new("auth_tokens_issued_total", "Tokens issued by type"),
            &["type"],
        )
        .expect(VALID);
        let logins = IntCounterVec::new(
            Opts::new("auth_logins_total", "Password logins by outcome"),
            &["outcome"],
        )
        .expect(VALID);
        for m in [&requests, &tokens_issued, &logins] {
            registry.register(Box::new(m.clone())).expect(VALID);
        }
        registry.register(Box::new(duration.clone())).expect(VALID);
        Self {
            registry,
            requests,
            duration,
            tokens_issued,
            logins,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
