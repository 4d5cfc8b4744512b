//! The demo upstream (`gateway echo`): an app with no auth code of its own
//! that answers every request with what it received, so the identity
//! headers the gateway adds can be seen. An HTTP/1.1 `Upgrade` request
//! (WebSocket) is accepted with 101 and the raw bytes are echoed back.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri, header};
use serde_json::{Map, Value, json};

/// Bodies larger than this are refused (413): it is a demo.
const MAX_BODY: usize = 1 << 20;

/// The app; `served_by` (its own address) is in every answer, so load
/// balancing can be seen.
pub fn router(served_by: String) -> axum::Router {
    axum::Router::new()
        .fallback(echo)
        .with_state(std::sync::Arc::<str>::from(served_by))
}

/// Serve until the listener fails.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let served_by = listener.local_addr()?.to_string();
    axum::serve(listener, router(served_by)).await
}

async fn echo(
    axum::extract::State(served_by): axum::extract::State<std::sync::Arc<str>>,
    mut request: Request<Body>,
) -> Response<Body> {
    if request.headers().contains_key(header::UPGRADE) {
        return upgrade(&mut request);
    }
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return json_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": "payload_too_large", "message": "the echo app reads at most 1 MiB"}),
            );
        }
    };
    let mut seen = describe(&parts.method, &parts.uri, &parts.headers, &body);
    seen["served_by"] = Value::String(served_by.to_string());
    json_response(StatusCode::OK, &seen)
}

fn describe(method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Value {
    let mut seen = Map::new();
    for (name, value) in headers {
        let value = Value::String(String::from_utf8_lossy(value.as_bytes()).into_owned());
        match seen.get_mut(name.as_str()) {
            // Repeated headers are joined as a proxy would fold them.
            Some(Value::String(prev)) => {
                prev.push_str(", ");
                prev.push_str(value.as_str().unwrap_or_default());
            }
            _ => {
                seen.insert(name.as_str().to_owned(), value);
            }
        }
    }
    json!({
        "method": method.as_str(),
        "path": uri.path(),
        "query": uri.query(),
        "headers": seen,
        "body": String::from_utf8_lossy(body),
    })
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// 101, then whatever the client sends comes back.
fn upgrade(request: &mut Request<Body>) -> Response<Body> {
    let protocol = request.headers().get(header::UPGRADE).cloned();
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return json_response(
            StatusCode::BAD_REQUEST,
            &json!({"error": "bad_request", "message": "this connection cannot be upgraded"}),
        );
    };
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let mut io = hyper_util::rt::TokioIo::new(upgraded);
            let (mut reader, mut writer) = tokio::io::split(&mut io);
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("upgrade"),
    );
    if let Some(p) = protocol {
        headers.insert(header::UPGRADE, p);
    }
    response
}
