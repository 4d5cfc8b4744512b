//! RFC 6750 §3 `WWW-Authenticate: Bearer` challenges, built here only, so
//! the gateway (in either policy mode) and the sidecar challenge alike.

/// The protection space every Portcullis challenge names.
pub const REALM: &str = "portcullis";

/// No credential was sent where one is required (§3: no error code).
pub fn bearer() -> String {
    format!("Bearer realm=\"{REALM}\"")
}

/// A token was sent and refused; `description` says why.
pub fn invalid_token(description: &str) -> String {
    format!(
        "Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{}\"",
        quoted(description)
    )
}

/// The token is good but lacks `scope`.
pub fn insufficient_scope(scope: &str) -> String {
    format!(
        "Bearer realm=\"{REALM}\", error=\"insufficient_scope\", scope=\"{}\"",
        quoted(scope)
    )
}

/// The token is good but its sign-in too weak or too old for what it asks
/// (RFC 9470 §3): which `acr` would do, and how recent it must be.
pub fn insufficient_user_authentication(acr_values: &str, max_age: Option<u64>) -> String {
    let mut c = format!(
        "Bearer realm=\"{REALM}\", error=\"insufficient_user_authentication\", \
         error_description=\"a stronger sign-in is required\", acr_values=\"{}\"",
        quoted(acr_values)
    );
    if let Some(age) = max_age {
        c.push_str(&format!(", max_age={age}"));
    }
    c
}

/// The `acr_values` and `max_age` of an RFC 9470 challenge this module
/// built (what a proxy reads back from the sidecar's answer), or `None`
/// for any other challenge.
pub fn step_up_of(challenge: &str) -> Option<(String, Option<u64>)> {
    if !challenge.contains("error=\"insufficient_user_authentication\"") {
        return None;
    }
    let acr = challenge
        .split_once("acr_values=\"")?
        .1
        .split_once('"')?
        .0
        .to_owned();
    let max_age = challenge
        .split_once("max_age=")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|n| n.trim().parse().ok());
    Some((acr, max_age))
}

/// A value safe inside a quoted-string: `"` and `\` would end or escape it,
/// and control characters may not appear at all.
fn quoted(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c == '"' || c == '\\' || c.is_control() {
                '\''
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_keep_their_quoted_strings_closed() {
        assert_eq!(bearer(), r#"Bearer realm="portcullis""#);
        assert_eq!(
            invalid_token("bad \"kid\" \\ x\r\n"),
            r#"Bearer realm="portcullis", error="invalid_token", error_description="bad 'kid' ' x''""#
        );
        assert_eq!(
            insufficient_scope("orders:read"),
            r#"Bearer realm="portcullis", error="insufficient_scope", scope="orders:read""#
        );
        let step = insufficient_user_authentication("urn:portcullis:acr:mfa", Some(300));
        assert_eq!(
            step,
            r#"Bearer realm="portcullis", error="insufficient_user_authentication", error_description="a stronger sign-in is required", acr_values="urn:portcullis:acr:mfa", max_age=300"#
        );
        assert_eq!(
            step_up_of(&step),
            Some(("urn:portcullis:acr:mfa".into(), Some(300)))
        );
        assert_eq!(
            step_up_of(&insufficient_user_authentication("a b", None)),
            Some(("a b".into(), None))
        );
        assert_eq!(step_up_of(&bearer()), None);
        assert_eq!(step_up_of(&insufficient_scope("x")), None);
    }
}
