//! A verified token, and the claim rules JWTs and introspection answers
//! share: audience, time claims, subject qualification.

use serde_json::{Map, Value};

use crate::error::TokenError;

/// A token that passed every rule.
#[derive(Debug, Clone)]
pub struct Verified {
    /// The payload, as issued, its subjects qualified with the issuer's
    /// `subject_prefix` when it has one.
    pub claims: Map<String, Value>,
    /// Until when this verification may be relied on, in seconds since the
    /// epoch: the token's `exp`, or sooner for an introspected token (its
    /// issuer is asked again then).
    pub expires_at: u64,
    pub(crate) leeway: u64,
}

/// Claims naming who a token is for or from, and the groups and roles it
/// puts them in: all of them are the issuer's names.
const QUALIFIED_CLAIMS: [&str; 5] = ["sub", "client_id", "azp", "groups", "roles"];

/// Qualify a verified payload's names with its issuer's prefix: one
/// issuer's `bob` is not another's, and neither is its `admin` role.
pub fn qualify(claims: &mut Map<String, Value>, prefix: Option<&str>) {
    let Some(prefix) = prefix else {
        return;
    };
    for name in QUALIFIED_CLAIMS {
        match claims.get_mut(name) {
            Some(Value::String(s)) => s.insert_str(0, prefix),
            Some(Value::Array(items)) => {
                for item in items {
                    if let Value::String(s) = item {
                        s.insert_str(0, prefix);
                    }
                }
            }
            _ => {}
        }
    }
}

/// An `aud` (a string or a list) naming one of `accepted`.
pub(crate) fn audience_ok(aud: Option<&Value>, accepted: &[String]) -> bool {
    match aud {
        Some(Value::String(a)) => accepted.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .any(|a| a.as_str().is_some_and(|a| accepted.iter().any(|c| c == a))),
        _ => false,
    }
}

/// A NumericDate claim: a non-negative number of seconds (fractions dropped).
pub(crate) fn seconds(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<u64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or(TokenError::BadClaim(name)),
        Some(_) => Err(TokenError::BadClaim(name)),
    }
}

/// Unix seconds, from the one clock (`bootstrap::clock`).
pub(crate) fn now() -> u64 {
    u64::try_from(bootstrap::clock::unix_seconds()).unwrap_or(0)
}
