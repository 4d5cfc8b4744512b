//! Trace context at the edge: a client's `traceparent` is continued (and
//! its sampling decision followed) only when `accept_traceparent` says so;
//! otherwise the gateway starts a trace of its own and the upstream never
//! sees the client's context.

use serde_json::Value;
use testkit::OtlpReceiver;

use crate::support::{Auth, GatewayConfig, Route, echo_upstream, start};

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// A gateway exporting to `receiver`, recording no trace of its own
/// choosing (ratio 0), so whatever is recorded is a caller's decision.
fn traced_gateway(
    receiver: &OtlpReceiver,
    upstream: std::net::SocketAddr,
    accept: bool,
) -> crate::support::Gateway {
    let config = GatewayConfig::new()
        .upstream("demo", &[upstream])
        .route(Route::new("/public", "demo", Auth::Public))
        .table(&format!(
            "[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = 0.0\naccept_traceparent = {accept}\nexport_timeout_ms = 2000",
            receiver.endpoint
        ));
    start(&config.to_toml())
}

/// The `traceparent` and `tracestate` the upstream received for a request
/// sent with `traceparent`.
async fn upstream_saw(
    gateway: std::net::SocketAddr,
    traceparent: &str,
) -> (String, Option<String>) {
    let seen: Value = reqwest::Client::new()
        .get(format!("http://{gateway}/public/x"))
        .header("traceparent", traceparent)
        .header("tracestate", "vendor=client-state")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &seen["headers"];
    (
        headers["traceparent"].as_str().unwrap().to_owned(),
        headers["tracestate"].as_str().map(str::to_owned),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_trace_is_continued_only_when_accepted() {
    let receiver = OtlpReceiver::start();
    let upstream = echo_upstream().await;
    let sampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let unsampled = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-00");

    // Accepted: the client's trace goes on, as the client sampled it.
    let accepting = traced_gateway(&receiver, upstream, true);
    let (parent, state) = upstream_saw(accepting.addr, &sampled).await;
    let parts: Vec<&str> = parent.split('-').collect();
    assert_eq!((parts[1], parts[3]), (CLIENT_TRACE, "01"), "{parent}");
    assert_eq!(state.as_deref(), Some("vendor=client-state"));
    let (parent, _) = upstream_saw(accepting.addr, &unsampled).await;
    assert!(
        parent.starts_with(&format!("00-{CLIENT_TRACE}-")) && parent.ends_with("-00"),
        "{parent}"
    );
    // The recorded request's span is the client's span's child, and the
    // upstream's parent is the gateway's `upstream` span under it.
    let spans = tokio::task::block_in_place(|| {
        receiver.spans_when(|spans| {
            spans.iter().any(|s| s["name"] == "GET /public")
                && spans.iter().any(|s| s["name"] == "upstream")
        })
    });
    assert!(
        spans.iter().all(|s| s["trace_id"] == CLIENT_TRACE),
        "only the sampled request is recorded: {spans:#?}"
    );
    let request = spans.iter().find(|s| s["name"] == "GET /public").unwrap();
    assert_eq!(request["parent_span_id"], CLIENT_SPAN);
    let upstream_span = spans.iter().find(|s| s["name"] == "upstream").unwrap();
    assert_eq!(upstream_span["parent_span_id"], request["span_id"]);
    assert_eq!(parts[2], upstream_span["span_id"].as_str().unwrap());
    assert_eq!(spans.len(), 3, "request, route, upstream: {spans:#?}");

    // Not accepted (the default): a trace of the gateway's own, unsampled
    // at ratio 0, and the client's trace state stays behind.
    let refusing = traced_gateway(&receiver, upstream, false);
    let (parent, state) = upstream_saw(refusing.addr, &sampled).await;
    let parts: Vec<&str> = parent.split('-').collect();
    assert_ne!(parts[1], CLIENT_TRACE, "{parent}");
    assert_eq!(
        parts[3], "00",
        "the client's sampled flag was followed: {parent}"
    );
    assert_eq!(state, None);
}
