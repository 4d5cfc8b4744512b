//! The OpenID Connect client: discovery, the token endpoint (code and
//! refresh grants), and the checks that make a token response a session.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::now_secs;

use super::*;

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Provider {
    pub(super) issuer: String,
    pub(super) authorization_endpoint: String,
    pub(super) token_endpoint: String,
    pub(super) end_session_endpoint: Option<String>,
    pub(super) revocation_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct TokenResponse {
    pub(super) access_token: String,
    pub(super) id_token: Option<String>,
    pub(super) refresh_token: Option<String>,
    pub(super) expires_in: Option<u64>,
}

impl Sessions {
    pub(super) async fn provider(&self) -> Result<&Provider, SessionError> {
        self.provider
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let provider: Provider = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| SessionError::Provider(format!("{url}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| SessionError::Provider(format!("{url}: {e}")))?;
                if provider.issuer != self.config.issuer {
                    return Err(SessionError::Provider(format!(
                        "discovery names issuer `{}`, not `{}`",
                        provider.issuer, self.config.issuer
                    )));
                }
                Ok(provider)
            })
            .await
    }

    pub(super) async fn token_request(
        &self,
        provider: &Provider,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, SessionError> {
        let resp = self
            .http
            .post(&provider.token_endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(&self.config.client_secret)),
            )
            .form(form)
            .send()
            .await
            .map_err(|e| SessionError::Provider(e.to_string()))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| SessionError::Provider(format!("token response: {e}")))?;
        if !status.is_success() {
            return Err(SessionError::Refused(
                body["error"].as_str().unwrap_or("unknown error").to_owned(),
            ));
        }
        serde_json::from_value(body)
            .map_err(|e| SessionError::Provider(format!("token response: {e}")))
    }

    /// Verify fresh tokens and seal them. `nonce` for a sign-in; `previous`
    /// for a refresh (same session id, subject and absolute expiry).
    pub(super) async fn establish(
        &self,
        tokens: TokenResponse,
        nonce: Option<&str>,
        previous: Option<&Stored>,
    ) -> Result<(Active, String), SessionError> {
        let access = self
            .verifier
            .verify(&tokens.access_token)
            .await
            .map_err(|e| SessionError::Token(format!("access token: {e}")))?;
        if !audience_has(&access.claims, &self.config.access_audience) {
            return Err(SessionError::Token(format!(
                "access token is not for audience `{}`",
                self.config.access_audience
            )));
        }
        let id_token = match (&tokens.id_token, previous) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => p.id_token.clone(),
            (None, None) => {
                return Err(SessionError::Token(
                    "no ID token (is `openid` in scopes?)".into(),
                ));
            }
        };
        if let Some(t) = &tokens.id_token {
            let id = self
                .verifier
                .verify(t)
                .await
                .map_err(|e| SessionError::Token(format!("ID token: {e}")))?;
            if !audience_has(&id.claims, &self.config.client_id) {
                return Err(SessionError::Token("ID token is for another client".into()));
            }
            if let Some(expected) = nonce
                && id.claims.get("nonce").and_then(Value::as_str) != Some(expected)
            {
                return Err(SessionError::Token(
                    "ID token `nonce` does not match".into(),
                ));
            }
            if id.claims.get("sub") != access.claims.get("sub") {
                return Err(SessionError::Token(
                    "ID and access tokens name different subjects".into(),
                ));
            }
        }
        let now = now_secs();
        let stored = Stored {
            sid: previous.map_or_else(random, |p| p.sid.clone()),
            access_token: tokens.access_token,
            refresh_token: tokens
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            id_token,
            access_expires_at: tokens
                .expires_in
                .map_or(access.expires_at, |s| access.expires_at.min(now + s)),
            expires_at: previous.map_or(now + self.config.lifetime_secs, |p| p.expires_at),
        };
        // Both as issued (the verified claims carry the subject prefix).
        let issued_sub = |token: &str| jwt_payload(token).and_then(|c| c.get("sub").cloned());
        if let Some(p) = previous
            && issued_sub(&p.access_token) != issued_sub(&stored.access_token)
        {
            return Err(SessionError::Token(
                "refresh returned another subject".into(),
            ));
        }
        let mut active = decode(stored, self.subject_prefix.as_deref())
            .ok_or_else(|| SessionError::Token("unreadable token".into()))?;
        let cookie_value = self.seal(&active.stored).await?;
        active.renewed_cookie = Some(cookie_value.clone());
        Ok((active, cookie_value))
    }

    pub(super) async fn refresh(&self, active: &Active) -> Result<Active, SessionError> {
        let Some(rt) = &active.stored.refresh_token else {
            return Err(SessionError::Refused("no refresh token".into()));
        };
        let provider = self.provider().await?;
        let tokens = self
            .token_request(
                provider,
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
            .await?;
        let (fresh, _) = self.establish(tokens, None, Some(&active.stored)).await?;
        tracing::debug!(sid = %fresh.stored.sid, "session refreshed");
        Ok(fresh)
    }
}

/// The payload of a JWT verified earlier (the sealed cookie vouches for it).
pub(super) fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

pub(super) fn audience_has(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic.
pub(super) fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
