//! Discovery (RFC 8414, OIDC Discovery) and the JWKS.

use crate::model::GrantType;

use super::*;

/// Discovery (RFC 8414 and OpenID Connect Discovery), listing only what
/// this server implements.
pub(super) fn metadata_document(issuer: &str, mfa: &crate::config::MfaConfig) -> Value {
    let auth_methods = json!([
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt"
    ]);
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "userinfo_endpoint": format!("{issuer}/userinfo"),
        "jwks_uri": format!("{issuer}/jwks"),
        "introspection_endpoint": format!("{issuer}/introspect"),
        "revocation_endpoint": format!("{issuer}/revoke"),
        "end_session_endpoint": format!("{issuer}/logout"),
        "device_authorization_endpoint": format!("{issuer}/device_authorization"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": GrantType::ALL.map(GrantType::as_str),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp",
            "at_hash", "preferred_username", "name", "email", "email_verified", "groups", "roles", "updated_at"],
        "code_challenge_methods_supported": ["S256"],
        "acr_values_supported": [mfa.password_acr, mfa.acr],
        "prompt_values_supported": ["none", "login", "consent"],
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "PS256", "EdDSA"],
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "authorization_response_iss_parameter_supported": true,
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
    })
}

pub(super) async fn metadata(State(app): Shared) -> impl IntoResponse {
    axum::Json(metadata_document(&app.issuer, &app.config.mfa))
}

pub(super) async fn jwks(State(app): Shared) -> impl IntoResponse {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            ),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=60"),
            ),
        ],
        app.keys.current().jwks.clone(),
    )
}
