/// Why a token was refused. `Display` is safe to return to the client as an
/// RFC 6750 `error_description`: it never echoes the token or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    #[error("token is malformed: {0}")]
    Malformed(&'static str),
    #[error("algorithm `{0}` is not allowed")]
    DisallowedAlgorithm(String),
    #[error("header `{0}` is not accepted")]
    ForbiddenHeader(&'static str),
    #[error("token type must be `{0}`")]
    WrongType(String),
    #[error("issuer is not trusted")]
    UnknownIssuer,
    #[error("no key of the issuer matches the token's `kid` and algorithm")]
    UnknownKey,
    #[error("the issuer's keys are not available")]
    KeysUnavailable,
    #[error("signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token is not meant for this audience")]
    WrongAudience,
    #[error("claim `{0}` is missing or has the wrong type")]
    BadClaim(&'static str),
    #[error("token is not active")]
    Inactive,
    #[error("token is not an access token")]
    NotAccessToken,
    #[error("the issuer's introspection endpoint is unavailable")]
    IntrospectionUnavailable,
}

impl TokenError {
    /// A short, fixed label for metrics (`..._failures_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooLarge(_) => "too_large",
            Self::Malformed(_) => "malformed",
            Self::DisallowedAlgorithm(_) => "disallowed_alg",
            Self::ForbiddenHeader(_) => "forbidden_header",
            Self::WrongType(_) => "wrong_type",
            Self::UnknownIssuer => "unknown_issuer",
            Self::UnknownKey => "unknown_key",
            Self::KeysUnavailable => "keys_unavailable",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongAudience => "wrong_audience",
            Self::BadClaim(_) => "bad_claim",
            Self::Inactive => "inactive",
            Self::NotAccessToken => "not_access_token",
            Self::IntrospectionUnavailable => "introspection_unavailable",
        }
    }

    /// The token could not be checked (the issuer is unreachable): not the
    /// client's fault, so a 503 rather than a 401.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable | Self::IntrospectionUnavailable)
    }
}

/// An issuer configuration that cannot work; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("issuers[{index}].{field}: {message}")]
pub struct ConfigError {
    pub index: usize,
    pub field: &'static str,
    pub message: String,
}
