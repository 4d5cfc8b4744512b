//! A follower's [`Status`] as Prometheus metrics, read at scrape time:
//! `feed_lag_seconds` (since the feed last answered), `feed_cursor`,
//! `feed_synced` (a snapshot applied), `feed_stale` (past the bound),
//! `feed_errors_total` and `feed_snapshots_total`.

use std::sync::Arc;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, IntCounter, IntGauge, Opts};

use crate::follower::Status;

pub struct StatusCollector {
    status: Arc<Status>,
    lag: Gauge,
    cursor: IntGauge,
    synced: IntGauge,
    stale: IntGauge,
    errors: IntCounter,
    snapshots: IntCounter,
}

impl StatusCollector {
    #[expect(
        clippy::expect_used,
        reason = "metric names are constants; every test builds them"
    )]
    pub fn new(status: Arc<Status>) -> Self {
        const VALID: &str = "valid metric";
        Self {
            lag: Gauge::with_opts(Opts::new(
                "feed_lag_seconds",
                "Seconds since the change feed last answered",
            ))
            .expect(VALID),
            cursor: IntGauge::new("feed_cursor", "The change feed cursor followed so far")
                .expect(VALID),
            synced: IntGauge::new("feed_synced", "1 once a snapshot of the feed was applied")
                .expect(VALID),
            stale: IntGauge::new("feed_stale", "1 while the feed is past its staleness bound")
                .expect(VALID),
            errors: IntCounter::new("feed_errors_total", "Failed requests to the change feed")
                .expect(VALID),
            snapshots: IntCounter::new(
                "feed_snapshots_total",
                "Snapshots of the change feed taken",
            )
            .expect(VALID),
            status,
        }
    }
}

fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

impl Collector for StatusCollector {
    fn desc(&self) -> Vec<&Desc> {
        [
            self.lag.desc(),
            self.cursor.desc(),
            self.synced.desc(),
            self.stale.desc(),
            self.errors.desc(),
            self.snapshots.desc(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = &self.status;
        self.lag.set(s.lag().as_secs_f64());
        self.cursor.set(s.cursor());
        self.synced.set(i64::from(s.synced()));
        self.stale.set(i64::from(s.stale()));
        catch_up(&self.errors, s.errors());
        catch_up(&self.snapshots, s.snapshots());
        [
            self.lag.collect(),
            self.cursor.collect(),
            self.synced.collect(),
            self.stale.collect(),
            self.errors.collect(),
            self.snapshots.collect(),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}
