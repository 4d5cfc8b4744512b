//! Envoy's ext_authz v3 messages as the decision contract reads and writes
//! them: a proxy (the gateway, tests) builds its `Check` here, the sidecar
//! reads the claims out of one here. Messages only; no transport.

use std::net::IpAddr;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use envoy_types::pb::google::protobuf::{Struct, Value as PbValue, value::Kind};
use serde_json::{Map, Value};

use crate::claims::{ClaimValue, Claims, ClaimsError};

/// Key in `CheckResponse.dynamic_metadata` naming the policy set (content
/// hash of the directory, entities included) that decided.
pub const POLICY_VERSION: &str = "policy_version";

/// Key in `CheckResponse.dynamic_metadata`: the change feed's cursor the
/// deciding directory reflected (a number; absent without a feed).
pub const FEED_CURSOR: &str = "feed_cursor";

/// Where Envoy's jwt_authn filter puts a verified payload (with
/// `payload_in_metadata: jwt_payload`): the default place claims are read.
pub const JWT_AUTHN_NAMESPACE: &str = "envoy.filters.http.jwt_authn";
pub const JWT_PAYLOAD_KEY: &str = "jwt_payload";

/// The claims straight from the protobuf `Struct`, without building JSON.
pub fn claims_from_struct(s: &Struct) -> Result<Claims, ClaimsError> {
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
            // jwt_authn turns JSON numbers into doubles.
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 =>
            {
                #[expect(clippy::cast_possible_truncation, reason = "whole and within 2^53")]
                ClaimValue::Int(*n as i64)
            }
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
) -> CheckRequest {
    use envoy_types::pb::envoy::config::core::v3::{Address, Metadata, SocketAddress, address};
    use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, attribute_context};
    let mut metadata = Metadata::default();
    if let Some(claims) = claims {
        let payload = json_to_struct(&Map::from_iter([(
            JWT_PAYLOAD_KEY.to_owned(),
            Value::Object(claims.clone()),
        )]));
        metadata
            .filter_metadata
            .insert(JWT_AUTHN_NAMESPACE.into(), payload);
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
    CheckRequest {
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
            "auth_time": 1_899_990_000, "exp": 1_900_000_000, "nested": {"x": [1, true]}
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
            ("auth_time", json!(12.5)),
        ] {
            let mut m = map.clone();
            m.insert(claim.into(), bad);
            let err = claims_from_struct(&json_to_struct(&m)).unwrap_err();
            assert_eq!(err.0, claim);
            assert_eq!(err, Claims::from_json(&m).unwrap_err());
        }
    }
}
