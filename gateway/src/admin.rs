//! The admin listener (default 127.0.0.1:9000): `/healthz`, `/readyz`
//! (ready once every issuer's keys are fetched and the change feed, when
//! followed, is not stale where it fails closed; JSON) and `/metrics`.

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
    pub feed: Option<feed::Running>,
    /// The embedded engine, whose directory `/readyz` counts.
    pub engine: Option<Arc<decision::Engine>>,
}

impl Admin {
    /// `/readyz`: the status and a JSON body saying what is (not) ready.
    fn readiness(&self) -> (u16, serde_json::Value) {
        let keys = self.verifier.as_ref().is_none_or(|v| v.ready());
        let mut body = serde_json::json!({"issuer_keys": keys});
        let mut ready = keys;
        if let Some(feed) = &self.feed {
            let (fed, mut detail) = feed.readiness();
            if let Some(engine) = &self.engine {
                let dir = engine.directory();
                detail["users"] = dir.users().into();
                detail["groups"] = dir.groups().into();
            }
            body["feed"] = detail;
            ready &= fed;
        }
        body["status"] = if ready { "ready" } else { "not_ready" }.into();
        (if ready { 200 } else { 503 }, body)
    }
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
                let (status, body) = self.readiness();
                reply(status, "application/json", body.to_string().into_bytes())
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
