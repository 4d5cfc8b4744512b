//! The access log: one JSON line per request, formatted and written by a
//! thread of its own. The proxy only does a non-blocking `try_send`; when
//! the queue is full the record is dropped and counted. It never holds a
//! token, a cookie or a query string (where tokens sometimes travel).

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

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
}

pub struct AccessLog {
    queue: mpsc::SyncSender<AccessRecord>,
    dropped: IntCounter,
}

/// How often the writer drains the queue; `queue` records fit in between.
const DRAIN_EVERY: std::time::Duration = std::time::Duration::from_millis(25);

impl AccessLog {
    pub fn start(config: &AccessLogConfig, dropped: IntCounter) -> std::io::Result<Self> {
        let mut out: Box<dyn Write + Send> = if config.path == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&config.path)?,
            )
        };
        let (queue, records) = mpsc::sync_channel::<AccessRecord>(config.queue.max(1));
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                // Drained on a timer, never woken by a request: a blocking
                // `recv` made every request pay a futex wake-up of this
                // thread (the sidecar's decision log works the same way).
                let mut buf = Vec::with_capacity(64 * 1024);
                loop {
                    let mut open = true;
                    loop {
                        match records.try_recv() {
                            Ok(r) => {
                                let _ = serde_json::to_writer(&mut buf, &render(&r));
                                buf.push(b'\n');
                            }
                            Err(mpsc::TryRecvError::Empty) => break,
                            Err(mpsc::TryRecvError::Disconnected) => {
                                open = false;
                                break;
                            }
                        }
                    }
                    if !buf.is_empty() {
                        let _ = out.write_all(&buf);
                        let _ = out.flush();
                        buf.clear();
                    }
                    if !open {
                        return;
                    }
                    std::thread::sleep(DRAIN_EVERY);
                }
            })?;
        Ok(Self { queue, dropped })
    }

    pub fn record(&self, record: AccessRecord) {
        if self.queue.try_send(record).is_err() {
            self.dropped.inc();
        }
    }
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
    })
}
