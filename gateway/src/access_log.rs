//! The access log: one JSON line per request, formatted and written off
//! the hot path by [`bootstrap::jsonl`]; when the queue is full the record
//! is dropped and counted. It never holds a
//! token, a cookie or a query string (where tokens sometimes travel).

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};

use bootstrap::jsonl::JsonLines;
use prometheus::IntCounter;
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessLogConfig {
    pub enabled: bool,
    /// `-` for stdout, or a file appended to.
    pub path: String,
    /// Records waiting to be written before new ones are dropped.
    pub queue: usize,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "-".into(),
            queue: 16_384,
        }
    }
}

/// One request, as it is queued (cheap clones only; the writer renders).
#[derive(Debug)]
pub struct AccessRecord {
    pub time: SystemTime,
    pub request_id: http::HeaderValue,
    pub method: http::Method,
    /// The normalised path, without the query.
    pub path: String,
    pub route: Option<std::sync::Arc<str>>,
    pub status: u16,
    pub duration: Duration,
    pub source: Option<IpAddr>,
    pub upstream: Option<SocketAddr>,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// With tracing on: the trace the request's spans are in.
    pub trace_id: Option<opentelemetry::trace::TraceId>,
}

pub struct AccessLog {
    lines: JsonLines<AccessRecord>,
    dropped: IntCounter,
}

impl AccessLog {
    pub fn start(config: &AccessLogConfig, dropped: IntCounter) -> std::io::Result<Self> {
        Ok(Self {
            lines: JsonLines::start("access-log", &config.path, config.queue, write_line)?,
            dropped,
        })
    }

    pub fn record(&self, record: AccessRecord) {
        if !self.lines.send(record) {
            self.dropped.inc();
        }
    }

    /// Write out what is queued; the gateway calls it once it has stopped
    /// serving.
    pub fn close(&self) {
        self.lines.close();
    }
}

fn write_line(r: &AccessRecord, out: &mut Vec<u8>) {
    let _ = serde_json::to_writer(out, &render(r));
}

fn render(r: &AccessRecord) -> serde_json::Value {
    let ts = r
        .time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "ts": ts,
        "type": "access",
        "request_id": r.request_id.to_str().unwrap_or_default(),
        "method": r.method.as_str(),
        "path": r.path,
        "route": r.route.as_deref(),
        "status": r.status,
        "duration_ms": r.duration.as_secs_f64() * 1000.0,
        "source": r.source,
        "upstream": r.upstream,
        "subject": r.subject,
        "client_id": r.client_id,
        "trace_id": r.trace_id.map(|id| id.to_string()),
    })
}
