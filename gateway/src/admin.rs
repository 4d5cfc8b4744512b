//! The admin listener (default 127.0.0.1:9000): `/healthz`, `/readyz`
//! (ready once every issuer's keys are fetched) and `/metrics`.

use std::sync::Arc;

use async_trait::async_trait;
use http::Response;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use tokens::Verifier;

use crate::metrics::Metrics;

pub struct Admin {
    pub verifier: Option<Arc<Verifier>>,
    pub metrics: Arc<Metrics>,
}

fn reply(status: u16, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut response = Response::new(body);
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = response.body().len();
    response
        .headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    response
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        match session.req_header().uri.path() {
            "/healthz" => reply(200, "text/plain", b"ok".to_vec()),
            "/readyz" => {
                let ready = self.verifier.as_ref().is_none_or(|v| v.ready());
                if ready {
                    reply(200, "text/plain", b"ready".to_vec())
                } else {
                    reply(503, "text/plain", b"issuer keys not fetched yet".to_vec())
                }
            }
            "/metrics" => reply(
                200,
                bootstrap::telemetry::METRICS_CONTENT_TYPE,
                bootstrap::telemetry::render_metrics(&self.metrics.registry).into_bytes(),
            ),
            _ => reply(404, "text/plain", b"not found".to_vec()),
        }
    }
}
