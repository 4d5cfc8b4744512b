//! Logs, traces and metrics plumbing shared by the services.

mod trace;

pub use trace::{
    Headers, Tracing, TracingConfig, TracingError, extract, inject, join_trace, trace_id,
    traceparent,
};

use prometheus::{Encoder, Registry, TextEncoder};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line (production default).
    #[default]
    Json,
    /// Human-readable lines for a terminal.
    Text,
}

/// Install the global `tracing` subscriber. `RUST_LOG` wins over `level`.
/// Logs go to stderr so stdout stays free for command output. With
/// `tracing`, spans are exported too, and a JSON line names the spans it
/// was logged in (the request's carries its `trace_id`).
pub fn init_logging(level: &str, format: LogFormat, tracing: Option<&Tracing>) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let spans = tracing.map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer().clone())
            .with_threads(false)
            .with_tracked_inactivity(false)
    });
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(DropBenign)
        .with(spans)
        .with(output(format, tracing.is_some(), std::io::stderr));
    // A second init (tests start several services in one process) is harmless.
    let _ = registry.try_init();
}

/// The log lines: JSON (naming the spans an event is in, and their
/// fields, when `spans`) or text, to `writer`.
fn output<S, W>(format: LogFormat, spans: bool, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    match format {
        LogFormat::Json => fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(spans)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => fmt::layer().with_writer(writer).boxed(),
    }
}

/// Messages of other crates (through the `log` bridge: target, text) that
/// report nothing wrong. Pingora logs an error whenever a pooled upstream
/// connection is handed over by its idle watcher a moment too late to be
/// taken: it opens a new connection instead, so the request is fine. With
/// the gateway's default of no work stealing the watcher often runs on
/// another thread, and at full speed that was 0.15% of requests: an error
/// line every few milliseconds that means nothing.
const BENIGN: &[(&str, &str)] = &[(
    "pingora_core::connectors",
    "failed to acquire reusable stream",
)];

/// Drops the `BENIGN` messages before any layer sees them.
struct DropBenign;

impl<S: Subscriber> Layer<S> for DropBenign {
    fn event_enabled(&self, event: &Event<'_>, _cx: Context<'_, S>) -> bool {
        // Bridged `log` records all come from the bridge's own callsites.
        if event.metadata().target() != "log" {
            return true;
        }
        let mut seen = LogRecord::default();
        event.record(&mut seen);
        !BENIGN
            .iter()
            .any(|(target, message)| seen.target == *target && seen.message == *message)
    }
}

/// The target and text of a bridged `log` record.
#[derive(Default)]
struct LogRecord {
    target: String,
    message: String,
}

impl Visit for LogRecord {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            value.clone_into(&mut self.target);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

/// Render a registry in the Prometheus text exposition format.
pub fn render_metrics(registry: &Registry) -> String {
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&registry.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The `Content-Type` of [`render_metrics`] output.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts the events that reach it.
    struct Count(Arc<AtomicUsize>);

    impl<S: Subscriber> Layer<S> for Count {
        fn on_event(&self, _event: &Event<'_>, _cx: Context<'_, S>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A writer into a shared buffer.
    #[derive(Clone, Default)]
    struct Buffer(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_inside_a_traced_request_names_its_trace() {
        use opentelemetry::trace::TracerProvider as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(output(LogFormat::Json, true, move || writer.clone()));
        let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carrier =
            std::collections::HashMap::from([("traceparent".to_owned(), caller.to_owned())]);
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", trace_id = tracing::field::Empty);
            join_trace(&span, Some(extract(&carrier)));
            span.in_scope(|| tracing::warn!("something to say"));
        });
        let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
        let line: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(line["message"], "something to say");
        assert_eq!(
            line["spans"][0]["trace_id"], "0af7651916cd43dd8448eb211c80319c",
            "{line}"
        );
    }

    #[test]
    fn only_the_benign_bridged_messages_are_dropped() {
        // The bridge, as `init_logging`'s `try_init` installs it.
        let _ = tracing_log::LogTracer::init();
        log::set_max_level(log::LevelFilter::Trace);
        let seen = Arc::new(AtomicUsize::new(0));
        let subscriber = tracing_subscriber::registry()
            .with(DropBenign)
            .with(Count(seen.clone()));
        tracing::subscriber::with_default(subscriber, || {
            // Pingora's message through the `log` bridge, and near misses.
            log::error!(target: "pingora_core::connectors", "failed to acquire reusable stream");
            log::error!(target: "pingora_core::connectors", "failed to acquire reusable stream!");
            log::error!(target: "pingora_core::connectors::tls", "failed to acquire reusable stream");
            log::error!(target: "pingora_core::connectors", "TLS handshake failure");
            tracing::error!("failed to acquire reusable stream");
        });
        assert_eq!(seen.load(Ordering::SeqCst), 4);
    }
}
