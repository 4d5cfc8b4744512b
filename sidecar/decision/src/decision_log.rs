//! One JSON line per decision, written off the hot path by
//! [`bootstrap::jsonl`]: a full queue drops the record and counts it, it
//! never slows or blocks a decision. Tokens never reach it: records carry
//! entity ids, policy ids and errors only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bootstrap::jsonl::JsonLines;
use cedar_policy::EntityUid;
use prometheus::IntCounter;
use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;

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

#[derive(Debug)]
pub struct DecisionLog {
    lines: JsonLines<Record>,
    sample: f64,
    seen: AtomicU64,
    dropped: IntCounter,
}

impl DecisionLog {
    /// Open the sink and start the writer thread.
    pub fn start(config: &LogConfig, dropped: IntCounter) -> std::io::Result<Self> {
        Ok(Self {
            lines: JsonLines::start("decision-log", &config.path, config.queue, render)?,
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
        if !self.lines.send(make()) {
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

fn render(record: &Record, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, &Line::from(record));
}

impl Subject {
    /// Part `i` (principal, action, resource) as Cedar writes a uid.
    fn render(&self, i: usize) -> String {
        match self {
            Self::Uids(p, a, r) => crate::cedar_json::uid_text([p, a, r][i]),
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
