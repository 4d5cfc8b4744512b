//! Distributed tracing: OpenTelemetry spans exported over OTLP/gRPC when a
//! collector is configured (off by default), sampled by trace id with a
//! caller's decision followed, and W3C trace context (`traceparent`) read
//! and written.
//!
//! The SDK exports from a thread of its own, where the gRPC client finds no
//! Tokio reactor; the exporter here carries a one-thread runtime for it.

use std::collections::BTreeMap;
use std::time::Duration;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider, SpanData, SpanExporter};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::ConfigError;

/// `[tracing]` of every service.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TracingConfig {
    /// The OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. None: no
    /// spans are made or sent.
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded, by trace id. A trace a caller
    /// started keeps the caller's decision. 1% by default, as Istio's
    /// default: at an edge's rates, hundreds of traces a second per pod.
    pub sample_ratio: f64,
    /// `service.name`; the service's own name when unset.
    pub service_name: Option<String>,
    /// More resource attributes, e.g. `deployment.environment`.
    pub resource: BTreeMap<String, String>,
    /// Whether a caller's `traceparent` continues its trace. Off, a caller
    /// cannot choose the trace (or the sampling) of what it sends: a new
    /// trace starts. Unset, each service's own default (see
    /// [`TracingConfig::accepts_traceparent`]).
    pub accept_traceparent: Option<bool>,
    /// How long one export may take.
    pub export_timeout_ms: u64,
}

impl Default for TracingConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            sample_ratio: 0.01,
            service_name: None,
            resource: BTreeMap::new(),
            accept_traceparent: None,
            export_timeout_ms: 10_000,
        }
    }
}

impl TracingConfig {
    /// `accept_traceparent`, or `by_default` when unset: off where clients
    /// call (the gateway, the authserver), on in the sidecar, whose callers
    /// are the gateway or Envoy in its own pod.
    pub fn accepts_traceparent(&self, by_default: bool) -> bool {
        self.accept_traceparent.unwrap_or(by_default)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(ConfigError::invalid(
                "tracing.sample_ratio",
                format!("{} is not between 0 and 1", self.sample_ratio),
            ));
        }
        if let Some(url) = &self.otlp_endpoint
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(ConfigError::invalid(
                "tracing.otlp_endpoint",
                format!("{url:?} is not an http:// or https:// URL"),
            ));
        }
        if self.export_timeout_ms == 0 {
            return Err(ConfigError::invalid(
                "tracing.export_timeout_ms",
                "must be more than 0",
            ));
        }
        Ok(())
    }
}

/// A running exporter. Dropping it sends what is still buffered.
pub struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

#[derive(Debug, thiserror::Error)]
pub enum TracingError {
    #[error("tracing: cannot start the export runtime: {0}")]
    Runtime(std::io::Error),
    #[error("tracing.otlp_endpoint: {0}")]
    Exporter(String),
}

impl Tracing {
    /// Starts exporting as configured; `None` when no endpoint is set.
    /// `service` names the service unless `service_name` does.
    pub fn start(config: &TracingConfig, service: &str) -> Result<Option<Self>, TracingError> {
        let Some(endpoint) = &config.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = Exporter::new(endpoint, Duration::from_millis(config.export_timeout_ms))?;
        let resource = Resource::builder()
            .with_service_name(config.service_name.clone().unwrap_or(service.to_owned()))
            .with_attributes(
                config
                    .resource
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
            )
            .build();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource)
            .with_batch_exporter(exporter)
            .build();
        let tracer = provider.tracer("portcullis");
        Ok(Some(Self { provider, tracer }))
    }

    pub fn tracer(&self) -> &SdkTracer {
        &self.tracer
    }
}

impl Drop for Tracing {
    fn drop(&mut self) {
        // Flushes the batch; a collector that is gone costs the timeout.
        let _ = self.provider.shutdown();
    }
}

/// The OTLP/gRPC exporter with the runtime its client needs.
#[derive(Debug)]
struct Exporter {
    inner: opentelemetry_otlp::SpanExporter,
    runtime: tokio::runtime::Runtime,
}

impl Exporter {
    fn new(endpoint: &str, timeout: Duration) -> Result<Self, TracingError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("otlp")
            .enable_all()
            .build()
            .map_err(TracingError::Runtime)?;
        // The channel's connection task lives on the runtime that made it.
        let inner = {
            let _entered = runtime.enter();
            opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .with_timeout(timeout)
                .build()
                .map_err(|e| TracingError::Exporter(e.to_string()))?
        };
        Ok(Self { inner, runtime })
    }
}

impl SpanExporter for Exporter {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        // Called on the SDK's export thread, outside any runtime.
        std::future::ready(self.runtime.block_on(self.inner.export(batch)))
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The trace context a caller sent in `carrier`, when it names one.
pub fn extract(carrier: &dyn Extractor) -> Context {
    TraceContextPropagator::new().extract(carrier)
}

/// Writes `cx`'s span as `traceparent` (and `tracestate`) into `carrier`.
pub fn inject(cx: &Context, carrier: &mut dyn Injector) {
    TraceContextPropagator::new().inject_context(cx, carrier);
}

/// HTTP headers as a carrier of trace context.
pub struct Headers<'a>(pub &'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The W3C `traceparent` of a span, as a header value: `00-trace-span-flags`.
pub fn traceparent(span: &opentelemetry::trace::SpanContext) -> String {
    format!(
        "00-{}-{}-{:02x}",
        span.trace_id(),
        span.span_id(),
        span.trace_flags().to_u8()
    )
}

/// Puts `span`, a server span declaring a `trace_id` field, in `parent`'s
/// trace when there is one, and records its trace id there: every log
/// line inside it names the trace.
pub fn join_trace(span: &tracing::Span, parent: Option<Context>) {
    if let Some(parent) = parent {
        let _ = span.set_parent(parent);
    }
    if let Some(id) = trace_id(&span.context()) {
        span.record("trace_id", id);
    }
}

/// The trace id of the span in `cx`, for logs; none without a valid span.
pub fn trace_id(cx: &Context) -> Option<String> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn refuses_a_ratio_outside_zero_to_one_and_a_non_http_endpoint() {
        let bad_ratio = TracingConfig {
            sample_ratio: 1.5,
            ..TracingConfig::default()
        };
        let e = bad_ratio.validate().unwrap_err().to_string();
        assert!(e.contains("tracing.sample_ratio"), "{e}");
        let bad_url = TracingConfig {
            otlp_endpoint: Some("127.0.0.1:4317".into()),
            ..TracingConfig::default()
        };
        let e = bad_url.validate().unwrap_err().to_string();
        assert!(e.contains("tracing.otlp_endpoint"), "{e}");
        assert!(TracingConfig::default().validate().is_ok());
    }

    #[test]
    fn a_caller_traceparent_round_trips_and_garbage_is_no_parent() {
        let sent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carrier = HashMap::from([("traceparent".to_owned(), sent.to_owned())]);
        let cx = extract(&carrier);
        assert_eq!(
            trace_id(&cx).as_deref(),
            Some("0af7651916cd43dd8448eb211c80319c")
        );
        assert_eq!(traceparent(cx.span().span_context()), sent);
        let mut out = HashMap::new();
        inject(&cx, &mut out);
        assert_eq!(out.get("traceparent").map(String::as_str), Some(sent));
        let garbage = HashMap::from([("traceparent".to_owned(), "00-zz-yy-01".to_owned())]);
        assert_eq!(trace_id(&extract(&garbage)), None);
    }

    #[test]
    fn no_endpoint_means_no_exporter() {
        assert!(
            Tracing::start(&TracingConfig::default(), "test")
                .unwrap()
                .is_none()
        );
    }
}
