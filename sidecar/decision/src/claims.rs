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
    /// When the user signed in (OIDC `auth_time`, Unix seconds): how a
    /// policy tells a fresh sign-in from an old one (`@max_age`).
    pub auth_time: Option<i64>,
    /// Who issued the token, its session (`sid`) and its id (`jti`): not
    /// for policies, for refusing what the change feed revoked.
    pub iss: Option<String>,
    pub sid: Option<String>,
    pub jti: Option<String>,
    /// When the token was issued (Unix seconds).
    pub iat: Option<i64>,
}

/// A claim with the wrong JSON type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("claim `{0}` has the wrong type: {1}")]
pub struct ClaimsError(pub &'static str, pub &'static str);

/// One claim as the payload carries it, whatever the carrier: JSON from the
/// gateway or `/v1/check`, a protobuf `Struct` from Envoy's metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimValue<'a> {
    Absent,
    Str(&'a str),
    /// A whole number (a JSON number, or a protobuf double with no
    /// fraction).
    Int(i64),
    /// A list; `None` marks an item that is not a string.
    List(Vec<Option<&'a str>>),
    Other,
}

impl Claims {
    /// Read the claims a decision uses from a JWT payload.
    pub fn from_json(payload: &Map<String, Value>) -> Result<Self, ClaimsError> {
        Self::read(|name| match payload.get(name) {
            None | Some(Value::Null) => ClaimValue::Absent,
            Some(Value::String(s)) => ClaimValue::Str(s),
            Some(Value::Number(n)) => n.as_i64().map_or(ClaimValue::Other, ClaimValue::Int),
            Some(Value::Array(items)) => {
                ClaimValue::List(items.iter().map(Value::as_str).collect())
            }
            Some(_) => ClaimValue::Other,
        })
    }

    /// Read the claims from any carrier, given how to look one up.
    pub fn read<'a>(get: impl Fn(&str) -> ClaimValue<'a>) -> Result<Self, ClaimsError> {
        let client_id = match string(get("client_id"), "client_id")? {
            Some(id) => Some(id),
            None => string(get("azp"), "azp")?,
        };
        let scopes = match get("scope") {
            ClaimValue::Str(s) => s.split_ascii_whitespace().map(str::to_owned).collect(),
            ClaimValue::Absent => list(get("scp"), "scp")?,
            _ => return Err(ClaimsError("scope", "expected a space-separated string")),
        };
        Ok(Self {
            sub: string(get("sub"), "sub")?,
            client_id,
            groups: list(get("groups"), "groups")?,
            roles: list(get("roles"), "roles")?,
            scopes,
            amr: list(get("amr"), "amr")?,
            acr: string(get("acr"), "acr")?,
            auth_time: whole(get("auth_time"), "auth_time")?,
            iss: loose(get("iss")),
            sid: loose(get("sid")),
            jti: loose(get("jti")),
            iat: match get("iat") {
                ClaimValue::Int(n) => Some(n),
                _ => None,
            },
        })
    }
}

/// A claim policies never read: kept when it is a string, else ignored
/// (a numeric `jti` from some issuer is not a reason to refuse its token).
fn loose(value: ClaimValue<'_>) -> Option<String> {
    match value {
        ClaimValue::Str(s) if !s.is_empty() => Some(s.to_owned()),
        _ => None,
    }
}

fn whole(value: ClaimValue<'_>, name: &'static str) -> Result<Option<i64>, ClaimsError> {
    match value {
        ClaimValue::Absent => Ok(None),
        ClaimValue::Int(n) => Ok(Some(n)),
        _ => Err(ClaimsError(name, "expected a whole number")),
    }
}

fn string(value: ClaimValue<'_>, name: &'static str) -> Result<Option<String>, ClaimsError> {
    match value {
        ClaimValue::Absent => Ok(None),
        ClaimValue::Str(s) if !s.is_empty() => Ok(Some(s.to_owned())),
        ClaimValue::Str(_) => Err(ClaimsError(name, "must not be empty")),
        _ => Err(ClaimsError(name, "expected a string")),
    }
}

/// A list of strings, or a single string meaning a one-entry list.
fn list(value: ClaimValue<'_>, name: &'static str) -> Result<Vec<String>, ClaimsError> {
    match value {
        ClaimValue::Absent => Ok(Vec::new()),
        ClaimValue::Str(s) => Ok(vec![s.to_owned()]),
        ClaimValue::List(items) => items
            .into_iter()
            .map(|v| {
                v.map(str::to_owned)
                    .ok_or(ClaimsError(name, "expected a list of strings"))
            })
            .collect(),
        ClaimValue::Int(_) | ClaimValue::Other => {
            Err(ClaimsError(name, "expected a list of strings"))
        }
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
            "groups": ["engineering"], "roles": "auditor", "amr": ["pwd", "mfa"], "acr": "2",
            "auth_time": 1_767_225_000
        }))
        .unwrap();
        assert_eq!(c.auth_time, Some(1_767_225_000));
        assert_eq!(c.sub.as_deref(), Some("alice"));
        assert_eq!(c.client_id.as_deref(), Some("web"));
        assert_eq!(c.scopes, ["openid", "orders:read"]);
        assert_eq!(c.roles, ["auditor"]);
        assert_eq!(c.amr, ["pwd", "mfa"]);
        let c = parse(json!({"iss": "https://id", "sid": "s1", "jti": 7, "iat": 5})).unwrap();
        assert_eq!(
            (c.iss.as_deref(), c.sid.as_deref(), c.jti, c.iat),
            (Some("https://id"), Some("s1"), None, Some(5)),
            "a numeric jti is ignored, not refused"
        );
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
        assert_eq!(
            parse(json!({"auth_time": "yesterday"})),
            Err(ClaimsError("auth_time", "expected a whole number"))
        );
        assert!(parse(json!({"auth_time": 1.5})).is_err());
    }
}
