//! Identity headers the sidecar tells a proxy to set upstream on an allow.
//! The same names are always removed first, so a client can never smuggle
//! its own `x-auth-subject` past Envoy.

use crate::claims::Claims;

pub const SUBJECT: &str = "x-auth-subject";
pub const CLIENT_ID: &str = "x-auth-client-id";
pub const SCOPES: &str = "x-auth-scopes";
pub const GROUPS: &str = "x-auth-groups";
pub const ROLES: &str = "x-auth-roles";

/// Every header the sidecar sets.
pub const OWNED: [&str; 5] = [SUBJECT, CLIENT_ID, SCOPES, GROUPS, ROLES];

/// Headers under this prefix are owned by the proxy tier: whatever a client
/// sends under it is removed upstream, names we do not set included (as the
/// gateway does).
pub const OWNED_PREFIX: &str = "x-auth-";

/// Under the owned prefix as applications may read header names: any
/// case, and CGI-style servers read `_` (lighttpd any byte that is not a
/// letter or a digit) as `-`: `X_Auth_Subject` and `X.Auth.Subject` are
/// `x-auth-subject` to them.
pub fn is_owned(name: &str) -> bool {
    name.len() >= OWNED_PREFIX.len()
        && name
            .bytes()
            .zip(OWNED_PREFIX.bytes())
            .all(|(n, p)| n.eq_ignore_ascii_case(&p) || (p == b'-' && !n.is_ascii_alphanumeric()))
}

/// Headers describing the verified identity. Values that could not travel
/// safely in a header (control characters) are left out rather than mangled.
pub fn identity(claims: &Claims) -> Vec<(&'static str, String)> {
    let mut out = Vec::with_capacity(5);
    let mut add = |name: &'static str, value: String| {
        if !value.is_empty()
            && value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80)
        {
            out.push((name, value));
        }
    };
    if let Some(sub) = &claims.sub {
        add(SUBJECT, sub.clone());
    }
    if let Some(id) = &claims.client_id {
        add(CLIENT_ID, id.clone());
    }
    add(SCOPES, claims.scopes.join(" "));
    add(GROUPS, claims.groups.join(","));
    add(ROLES, claims.roles.join(","));
    out
}

#[cfg(test)]
mod tests {
    use super::is_owned;

    #[test]
    fn owned_in_every_spelling() {
        for owned in [
            "x-auth-subject",
            "X-Auth-Roles",
            "x_auth_subject",
            "X_Auth-Groups",
            "x-auth_",
            "x.auth.subject",
        ] {
            assert!(is_owned(owned), "{owned}");
        }
        for free in ["x-authsubject", "x-aut", "xauth-subject", "x0auth-subject"] {
            assert!(!is_owned(free), "{free}");
        }
    }
}
