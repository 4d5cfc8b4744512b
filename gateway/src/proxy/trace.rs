//! A request's trace, with tracing on: a server span for the whole request
//! and one child per phase (route, authenticate, decide, upstream), each
//! ended when the next begins. The sidecar and the upstream are told the
//! phase that calls them; a request the sampler dropped costs its ids only,
//! which still go on so every hop logs the same trace id.

use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceId, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SdkTracer, Span};

/// The phases a request goes through, as its spans are named.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    Route,
    Authenticate,
    Decide,
    Upstream,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Route => "route",
            Self::Authenticate => "authenticate",
            Self::Decide => "decide",
            Self::Upstream => "upstream",
        }
    }

    fn kind(self) -> SpanKind {
        match self {
            Self::Decide | Self::Upstream => SpanKind::Client,
            Self::Route | Self::Authenticate => SpanKind::Internal,
        }
    }
}

pub(super) struct Trace {
    /// The request span's ids, whatever the sampler said.
    ids: SpanContext,
    /// A sampled request's spans.
    recorded: Option<Recorded>,
}

struct Recorded {
    /// The request's span, as the context its phases start from.
    request: Context,
    /// The phase in progress.
    phase: Option<(Phase, Span)>,
}

impl Trace {
    /// The request's span: in the caller's trace when `parent` holds one
    /// (and the gateway accepts callers' trace context), else a new trace.
    pub(super) fn start(tracer: &SdkTracer, parent: &Context, method: &str) -> Self {
        let mut span = tracer
            .span_builder("request")
            .with_kind(SpanKind::Server)
            .start_with_context(tracer, parent);
        let ids = span.span_context().clone();
        // Only a recorded span is worth naming, or keeping.
        let recorded = span.is_recording().then(|| {
            span.update_name(method.to_owned());
            span.set_attribute(KeyValue::new("http.request.method", method.to_owned()));
            Recorded {
                request: Context::new().with_span(span),
                phase: None,
            }
        });
        Self { ids, recorded }
    }

    /// Ends the phase in progress and starts `phase`.
    pub(super) fn enter(&mut self, tracer: &SdkTracer, phase: Phase) {
        self.leave();
        if let Some(recorded) = &mut self.recorded {
            let span = tracer
                .span_builder(phase.name())
                .with_kind(phase.kind())
                .start_with_context(tracer, &recorded.request);
            recorded.phase = Some((phase, span));
        }
    }

    /// Ends the phase in progress, if any.
    pub(super) fn leave(&mut self) {
        if let Some((_, mut span)) = self.recorded.as_mut().and_then(|r| r.phase.take()) {
            span.end();
        }
    }

    /// Ends the route phase with what it found: the route, which names
    /// the request's span.
    pub(super) fn routed(&mut self, method: &str, route: &str) {
        self.leave();
        if let Some(recorded) = &self.recorded {
            let span = recorded.request.span();
            span.update_name(format!("{method} {route}"));
            span.set_attribute(KeyValue::new("http.route", route.to_owned()));
        }
    }

    /// `traceparent` for whoever `phase` calls: that phase's span when
    /// sampled, else the request's (flagged unsampled).
    pub(super) fn traceparent(&self, phase: Phase) -> String {
        let current = self.recorded.as_ref().and_then(|r| r.phase.as_ref());
        match current {
            Some((p, span)) if *p == phase => {
                bootstrap::telemetry::traceparent(span.span_context())
            }
            _ => bootstrap::telemetry::traceparent(&self.ids),
        }
    }

    pub(super) fn trace_id(&self) -> TraceId {
        self.ids.trace_id()
    }

    /// Ends the request's span with the status the client got.
    pub(super) fn finish(&mut self, status: u16) {
        self.leave();
        if let Some(recorded) = &self.recorded {
            let span = recorded.request.span();
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 || status == 0 {
                span.set_status(Status::error(""));
            }
            span.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, SpanData, SpanExporter};
    use std::sync::{Arc, Mutex};

    /// Keeps what is exported.
    #[derive(Debug, Clone, Default)]
    struct Kept(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Kept {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    impl Kept {
        fn get_finished_spans(&self) -> Result<Vec<SpanData>, ()> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn tracer(ratio: f64) -> (SdkTracerProvider, SdkTracer, Kept) {
        let exporter = Kept::default();
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                ratio,
            ))))
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("test");
        (provider, tracer, exporter)
    }

    #[test]
    fn phases_are_children_of_the_request_and_the_callee_gets_its_phase() {
        let (_provider, tracer, exporter) = tracer(1.0);
        let mut trace = Trace::start(&tracer, &Context::new(), "GET");
        trace.enter(&tracer, Phase::Route);
        trace.routed("GET", "/api");
        trace.enter(&tracer, Phase::Decide);
        let sent = trace.traceparent(Phase::Decide);
        trace.enter(&tracer, Phase::Upstream);
        trace.finish(200);
        let spans = exporter.get_finished_spans().unwrap();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["route", "decide", "upstream", "GET /api"]);
        let request = &spans[3];
        for child in &spans[..3] {
            assert_eq!(child.parent_span_id, request.span_context.span_id());
            assert_eq!(
                child.span_context.trace_id(),
                request.span_context.trace_id()
            );
        }
        let decide = &spans[1].span_context;
        assert_eq!(
            sent,
            format!("00-{}-{}-01", decide.trace_id(), decide.span_id())
        );
    }

    #[test]
    fn an_unsampled_request_makes_no_spans_but_passes_its_ids_on() {
        let (_provider, tracer, exporter) = tracer(0.0);
        let mut trace = Trace::start(&tracer, &Context::new(), "GET");
        trace.enter(&tracer, Phase::Upstream);
        let sent = trace.traceparent(Phase::Upstream);
        let ids = trace.ids.clone();
        trace.finish(200);
        assert!(exporter.get_finished_spans().unwrap().is_empty());
        assert!(ids.is_valid());
        assert_eq!(sent, format!("00-{}-{}-00", ids.trace_id(), ids.span_id()));
    }

    #[test]
    fn a_sampled_caller_is_followed_whatever_the_ratio() {
        let (_provider, tracer, exporter) = tracer(0.0);
        let caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let carrier =
            std::collections::HashMap::from([("traceparent".to_owned(), caller.to_owned())]);
        let parent = bootstrap::telemetry::extract(&carrier);
        let mut trace = Trace::start(&tracer, &parent, "POST");
        trace.finish(503);
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(
            spans[0].span_context.trace_id().to_string(),
            "0af7651916cd43dd8448eb211c80319c"
        );
        assert_eq!(spans[0].parent_span_id.to_string(), "b7ad6b7169203331");
        assert!(matches!(spans[0].status, Status::Error { .. }));
    }
}
