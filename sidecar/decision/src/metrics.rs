//! The sidecar's Prometheus metrics, named as in DESIGN.md.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub evaluations: IntCounterVec,
    pub duration: Histogram,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub reloads: IntCounterVec,
    pub log_dropped: IntCounter,
    pub token_failures: IntCounterVec,
}

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants; every test builds them"
    )]
    pub fn new() -> Self {
        let registry = Registry::new();
        let evaluations = IntCounterVec::new(
            Opts::new(
                "policy_evaluations_total",
                "Decisions by determining policy (`default` when none matched) and decision",
            ),
            &["policy", "decision"],
        )
        .expect(VALID);
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "policy_evaluation_duration_seconds",
                "Time to decide, including mapping and cache lookup",
            )
            .buckets(vec![
                1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 2.5e-2,
            ]),
        )
        .expect(VALID);
        let cache_hits = IntCounter::new(
            "policy_cache_hits_total",
            "Decisions served from the decision cache",
        )
        .expect(VALID);
        let cache_misses =
            IntCounter::new("policy_cache_misses_total", "Decisions evaluated by Cedar")
                .expect(VALID);
        let reloads = IntCounterVec::new(
            Opts::new("policy_reloads_total", "Policy directory reloads by result"),
            &["result"],
        )
        .expect(VALID);
        let log_dropped = IntCounter::new(
            "policy_decision_log_dropped_total",
            "Decision log records dropped because the log queue was full",
        )
        .expect(VALID);
        let token_failures = IntCounterVec::new(
            Opts::new(
                "token_verification_failures_total",
                "Bearer tokens the sidecar refused, by reason",
            ),
            &["reason"],
        )
        .expect(VALID);
        let _ = registry.register(Box::new(token_failures.clone()));
        for c in [&cache_hits, &cache_misses, &log_dropped] {
            let _ = registry.register(Box::new(c.clone()));
        }
        let _ = registry.register(Box::new(evaluations.clone()));
        let _ = registry.register(Box::new(duration.clone()));
        let _ = registry.register(Box::new(reloads.clone()));
        Self {
            registry,
            evaluations,
            duration,
            cache_hits,
            cache_misses,
            reloads,
            log_dropped,
            token_failures,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

const VALID: &str = "metric definitions are constants";
