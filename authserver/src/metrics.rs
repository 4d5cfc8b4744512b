//! The authserver's Prometheus metrics, named as in DESIGN.md:
//! `auth_requests_total{method,endpoint,status}`,
//! `auth_request_duration_seconds{method,endpoint}`,
//! `auth_tokens_active_total{type}`, `auth_sessions_active_total`,
//! `auth_mfa_verifications_total{method,status}`, plus tokens issued and
//! logins. The "active" gauges are this instance's count
//! of what it issued that has not expired or been revoked (replicas add up).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::{
    HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

const VALID: &str = "metric names and labels are constants";

/// A gauge of live things that expire by themselves: one bucket per minute
/// of expiry time (a ring one lifetime long); a sweep subtracts the buckets
/// whose minute has passed. Sweeps must come at least once per lifetime
/// (the server sweeps every 30 s), or a bucket would mix old and new.
#[derive(Debug)]
pub struct Expiring {
    gauge: IntGauge,
    buckets: Box<[AtomicI64]>,
    swept_until: Mutex<i64>,
}

impl Expiring {
    fn new(gauge: IntGauge, max_lifetime_secs: u64, now: i64) -> Self {
        let len = usize::try_from(max_lifetime_secs / 60 + 2).unwrap_or(2);
        Self {
            gauge,
            buckets: (0..len).map(|_| AtomicI64::new(0)).collect(),
            swept_until: Mutex::new(now.div_euclid(60)),
        }
    }

    fn bucket(&self, exp: i64) -> &AtomicI64 {
        let minute = usize::try_from(exp.div_euclid(60)).unwrap_or(0);
        &self.buckets[minute % self.buckets.len()]
    }

    /// Something that lives until `exp` (Unix seconds) was created.
    pub fn add(&self, exp: i64) {
        self.gauge.inc();
        self.bucket(exp).fetch_add(1, Ordering::Relaxed);
    }

    /// Something that would have lived until `exp` ended early.
    pub fn end(&self, exp: i64) {
        self.gauge.dec();
        self.bucket(exp).fetch_sub(1, Ordering::Relaxed);
    }

    /// Forgets everything that expired before `now`'s minute.
    pub fn sweep(&self, now: i64) {
        let current = now.div_euclid(60);
        let mut until = self.swept_until.lock().unwrap_or_else(|e| e.into_inner());
        let len = i64::try_from(self.buckets.len()).unwrap_or(i64::MAX);
        // Never more than the ring minus the minutes live things can use.
        let from = (*until).max(current - 1);
        let from = if current - *until >= len {
            from
        } else {
            *until
        };
        for minute in from..current {
            let slot = usize::try_from(minute.rem_euclid(len)).unwrap_or(0);
            let expired = self.buckets[slot].swap(0, Ordering::Relaxed);
            self.gauge.sub(expired);
        }
        *until = current;
    }

    pub fn get(&self) -> i64 {
        self.gauge.get()
    }
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    /// By method, matched route template (bounded) and status.
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    /// Tokens issued, by type (`access`, `id`, `refresh`).
    pub tokens_issued: IntCounterVec,
    pub access_tokens: Expiring,
    pub refresh_tokens: Expiring,
    pub sessions: Expiring,
    /// Logins by outcome (`success`, `failure`, `locked`).
    pub logins: IntCounterVec,
    /// Second-factor checks by method (`totp`, `recovery`) and status
    /// (`success`, `failure`, `replay`, `locked`).
    pub mfa_verifications: IntCounterVec,
    /// Back-channel logout deliveries by result (`delivered`, `failed`).
    pub backchannel_logouts: IntCounterVec,
    /// Change-feed long polls waiting for a change right now.
    pub feed_polls_waiting: IntGauge,
}

impl Metrics {
    #[expect(
        clippy::expect_used,
        reason = "metric names and labels are constants; every test builds them"
    )]
    pub fn new(access_secs: u64, refresh_secs: u64, session_secs: u64, now: i64) -> Self {
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
                "HTTP request duration by method and route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            &["method", "endpoint"],
        )
        .expect(VALID);
        let tokens_issued = IntCounterVec::new(
            Opts::new("auth_tokens_issued_total", "Tokens issued by type"),
            &["type"],
        )
        .expect(VALID);
        let active = IntGaugeVec::new(
            Opts::new(
                "auth_tokens_active_total",
                "Unexpired, unrevoked tokens this instance issued, by type",
            ),
            &["type"],
        )
        .expect(VALID);
        let sessions = IntGauge::new(
            "auth_sessions_active_total",
            "Live browser sessions this instance started",
        )
        .expect(VALID);
        let logins = IntCounterVec::new(
            Opts::new(
                "auth_logins_total",
                "Sign-ins by outcome: success when a session begins, failure or locked at the password",
            ),
            &["outcome"],
        )
        .expect(VALID);
        let mfa_verifications = IntCounterVec::new(
            Opts::new(
                "auth_mfa_verifications_total",
                "Second-factor verifications by method and status",
            ),
            &["method", "status"],
        )
        .expect(VALID);
        let backchannel_logouts = IntCounterVec::new(
            Opts::new(
                "auth_backchannel_logouts_total",
                "Logout tokens sent to clients, by result after retries",
            ),
            &["result"],
        )
        .expect(VALID);
        let feed_polls_waiting = IntGauge::new(
            "auth_feed_polls_waiting",
            "Change-feed long polls waiting for a change",
        )
        .expect(VALID);
        registry
            .register(Box::new(feed_polls_waiting.clone()))
            .expect(VALID);
        for m in [
            &requests,
            &tokens_issued,
            &logins,
            &mfa_verifications,
            &backchannel_logouts,
        ] {
            registry.register(Box::new(m.clone())).expect(VALID);
        }
        registry.register(Box::new(duration.clone())).expect(VALID);
        registry.register(Box::new(active.clone())).expect(VALID);
        registry.register(Box::new(sessions.clone())).expect(VALID);
        Self {
            registry,
            requests,
            duration,
            tokens_issued,
            access_tokens: Expiring::new(active.with_label_values(&["access"]), access_secs, now),
            refresh_tokens: Expiring::new(
                active.with_label_values(&["refresh"]),
                refresh_secs,
                now,
            ),
            sessions: Expiring::new(sessions, session_secs, now),
            logins,
            mfa_verifications,
            backchannel_logouts,
            feed_polls_waiting,
        }
    }

    /// Brings the "active" gauges up to `now` (called before each scrape).
    pub fn sweep(&self, now: i64) {
        self.access_tokens.sweep(now);
        self.refresh_tokens.sweep(now);
        self.sessions.sweep(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_gauges_forget_what_expired() {
        let t = 1_000_020;
        let m = Metrics::new(600, 3600, 3600, t);
        m.access_tokens.add(t + 600);
        m.access_tokens.add(t + 30);
        m.access_tokens.add(t + 90);
        m.sweep(t);
        assert_eq!(m.access_tokens.get(), 3);
        m.access_tokens.end(t + 90);
        assert_eq!(m.access_tokens.get(), 2);
        m.sweep(t + 200);
        assert_eq!(m.access_tokens.get(), 1, "the one expiring at t+30 is gone");
        for step in (300..=720).step_by(30) {
            m.sweep(t + step);
        }
        assert_eq!(m.access_tokens.get(), 0);
        // A token issued now survives a sweep at the same minute.
        m.access_tokens.add(t + 720 + 600);
        m.sweep(t + 750);
        assert_eq!(m.access_tokens.get(), 1);
    }
}
