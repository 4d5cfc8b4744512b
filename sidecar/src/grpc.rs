//! Envoy ext_authz v3 gRPC (`envoy.service.auth.v3.Authorization/Check`).
//! Envoy and the gateway both speak it: the HTTP attributes of the request,
//! and verified claims in `metadata_context`, come in; allow with the
//! identity headers to set upstream, or a denied response, goes out.

use std::net::IpAddr;
use std::sync::Arc;

use decision::Engine;
use decision::envoy::{FEED_CURSOR, POLICY_VERSION, claims_from_struct};
use decision::ext_authz::{self, Answer, Denial, Question};
use decision::headers;
use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest as PbCheckRequest, CheckResponse,
    DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse,
    HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use envoy_types::pb::google::rpc;
use opentelemetry::propagation::Extractor;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::authn::Authn;
use crate::config::ClaimsConfig;

/// gRPC status codes used in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

#[derive(Debug, Clone)]
pub struct ExtAuthz {
    engine: Arc<Engine>,
    claims: ClaimsConfig,
    authn: Authn,
    spans: Spans,
}

/// Whether each check gets a span, and in whose trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spans {
    /// Tracing is off.
    None,
    /// A trace of the sidecar's own (`accept_traceparent = false`).
    NewTrace,
    /// The caller's trace, when its metadata names one (the default: the
    /// caller is the gateway or Envoy in this pod).
    CallersTrace,
}

impl Spans {
    pub fn of(config: &bootstrap::telemetry::TracingConfig) -> Self {
        match (
            config.otlp_endpoint.is_some(),
            config.accepts_traceparent(true),
        ) {
            (false, _) => Self::None,
            (true, false) => Self::NewTrace,
            (true, true) => Self::CallersTrace,
        }
    }
}

impl ExtAuthz {
    pub fn new(engine: Arc<Engine>, claims: ClaimsConfig, authn: Authn, spans: Spans) -> Self {
        Self {
            engine,
            claims,
            authn,
            spans,
        }
    }

    pub fn into_service(self) -> AuthorizationServer<Self> {
        AuthorizationServer::new(self)
    }
}

#[tonic::async_trait]
impl Authorization for ExtAuthz {
    async fn check(
        &self,
        request: Request<PbCheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        if self.spans == Spans::None {
            return self.decide(request.into_inner()).await;
        }
        let span = tracing::info_span!(
            "sidecar.decide",
            otel.name = "ext_authz Check",
            otel.kind = "server",
            decision.allowed = tracing::field::Empty,
            decision.policies = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        let parent = (self.spans == Spans::CallersTrace)
            .then(|| bootstrap::telemetry::extract(&Metadata(request.metadata())));
        bootstrap::telemetry::join_trace(&span, parent);
        self.decide(request.into_inner()).instrument(span).await
    }
}

/// gRPC metadata as a carrier of trace context.
struct Metadata<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for Metadata<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

impl ExtAuthz {
    async fn decide(&self, req: PbCheckRequest) -> Result<Response<CheckResponse>, Status> {
        let attrs = req
            .attributes
            .as_ref()
            .ok_or_else(|| Status::invalid_argument("`attributes` is required"))?;
        let http = attrs
            .request
            .as_ref()
            .and_then(|r| r.http.as_ref())
            .ok_or_else(|| Status::invalid_argument("`attributes.request.http` is required"))?;
        if http.method.is_empty() || http.path.is_empty() {
            return Err(Status::invalid_argument(
                "`attributes.request.http` needs `method` and `path`",
            ));
        }
        let payload = attrs
            .metadata_context
            .as_ref()
            .and_then(|m| m.filter_metadata.get(&self.claims.metadata_namespace))
            .and_then(|s| s.fields.get(&self.claims.metadata_key));
        let claims = match payload.and_then(|v| v.kind.as_ref()) {
            None => None,
            Some(Kind::StructValue(s)) => Some(
                claims_from_struct(s)
                    .map_err(|e| Status::invalid_argument(format!("claims in metadata: {e}")))?,
            ),
            Some(_) => {
                return Err(Status::invalid_argument(format!(
                    "metadata `{}`.`{}` must be a struct of claims",
                    self.claims.metadata_namespace, self.claims.metadata_key
                )));
            }
        };
        let request_id = (!http.id.is_empty())
            .then_some(http.id.as_str())
            .or_else(|| http.headers.get("x-request-id").map(String::as_str));
        let source = attrs
            .source
            .as_ref()
            .and_then(|p| p.address.as_ref())
            .and_then(|a| a.address.as_ref())
            .and_then(|a| match a {
                Address::SocketAddress(s) => s.address.parse::<IpAddr>().ok(),
                _ => None,
            });
        let question = Question {
            method: &http.method,
            path: &http.path,
            host: (!http.host.is_empty()).then_some(http.host.as_str()),
            source,
            request_id,
            sent_owned: http
                .headers
                .keys()
                .map(String::as_str)
                .filter(|h| headers::is_owned(h))
                .collect(),
        };
        let identity = self
            .authn
            .identify(
                claims,
                http.headers.get("authorization").map(String::as_str),
            )
            .await;
        // Read before deciding: the directory decided with is at least
        // this current.
        let cursor = self.engine.feed_cursor();
        let mut response = match ext_authz::answer(&self.engine, identity, question) {
            Answer::Allow { set, remove } => CheckResponse {
                status: Some(rpc::Status {
                    code: OK,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                    headers: set
                        .into_iter()
                        .map(|(key, value)| header(key, value))
                        .collect(),
                    headers_to_remove: remove,
                    ..Default::default()
                })),
                ..Default::default()
            },
            Answer::Deny(denial) => denied(denial),
        };
        // Proxies that cache decisions (the gateway) flush when the version
        // changes, and reuse none made before a feed change they know of.
        let version = self.engine.snapshot().bundle.version.clone();
        let mut fields: std::collections::HashMap<String, PbValue> = [(
            POLICY_VERSION.to_owned(),
            PbValue {
                kind: Some(Kind::StringValue(version)),
            },
        )]
        .into();
        if cursor > 0 {
            #[expect(clippy::cast_precision_loss, reason = "cursors stay below 2^53")]
            let number = cursor as f64;
            fields.insert(
                FEED_CURSOR.to_owned(),
                PbValue {
                    kind: Some(Kind::NumberValue(number)),
                },
            );
        }
        response.dynamic_metadata = Some(Struct { fields });
        Ok(Response::new(response))
    }
}

/// An upstream header set over any value the client sent.
fn header(key: &str, value: String) -> HeaderValueOption {
    #[expect(
        deprecated,
        reason = "prost still generates the deprecated `append` field"
    )]
    HeaderValueOption {
        header: Some(HeaderValue {
            key: key.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append: None,
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        keep_empty_value: false,
    }
}

fn denied(denial: Denial) -> CheckResponse {
    let mut headers = vec![header("content-type", "application/json".into())];
    if let Some(challenge) = denial.challenge {
        headers.push(header("www-authenticate", challenge));
    }
    let grpc = if denial.status == 401 {
        UNAUTHENTICATED
    } else {
        PERMISSION_DENIED
    };
    CheckResponse {
        status: Some(rpc::Status {
            code: grpc,
            message: denial.error.to_owned(),
            ..Default::default()
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: i32::from(denial.status),
            }),
            headers,
            body: denial.body,
        })),
        ..Default::default()
    }
}
