//! The gateway's Prometheus metrics. Labels are bounded: the route's
//! configured prefix (or `none`), the status code, the refusal reason.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

const VALID: &str = "metric names and labels are constants";

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub token_failures: IntCounterVec,
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
                "gateway_requests_total",
                "Requests by route prefix and status",
            ),
            &["route", "status"],
        )
        .expect(VALID);
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "gateway_request_duration_seconds",
                "Time from request to the end of the response, by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ]),
            &["route"],
        )
        .expect(VALID);
        let token_failures = IntCounterVec::new(
            Opts::new(
                "token_verification_failures_total",
                "Bearer tokens refused, by reason",
            ),
            &["reason"],
        )
        .expect(VALID);
        registry.register(Box::new(requests.clone())).expect(VALID);
        registry.register(Box::new(duration.clone())).expect(VALID);
        registry
            .register(Box::new(token_failures.clone()))
            .expect(VALID);
        Self {
            registry,
            requests,
            duration,
            token_failures,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
