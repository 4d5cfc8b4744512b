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
    }
}
