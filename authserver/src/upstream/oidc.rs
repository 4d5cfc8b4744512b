//! An OpenID Connect upstream through the `openidconnect` crate: discovery,
//! the authorization request (code, PKCE S256, `state`, `nonce`), and the
//! code's redemption with the ID token verified (signature against the
//! provider's JWKS, `iss`, `aud`, `exp`, `nonce`, `at_hash`).
//!
//! Entra ID's multi-tenant endpoints (`common`, `organizations`) publish
//! an issuer template (`…/{tenantid}/v2.0`) that the crate's discovery
//! refuses (openidconnect-rs issue 216): their metadata is read here, and
//! each ID token's `iss` is checked against its own `tid`, which must be an
//! allowed tenant.

use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::{Map, Value};

use crate::config::{ProviderConfig, ProviderKind};

/// The issuer discovery starts from.
fn issuer(cfg: &ProviderConfig) -> String {
    match cfg.kind {
        ProviderKind::Entra => format!("{}/{}/v2.0", cfg.base(), cfg.entra_tenant().0),
        _ => cfg.base().to_owned(),
    }
}

/// The provider's metadata and keys, its endpoints https outside dev mode.
pub async fn discover(
    http: &reqwest::Client,
    cfg: &ProviderConfig,
    dev: bool,
) -> Result<CoreProviderMetadata, String> {
    let issuer = issuer(cfg);
    let metadata = if cfg.kind == ProviderKind::Entra {
        entra_metadata(http, &issuer).await?
    } else {
        let url = IssuerUrl::new(issuer.clone()).map_err(|e| e.to_string())?;
        CoreProviderMetadata::discover_async(url, http)
            .await
            .map_err(|e| format!("discovery at `{issuer}`: {}", chain(&e)))?
    };
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
            return Err(format!("`{issuer}` publishes `{plain}`, not https"));
        }
    }
    Ok(metadata)
}

/// Entra's metadata read as published (its issuer may be a template), and
/// its keys.
async fn entra_metadata(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<CoreProviderMetadata, String> {
    let fetch = |url: String| async move {
        http.get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("`{url}`: {e}"))?
            .json::<Value>()
            .await
            .map_err(|e| format!("`{url}`: {e}"))
    };
    let document = fetch(format!("{issuer}/.well-known/openid-configuration")).await?;
    let metadata: CoreProviderMetadata = serde_json::from_value(document)
        .map_err(|e| format!("Entra's metadata at `{issuer}`: {e}"))?;
    let keys: CoreJsonWebKeySet =
        serde_json::from_value(fetch(metadata.jwks_uri().to_string()).await?)
            .map_err(|e| format!("Entra's keys: {e}"))?;
    Ok(metadata.set_jwks(keys))
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
    let entra_many = cfg.kind == ProviderKind::Entra && cfg.entra_tenant().1;
    // A multi-tenant Entra issuer is a template: `iss` is checked below,
    // against the token's own tenant.
    let checks = client.id_token_verifier().require_issuer_match(!entra_many);
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
    // (groups, `amr`, Entra's `tid`/`oid`: claims it does not model).
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
    if cfg.kind == ProviderKind::Entra {
        entra_tenant_check(cfg, &payload)?;
    }
    Ok(payload)
}

/// An Entra token's tenant is allowed, and its `iss` is that tenant's.
fn entra_tenant_check(cfg: &ProviderConfig, claims: &Map<String, Value>) -> Result<(), String> {
    let tid = claims
        .get("tid")
        .and_then(Value::as_str)
        .ok_or("the ID token names no tenant (`tid`)")?;
    if !cfg.tenant_allowed(tid) {
        return Err(format!("accounts of tenant `{tid}` may not sign in here"));
    }
    let expected = format!("{}/{tid}/v2.0", cfg.base());
    if claims.get("iss").and_then(Value::as_str) != Some(expected.as_str()) {
        return Err("the ID token's `iss` is not its tenant's".into());
    }
    Ok(())
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
