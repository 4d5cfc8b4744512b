//! Distributed tracing through the stack: every service exports to an OTLP
//! receiver built from the official protocol definitions
//! (`testkit::OtlpReceiver`), and one request through the gateway
//! arrives as one trace: the gateway's request span with its phases, the
//! sidecar's decision under the gateway's `decide` phase, the upstream
//! told the `upstream` phase as its parent. The authserver's endpoints
//! come with their database and short-lived-state calls.

use std::collections::HashMap;

use serde_json::Value;
use testkit::OtlpReceiver;

use super::stack::{A_SECOND, GATEWAY, Stack};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const ALLOWED: (u16, &str) = (200, "Allow");

fn in_trace(spans: Vec<Value>, trace: &str) -> Vec<Value> {
    spans
        .into_iter()
        .filter(|s| s["trace_id"] == trace)
        .collect()
}

fn named<'a>(spans: &'a [Value], service: &str, name: &str) -> Option<&'a Value> {
    spans
        .iter()
        .find(|s| s["service"] == service && s["name"] == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn one_request_through_the_stack_is_one_trace() {
    let receiver = OtlpReceiver::start();
    let stack = tokio::task::block_in_place(|| Stack::traced(&receiver.endpoint));
    let staff = stack.group_id("staff").await;
    let tracy = stack.new_user("tracy").await;
    stack.membership(&staff, "add", &tracy).await;
    let token = stack.token("tracy").await;
    stack.until(&token, ALLOWED, A_SECOND).await;

    // A path not asked before, so the gateway's decision cache misses and
    // the sidecar decides; the client's own trace context is not taken.
    let client_parent = format!("00-{CLIENT_TRACE}-00f067aa0ba902b7-01");
    let resp = reqwest::Client::new()
        .get(format!("http://{}/api/orders/42", stack.gateway))
        .bearer_auth(&token)
        .header("traceparent", &client_parent)
        .header("tracestate", "client=secret")
        .header("x-request-id", "trace-test-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    let upstream_parent = seen["headers"]["traceparent"].as_str().unwrap().to_owned();
    assert_eq!(seen["headers"].get("tracestate"), None, "{seen}");
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    let (trace, upstream_span) = (parts[1], parts[2]);
    assert_ne!(trace, CLIENT_TRACE, "a client's trace was continued");
    assert_eq!(parts[3], "01", "sampled at ratio 1: {upstream_parent}");

    let gateway = "portcullis-gateway";
    let sidecar = "portcullis-sidecar";
    let complete = |spans: &[Value]| {
        let spans = in_trace(spans.to_vec(), trace);
        named(&spans, sidecar, "ext_authz Check").is_some()
            && named(&spans, gateway, "GET /api").is_some()
    };
    let spans = in_trace(
        tokio::task::block_in_place(|| receiver.spans_when(complete)),
        trace,
    );
    let request = named(&spans, gateway, "GET /api").unwrap();
    assert_eq!(
        request["parent_span_id"], "",
        "the request span is the root"
    );
    assert_eq!(request["attributes"]["http.response.status_code"], 200);
    let root = request["span_id"].as_str().unwrap();
    let phase = |name: &str| {
        let span = named(&spans, gateway, name).unwrap_or_else(|| panic!("no {name}: {spans:#?}"));
        assert_eq!(span["parent_span_id"], root, "{name} under the request");
        span["span_id"].as_str().unwrap().to_owned()
    };
    for name in ["route", "authenticate"] {
        phase(name);
    }
    let decide = phase("decide");
    assert_eq!(phase("upstream"), upstream_span, "the upstream's parent");
    let check = named(&spans, sidecar, "ext_authz Check").unwrap();
    assert_eq!(
        check["parent_span_id"],
        decide.as_str(),
        "the sidecar under decide"
    );
    assert_eq!(check["attributes"]["decision.allowed"], true);
    let policies = check["attributes"]["decision.policies"].as_str().unwrap();
    assert!(
        policies.contains("viewer"),
        "determining policies: {policies}"
    );
    // Never a credential in a span.
    let text = serde_json::to_string(&spans).unwrap();
    assert!(!text.contains(&token), "a token in a span");

    // The gateway's access log line names the trace.
    let logged = stack
        .process(GATEWAY)
        .stdout()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["request_id"] == "trace-test-1")
        .expect("access log line");
    assert_eq!(logged["trace_id"], trace);

    // The authserver's token endpoint, with its calls to the database and
    // to the short-lived state as children.
    let token_endpoint = |s: &Value| {
        s["service"] == "portcullis-authserver"
            && s["name"] == "POST /token"
            && s["attributes"]["http.response.status_code"] == 200
    };
    let authserver = tokio::task::block_in_place(|| {
        receiver.spans_when(|spans| spans.iter().any(token_endpoint))
    });
    let token_endpoint = authserver.iter().find(|s| token_endpoint(s)).unwrap();
    let children: HashMap<&str, &Value> = authserver
        .iter()
        .filter(|s| s["parent_span_id"] == token_endpoint["span_id"])
        .map(|s| (s["name"].as_str().unwrap(), s))
        .collect();
    assert!(
        children.keys().any(|n| n.starts_with("store.")),
        "database calls: {children:#?}"
    );
    assert!(
        children.keys().any(|n| n.starts_with("ephemeral.")),
        "short-lived state calls: {children:#?}"
    );
}
