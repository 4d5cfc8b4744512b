//! Verified token claims, as the decision contract reads them. Whoever
//! verified the token (the gateway, Envoy's jwt_authn, or the sidecar itself)
//! hands over the payload; only the fields below influence a decision.

use serde_json::{Map, Value};

/// The claims a decision uses, parsed once per request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub sub: Option<String>,
    /// `client_id` (RFC 9068), or `azp` when absent.
    pub client_id: Option<String>,
    pub groups: Vec<String>,
    pub roles: Vec<String>,
    /// `scope` (space-separated) or `scp` (list or string).
    pub scopes: Vec<String>,
    pub amr: Vec<String>,
    pub acr: Option<String>,
}

/// A claim with the wrong JSON type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim `{0}` has the wrong type: {1}")]
pub struct ClaimsError(pub &'static str, pub &'static str);

impl Claims {
    /// Read the claims a decision uses from a JWT payload.
    pub fn from_json(payload: &Map<String, Value>) -> Result<Self, ClaimsError> {
        let client_id = match string(payload, "client_id")? {
            Some(id) => Some(id),
            None => string(payload, "azp")?,
        };
        let scopes = match payload.get("scope") {
            Some(Value::String(s)) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            Some(Value::Null) | None => list(payload, "scp")?,
            Some(_) => return Err(ClaimsError("scope", "expected a space-separated string")),
        };
        Ok(Self {
            sub: string(payload, "sub")?,
            client_id,
            groups: list(payload, "groups")?,
            roles: list(payload, "roles")?,
            scopes,
            amr: list(payload, "amr")?,
            acr: string(payload, "acr")?,
        })
    }
}

fn string(payload: &Map<String, Value>, name: &'static str) -> Result<Option<String>, ClaimsError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(ClaimsError(name, "must not be empty")),
        Some(_) => Err(ClaimsError(name, "expected a string")),
    }
}

/// A list of strings, or a single string meaning a one-entry list.
fn list(payload: &Map<String, Value>, name: &'static str) -> Result<Vec<String>, ClaimsError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or(ClaimsError(name, "expected a list of strings"))
            })
            .collect(),
        Some(_) => Err(ClaimsError(name, "expected a list of strings")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<Claims, ClaimsError> {
        Claims::from_json(v.as_object().unwrap())
    }

    #[test]
    fn reads_rfc9068_and_oidc_shapes() {
        let c = parse(json!({
            "sub": "alice", "client_id": "web", "scope": "openid  orders:read",
            "groups": ["engineering"], "roles": "auditor", "amr": ["pwd", "mfa"], "acr": "2"
        }))
        .unwrap();
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.client_id.as_deref(), Some("web"));
        assert_eq!(c.scopes, ["openid", "orders:read"]);
        assert_eq!(c.roles, ["auditor"]);
        assert_eq!(c.amr, ["pwd", "mfa"]);
        let c = parse(json!({"azp": "svc", "scp": ["a", "b"]})).unwrap();
        assert_eq!(c.client_id.as_deref(), Some("svc"));
        assert_eq!(c.scopes, ["a", "b"]);
    }

    #[test]
    fn wrong_types_are_errors() {
        assert_eq!(
            parse(json!({"sub": 7})),
            Err(ClaimsError("sub", "expected a string"))
        );
        assert!(parse(json!({"groups": [1]})).is_err());
        assert!(parse(json!({"scope": ["x"]})).is_err());
        assert!(parse(json!({"sub": ""})).is_err());
    }
}
