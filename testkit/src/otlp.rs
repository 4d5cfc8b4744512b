//! An OTLP/gRPC trace receiver built from the official OpenTelemetry
//! protocol definitions (`otlp_receiver.py`: PyPI `opentelemetry-proto`
//! served with `grpcio`), as a collector stands in for tests and
//! benchmarks.

use std::time::Duration;

use serde_json::Value;

use crate::Process;

pub struct OtlpReceiver {
    process: Process,
    /// `http://127.0.0.1:<port>`, for `tracing.otlp_endpoint`.
    pub endpoint: String,
}

impl OtlpReceiver {
    /// Prints every span it receives (see [`OtlpReceiver::spans`]).
    pub fn start() -> Self {
        Self::launch(&[])
    }

    /// Only counts what it receives (see [`OtlpReceiver::received`]): for
    /// load, where printing each span would cost more than receiving it.
    pub fn counting() -> Self {
        Self::launch(&["--count"])
    }

    fn launch(args: &[&str]) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/otlp_receiver.py");
        let mut cmd = std::process::Command::new("python3");
        cmd.arg(script).args(args);
        let mut process = Process::start("otlp receiver", cmd);
        let port = process
            .wait_until(Duration::from_secs(30), "the receiver's port", |p| {
                p.stdout()
                    .iter()
                    .find_map(|l| serde_json::from_str::<Value>(l).ok()?["port"].as_u64())
            })
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            process,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Every span received so far: `service`, `trace_id`, `span_id`,
    /// `parent_span_id` (empty for a root), `name`, `kind`, `attributes`.
    pub fn spans(&self) -> Vec<Value> {
        self.lines()
            .filter(|v| v.get("span_id").is_some())
            .collect()
    }

    /// Every span received, once `done` says what the caller needs has
    /// arrived (services export in batches, every few seconds); panics
    /// after 30 s.
    pub fn spans_when(&self, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "spans incomplete: {spans:#?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// How many spans a counting receiver has received.
    pub fn received(&self) -> u64 {
        self.lines()
            .filter_map(|v| v["received"].as_u64())
            .last()
            .unwrap_or(0)
    }

    fn lines(&self) -> impl Iterator<Item = Value> {
        self.process
            .stdout()
            .into_iter()
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
    }
}
