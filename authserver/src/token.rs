//! JWT access tokens (RFC 9068): what they carry, signing them, and reading
//! back our own for introspection.

use jsonwebtoken::{Validation, decode, decode_header};
use serde::{Deserialize, Serialize};

use crate::keys::Published;

/// The `typ` header of access tokens (RFC 9068 §2.1).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// Claims of an access token. `groups` and `roles` are there for policy
/// (the sidecar's principal parents); `acr`/`amr`/`auth_time` for step-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// The browser session the sign-in made (OIDC `sid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acr: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

/// Reads an access token this server signed with a key it still publishes,
/// unexpired at `now`. Anything else is `None`: introspection says only
/// "inactive", never why.
pub fn read_own(
    published: &Published,
    issuer: &str,
    token: &str,
    now: i64,
) -> Option<AccessClaims> {
    let claims: AccessClaims = read_signed(
        published,
        issuer,
        token,
        |typ| typ == Some(ACCESS_TOKEN_TYP),
        &["exp", "iss", "sub"],
    )?;
    (claims.exp > now).then_some(claims)
}

/// The `sub` and `aud` of an ID token this server signed, expired or not:
/// an `id_token_hint` at logout names who and which client, nothing more.
pub fn read_id_token_hint(
    published: &Published,
    issuer: &str,
    token: &str,
) -> Option<(String, String)> {
    #[derive(Deserialize)]
    struct Hint {
        sub: String,
        aud: String,
    }
    // Only an ID token (`typ` JWT, or none): not an access token, not a
    // logout token, whoever holds it.
    let hint: Hint = read_signed(
        published,
        issuer,
        token,
        |typ| typ.is_none_or(|t| t.eq_ignore_ascii_case("JWT")),
        &["iss", "sub", "aud"],
    )?;
    Some((hint.sub, hint.aud))
}

/// The claims of a JWS signed here with a published key whose algorithm
/// the header names, with an acceptable `typ`, from this issuer. Expiry is
/// the caller's business.
fn read_signed<T: serde::de::DeserializeOwned>(
    published: &Published,
    issuer: &str,
    token: &str,
    typ_ok: impl Fn(Option<&str>) -> bool,
    required: &[&str],
) -> Option<T> {
    let header = decode_header(token).ok()?;
    if !typ_ok(header.typ.as_deref()) {
        return None;
    }
    let (alg, key) = published.verifier(header.kid.as_deref()?)?;
    if header.alg != *alg {
        return None;
    }
    let mut validation = Validation::new(*alg);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.validate_exp = false;
    validation.set_required_spec_claims(required);
    decode::<T>(token, key, &validation).ok().map(|d| d.claims)
}
