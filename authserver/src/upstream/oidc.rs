//! An OpenID Connect upstream through the `openidconnect` crate: discovery,
//! the authorization request (code, PKCE S256, `state`, `nonce`), and the
//! code's redemption with the ID token verified (signature against the
//! provider's JWKS, `iss`, `aud`, `exp`, `nonce`, `at_hash`).

use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Map, Value};

use crate::config::ProviderConfig;

/// The provider's metadata, its endpoints https outside dev mode.
pub async fn discover(
    http: &reqwest::Client,
    cfg: &ProviderConfig,
    dev: bool,
) -> Result<CoreProviderMetadata, String> {
    let issuer = IssuerUrl::new(cfg.issuer.clone()).map_err(|e| e.to_string())?;
    let metadata = CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| format!("discovery at `{}`: {}", cfg.issuer, chain(&e)))?;
    if !dev {
        let endpoints = [
            Some(metadata.authorization_endpoint().as_str()),
            metadata.token_endpoint().map(|u| u.as_str()),
            Some(metadata.jwks_uri().as_str()),
        ];
        if let Some(plain) = endpoints
            .into_iter()
            .flatten()
            .find(|u| !u.starts_with("https://"))
        {
            return Err(format!("`{}` publishes `{plain}`, not https", cfg.issuer));
        }
    }
    Ok(metadata)
}

fn client(
    metadata: &CoreProviderMetadata,
    cfg: &ProviderConfig,
    redirect: &str,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointMaybeSet,
        openidconnect::EndpointMaybeSet,
    >,
    String,
> {
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(cfg.client_id.clone()),
        cfg.client_secret.clone().map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(redirect.to_owned()).map_err(|e| e.to_string())?))
}

/// Where the browser goes to sign in at the provider.
pub fn authorization_url(
    metadata: &CoreProviderMetadata,
    cfg: &ProviderConfig,
    redirect: &str,
    state: &str,
    nonce: &str,
    verifier: &str,
) -> Result<String, String> {
    let client = client(metadata, cfg, redirect)?;
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned()));
    let (state, nonce) = (state.to_owned(), nonce.to_owned());
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(state),
            move || Nonce::new(nonce),
        )
        .set_pkce_challenge(challenge);
    for scope in cfg.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    Ok(request.url().0.to_string())
}

/// Redeems `code`: the ID token's claims once everything checks out.
pub async fn redeem(
    http: &reqwest::Client,
    metadata: &CoreProviderMetadata,
    cfg: &ProviderConfig,
    redirect: &str,
    code: &str,
    verifier: &str,
    nonce: &str,
) -> Result<Map<String, Value>, String> {
    let client = client(metadata, cfg, redirect)?;
    let tokens = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .map_err(|e| e.to_string())?
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(http)
        .await
        .map_err(|e| format!("the token request failed: {}", chain(&e)))?;
    let id_token = tokens
        .id_token()
        .ok_or("the provider returned no ID token")?;
    let checks = client.id_token_verifier();
    let claims = id_token
        .claims(&checks, &Nonce::new(nonce.to_owned()))
        .map_err(|e| format!("the ID token is not valid: {}", chain(&e)))?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token.signing_alg().map_err(|e| e.to_string())?;
        let key = id_token.signing_key(&checks).map_err(|e| e.to_string())?;
        let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
            .map_err(|e| e.to_string())?;
        if actual != *expected {
            return Err("the ID token's `at_hash` does not match the access token".into());
        }
    }
    // The crate verified these very bytes; read every claim from them
    // (groups, `amr` and provider-specific ones it does not model).
    let compact = id_token.to_string();
    let payload = compact
        .split('.')
        .nth(1)
        .and_then(|p| {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
        .ok_or("the ID token's payload is not JSON")?;
    Ok(payload)
}

/// An error with its causes, for the log and the page.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}
