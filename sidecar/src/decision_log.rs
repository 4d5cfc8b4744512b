//! One JSON line per decision, written off the hot path. The decision side
//! only does a non-blocking `try_send`; a full queue drops the record and
//! counts it, it never slows or blocks a decision. Tokens never reach it:
//! records carry entity ids, policy ids and errors only.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use cedar_policy::EntityUid;
use prometheus::IntCounter;
use serde::Deserialize;
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;

use crate::engine::Outcome;

/// `[decision_log]` in the sidecar config.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub enabled: bool,
    /// `-` for stdout, or a file appended to.
    pub path: String,
    /// Records waiting to be written before new ones are dropped.
    pub queue: usize,
    /// Fraction of allows logged (0.0–1.0); denies are always logged.
    pub sample_allows: f64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "-".into(),
            queue: 8192,
            sample_allows: 1.0,
        }
    }
}

/// One decision, as it is queued.
#[derive(Debug)]
pub struct Record {
    pub request_id: Option<String>,
    pub principal: Option<EntityUid>,
    pub action: Option<EntityUid>,
    pub resource: Option<EntityUid>,
    pub outcome: Arc<Outcome>,
    pub latency_us: u64,
    pub cached: bool,
    pub time: SystemTime,
}

#[derive(Debug)]
pub struct DecisionLog {
    tx: mpsc::Sender<Record>,
    sample: f64,
    seen: AtomicU64,
    dropped: IntCounter,
}

impl DecisionLog {
    /// Start the writer task on the current Tokio runtime.
    pub async fn start(config: &LogConfig, dropped: IntCounter) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(config.queue.max(1));
        let sink: Box<dyn AsyncWrite + Send + Unpin> = if config.path == "-" {
            Box::new(tokio::io::stdout())
        } else {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(PathBuf::from(&config.path))
                .await?;
            Box::new(file)
        };
        tokio::spawn(write_loop(rx, sink));
        Ok(Self {
            tx,
            sample: config.sample_allows.clamp(0.0, 1.0),
            seen: AtomicU64::new(0),
            dropped,
        })
    }

    /// Queue a record unless sampling skips it; never blocks.
    pub fn record(&self, make: impl FnOnce() -> Record, allowed: bool) {
        if allowed && !self.sampled() {
            return;
        }
        if self.tx.try_send(make()).is_err() {
            self.dropped.inc();
        }
    }

    /// Deterministic sampling: exactly `sample` of allows, evenly spread.
    fn sampled(&self) -> bool {
        if self.sample >= 1.0 {
            return true;
        }
        let n = self.seen.fetch_add(1, Ordering::Relaxed) as f64;
        ((n + 1.0) * self.sample).floor() > (n * self.sample).floor()
    }
}

async fn write_loop(mut rx: mpsc::Receiver<Record>, sink: Box<dyn AsyncWrite + Send + Unpin>) {
    let mut out = BufWriter::new(sink);
    let mut line = Vec::with_capacity(512);
    while let Some(record) = rx.recv().await {
        let mut next = Some(record);
        // Drain what is queued, then flush once.
        while let Some(r) = next {
            line.clear();
            if serde_json::to_writer(&mut line, &json(&r)).is_ok() {
                line.push(b'\n');
                if out.write_all(&line).await.is_err() {
                    return;
                }
            }
            next = rx.try_recv().ok();
        }
        if out.flush().await.is_err() {
            return;
        }
    }
}

fn json(r: &Record) -> serde_json::Value {
    let time = r
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default();
    serde_json::json!({
        "time": time,
        "request_id": r.request_id,
        "principal": r.principal.as_ref().map(ToString::to_string),
        "action": r.action.as_ref().map(ToString::to_string),
        "resource": r.resource.as_ref().map(ToString::to_string),
        "decision": if r.outcome.allowed { "Allow" } else { "Deny" },
        "determining_policies": r.outcome.policies,
        "reason": r.outcome.reason,
        "errors": r.outcome.errors,
        "latency_us": r.latency_us,
        "cache_hit": r.cached,
    })
}
