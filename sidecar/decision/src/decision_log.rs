//! One JSON line per decision, written off the hot path. The decision side
//! only does a non-blocking `try_send`; a full queue drops the record and
//! counts it, it never slows or blocks a decision. Tokens never reach it:
//! records carry entity ids, policy ids and errors only.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, SystemTime};

use cedar_policy::EntityUid;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

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

/// Principal, action and resource of a decision, rendered by the writer.
#[derive(Debug)]
pub enum Subject {
    Uids(EntityUid, EntityUid, EntityUid),
    /// A direct request answered from the cache before its JSON was parsed.
    Json(serde_json::Value, serde_json::Value, serde_json::Value),
}

/// One decision, as it is queued.
#[derive(Debug)]
pub struct Record {
    pub request_id: Option<String>,
    /// `None` when the request never mapped to Cedar (e.g. no route).
    pub subject: Option<Subject>,
    pub outcome: Arc<Outcome>,
    pub latency_us: u64,
    pub cached: bool,
    pub time: SystemTime,
}

/// How often the writer wakes to drain the queue. Decisions never wake it:
/// a wake-up per record would cost the hot path a futex call and a context
/// switch, on a machine where the proxy needs every core.
const DRAIN_EVERY: Duration = Duration::from_millis(25);

#[derive(Debug)]
pub struct DecisionLog {
    /// `None` once dropped, which tells the writer to finish.
    tx: Option<mpsc::SyncSender<Record>>,
    writer: Option<std::thread::JoinHandle<()>>,
    sample: f64,
    seen: AtomicU64,
    dropped: IntCounter,
}

impl DecisionLog {
    /// Open the sink and start the writer thread.
    pub fn start(config: &LogConfig, dropped: IntCounter) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::sync_channel(config.queue.max(1));
        let sink: Box<dyn Write + Send> = if config.path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(PathBuf::from(&config.path))?,
            )
        };
        let writer = std::thread::Builder::new()
            .name("decision-log".into())
            .spawn(move || write_loop(&rx, sink))?;
        Ok(Self {
            tx: Some(tx),
            writer: Some(writer),
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
        let sent = self
            .tx
            .as_ref()
            .is_some_and(|tx| tx.try_send(make()).is_ok());
        if !sent {
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

impl Drop for DecisionLog {
    /// Write out what is queued before the process goes on to exit.
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_loop(rx: &mpsc::Receiver<Record>, sink: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, sink);
    loop {
        let mut open = true;
        loop {
            match rx.try_recv() {
                Ok(record) => {
                    if serde_json::to_writer(&mut out, &Line::from(&record)).is_err()
                        || out.write_all(b"\n").is_err()
                    {
                        return;
                    }
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if out.flush().is_err() || !open {
            return;
        }
        std::thread::sleep(DRAIN_EVERY);
    }
}

impl Subject {
    /// Part `i` (principal, action, resource) as Cedar writes a uid.
    fn render(&self, i: usize) -> String {
        match self {
            Self::Uids(p, a, r) => [p, a, r][i].to_string(),
            Self::Json(p, a, r) => {
                let v = [p, a, r][i];
                match (v["type"].as_str(), v["id"].as_str()) {
                    (Some(t), Some(id)) => format!("{t}::{}", serde_json::Value::from(id)),
                    _ => v.to_string(),
                }
            }
        }
    }
}

/// The JSON line, serialized straight from the record.
#[derive(Serialize)]
struct Line<'a> {
    time: f64,
    request_id: Option<&'a str>,
    principal: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    decision: &'static str,
    determining_policies: &'a [String],
    reason: Option<&'a str>,
    errors: &'a [String],
    latency_us: u64,
    cache_hit: bool,
}

impl<'a> From<&'a Record> for Line<'a> {
    fn from(r: &'a Record) -> Self {
        Self {
            time: r
                .time
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
            request_id: r.request_id.as_deref(),
            principal: r.subject.as_ref().map(|s| s.render(0)),
            action: r.subject.as_ref().map(|s| s.render(1)),
            resource: r.subject.as_ref().map(|s| s.render(2)),
            decision: if r.outcome.allowed { "Allow" } else { "Deny" },
            determining_policies: &r.outcome.policies,
            reason: r.outcome.reason.as_deref(),
            errors: &r.outcome.errors,
            latency_us: r.latency_us,
            cache_hit: r.cached,
        }
    }
}
