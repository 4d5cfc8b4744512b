//! Trace context on ext_authz: a caller's `traceparent` (gRPC metadata) is
//! continued by default, its sampling decision followed; with
//! `accept_traceparent = false` every check starts a trace of its own.

use testkit::OtlpReceiver;
use tonic::metadata::MetadataValue;

use crate::support::{Sidecar, check_request, configured};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";

/// A sidecar exporting to `receiver` as `service`, with `[tracing]` lines
/// `extra`.
fn traced_sidecar(
    receiver: &OtlpReceiver,
    service: &str,
    extra: &str,
) -> (Sidecar, tempfile::TempDir) {
    configured(&format!(
        "[tracing]\notlp_endpoint = \"{}\"\nexport_timeout_ms = 2000\nservice_name = \"{service}\"\n{extra}\n",
        receiver.endpoint
    ))
}

/// Sends one check carrying the caller's sampled `traceparent`.
async fn check_from_a_traced_caller(sidecar: &Sidecar) {
    let mut request = tonic::Request::new(check_request("GET", "/health", None, None));
    request.metadata_mut().insert(
        "traceparent",
        MetadataValue::try_from(format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01")).unwrap(),
    );
    sidecar.grpc_client().await.check(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callers_trace_is_continued_unless_refused() {
    let receiver = OtlpReceiver::start();
    // The default, at ratio 0: only the caller's decision records the span.
    let (following, _d1) = traced_sidecar(&receiver, "following", "sample_ratio = 0.0");
    check_from_a_traced_caller(&following).await;
    // Refused, at ratio 1: a span in a trace of its own.
    let (refusing, _d2) = traced_sidecar(
        &receiver,
        "refusing",
        "sample_ratio = 1.0\naccept_traceparent = false",
    );
    check_from_a_traced_caller(&refusing).await;

    let span_of = |spans: &[serde_json::Value], service: &str| {
        spans
            .iter()
            .find(|s| s["service"] == service && s["name"] == "ext_authz Check")
            .cloned()
    };
    let spans = tokio::task::block_in_place(|| {
        receiver.spans_when(|spans| {
            span_of(spans, "following").is_some() && span_of(spans, "refusing").is_some()
        })
    });
    let followed = span_of(&spans, "following").unwrap();
    assert_eq!(followed["trace_id"], CALLER_TRACE, "{followed:#}");
    assert_eq!(followed["parent_span_id"], CALLER_SPAN, "{followed:#}");
    let own = span_of(&spans, "refusing").unwrap();
    assert_ne!(own["trace_id"], CALLER_TRACE, "{own:#}");
    assert_eq!(own["parent_span_id"], "", "{own:#}");
}
