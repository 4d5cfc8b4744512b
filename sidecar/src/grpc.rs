//! Envoy ext_authz v3 gRPC (`envoy.service.auth.v3.Authorization/Check`).
//! Envoy and the gateway both speak it: the HTTP attributes of the request,
//! and verified claims in `metadata_context`, come in; allow with the
//! identity headers to set upstream, or a denied response, goes out.

use std::net::IpAddr;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::{
    Address, Authorization, AuthorizationServer, CheckRequest as PbCheckRequest, CheckResponse,
    DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse,
    HttpStatus, OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use envoy_types::pb::google::rpc;
use serde_json::{Map, Value};
use tonic::{Request, Response, Status};

use crate::authn::Authn;
use crate::claims::Claims;
use crate::config::ClaimsConfig;
use crate::engine::Engine;
use crate::ext_authz::{self, Answer, Denial, Question};
use crate::headers;

/// Key in `CheckResponse.dynamic_metadata` naming the policy set (content
/// hash of the directory, entities included) that decided.
pub const POLICY_VERSION: &str = "policy_version";

/// gRPC status codes used in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

#[derive(Debug, Clone)]
pub struct ExtAuthz {
    engine: Arc<Engine>,
    claims: ClaimsConfig,
    authn: Authn,
}

impl ExtAuthz {
    pub fn new(engine: Arc<Engine>, claims: ClaimsConfig, authn: Authn) -> Self {
        Self {
            engine,
            claims,
            authn,
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
        let req = request.into_inner();
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
            claims,
            authorization: http.headers.get("authorization").map(String::as_str),
            sent_owned: http
                .headers
                .keys()
                .map(String::as_str)
                .filter(|h| headers::is_owned(h))
                .collect(),
        };
        let mut response = match ext_authz::answer(&self.engine, &self.authn, question).await {
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
        // Proxies that cache decisions (the gateway) flush when this changes.
        let version = self.engine.snapshot().bundle.version.clone();
        response.dynamic_metadata = Some(Struct {
            fields: [(
                POLICY_VERSION.to_owned(),
                PbValue {
                    kind: Some(Kind::StringValue(version)),
                },
            )]
            .into(),
        });
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

/// The claims straight from the protobuf `Struct`, without building JSON.
fn claims_from_struct(s: &Struct) -> Result<Claims, crate::claims::ClaimsError> {
    use crate::claims::ClaimValue;
    fn text(v: &PbValue) -> Option<&str> {
        match &v.kind {
            Some(Kind::StringValue(s)) => Some(s.as_str()),
            _ => None,
        }
    }
    Claims::read(
        |name| match s.fields.get(name).and_then(|v| v.kind.as_ref()) {
            None | Some(Kind::NullValue(_)) => ClaimValue::Absent,
            Some(Kind::StringValue(v)) => ClaimValue::Str(v),
            Some(Kind::ListValue(l)) => ClaimValue::List(l.values.iter().map(text).collect()),
            Some(_) => ClaimValue::Other,
        },
    )
}

/// A `Check` as a proxy sends it (the gateway; tests): the request's HTTP
/// attributes, and verified claims where jwt_authn puts them by default.
pub fn check_request(
    method: &str,
    path: &str,
    host: &str,
    source: Option<IpAddr>,
    request_id: &str,
    claims: Option<&Map<String, Value>>,
) -> PbCheckRequest {
    use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
    let mut metadata = Metadata::default();
    if let Some(claims) = claims {
        let payload = json_to_struct(&Map::from_iter([(
            crate::config::JWT_PAYLOAD_KEY.to_owned(),
            Value::Object(claims.clone()),
        )]));
        metadata
            .filter_metadata
            .insert(crate::config::JWT_AUTHN_NAMESPACE.into(), payload);
    }
    let source = source.map(|ip| attribute_context::Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.to_string(),
                ..Default::default()
            })),
        }),
        ..Default::default()
    });
    PbCheckRequest {
        attributes: Some(AttributeContext {
            source,
            request: Some(attribute_context::Request {
                http: Some(attribute_context::HttpRequest {
                    id: request_id.to_owned(),
                    method: method.to_owned(),
                    path: path.to_owned(),
                    host: host.to_owned(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            metadata_context: Some(metadata),
            ..Default::default()
        }),
    }
}

/// JSON claims as a protobuf `Struct`, for clients (the gateway, tests).
pub fn json_to_struct(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map
            .iter()
            .map(|(k, v)| (k.clone(), json_to_value(v)))
            .collect(),
    }
}

fn json_to_value(v: &Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(a) => Kind::ListValue(envoy_types::pb::google::protobuf::ListValue {
            values: a.iter().map(json_to_value).collect(),
        }),
        Value::Object(o) => Kind::StructValue(json_to_struct(o)),
    };
    PbValue { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn claims_from_envoy_metadata_read_like_json_claims() {
        let payload = json!({
            "sub": "zoe", "azp": "web", "scope": "openid orders:read",
            "groups": ["staff"], "roles": "viewer", "amr": ["pwd", "mfa"], "acr": "2",
            "exp": 1_900_000_000, "nested": {"x": [1, true]}
        });
        let map = payload.as_object().unwrap();
        assert_eq!(
            claims_from_struct(&json_to_struct(map)).unwrap(),
            Claims::from_json(map).unwrap()
        );
        for (claim, bad) in [
            ("groups", json!(["ok", 3])),
            ("sub", json!(7)),
            ("scope", json!(["a"])),
        ] {
            let mut m = map.clone();
            m.insert(claim.into(), bad);
            let err = claims_from_struct(&json_to_struct(&m)).unwrap_err();
            assert_eq!(err.0, claim);
            assert_eq!(err, Claims::from_json(&m).unwrap_err());
        }
    }
}
