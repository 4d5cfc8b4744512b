//! Opaque access tokens: looked up at the issuer's introspection endpoint
//! (RFC 7662) and the answer trusted for a short while.
//!
//! A token without a `.` is opaque; it goes to the one issuer configured
//! with `introspection` (an opaque token does not name its issuer). The
//! answer must say `active`, describe an access token (not a refresh
//! token), come from that issuer and name a configured audience; `exp` and
//! `nbf` are checked like a JWT's. Answers, refusals included, are cached
//! by the token's SHA-256 for `cache_seconds` (never beyond `exp`), and
//! concurrent lookups of one token share one request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value};

use crate::config::IntrospectionConfig;
use crate::error::TokenError;
use crate::issuer::Issuer;
use crate::verified::{Verified, audience_ok, now, qualify, seconds};

type Answer = Result<Arc<Verified>, TokenError>;

/// Looks up opaque tokens at one issuer.
pub(crate) struct Introspector {
    issuer: Arc<Issuer>,
    /// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
    authorization: String,
    endpoint: tokio::sync::OnceCell<String>,
    cache_for: Duration,
    timeout: Duration,
    answers: moka::future::Cache<[u8; 32], Answer>,
}

impl Introspector {
    pub fn new(issuer: Arc<Issuer>, config: &IntrospectionConfig) -> Result<Self, String> {
        let secret = config.secret()?;
        let encode = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let authorization = format!(
            "Basic {}",
            STANDARD.encode(format!("{}:{}", encode(&config.client_id), encode(&secret)))
        );
        let endpoint = tokio::sync::OnceCell::new();
        if let Some(configured) = &config.endpoint {
            let _ = endpoint.set(configured.clone());
        }
        let answers = moka::future::Cache::builder()
            .max_capacity(100_000)
            .expire_after(AnswerExpiry)
            .build();
        Ok(Self {
            issuer,
            authorization,
            endpoint,
            cache_for: Duration::from_secs(config.cache_seconds),
            timeout: Duration::from_millis(config.timeout_ms),
            answers,
        })
    }

    /// The issuer's verdict on `token`, from the cache or one request that
    /// concurrent callers share.
    pub async fn verify(&self, token: &str, key: [u8; 32]) -> Answer {
        // An entry can outlive its second by a little: ask again then.
        for _ in 0..2 {
            match self.answers.get_with(key, self.ask(token)).await {
                Ok(v) if now() >= v.expires_at => self.answers.invalidate(&key).await,
                answer => return answer,
            }
        }
        Err(TokenError::Expired)
    }

    async fn ask(&self, token: &str) -> Answer {
        let endpoint = self
            .endpoint
            .get_or_try_init(|| async {
                self.issuer.discover().await.and_then(|d| {
                    d.introspection_endpoint
                        .ok_or_else(|| "discovery has no introspection_endpoint".into())
                })
            })
            .await
            .map_err(|e| self.unavailable(&e))?;
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("token", token)
            .append_pair("token_type_hint", "access_token")
            .finish();
        let started = Instant::now();
        let response = self
            .issuer
            .http
            .post(endpoint)
            .timeout(self.timeout)
            .header("authorization", &self.authorization)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.unavailable(&format!("{endpoint}: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            return Err(self.unavailable(&format!("{endpoint}: HTTP {status}")));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| self.unavailable(&format!("{endpoint}: {e}")))?;
        let answer: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| {
            self.unavailable(&format!("{endpoint}: the answer is not a JSON object"))
        })?;
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "introspected"
        );
        self.judge(answer, now())
    }

    fn unavailable(&self, why: &str) -> TokenError {
        tracing::warn!(issuer = %self.issuer.config.issuer, error = %why, "introspection failed");
        TokenError::IntrospectionUnavailable
    }

    /// Applies the rules to an RFC 7662 answer.
    fn judge(&self, mut answer: Map<String, Value>, now: u64) -> Answer {
        if answer.get("active") != Some(&Value::Bool(true)) {
            return Err(TokenError::Inactive);
        }
        // RFC 7662's `token_type`; Ory's `token_use`. A refresh token shown
        // as a bearer must not pass for the access it can obtain.
        let kind_ok = |field: &str, accepted: &[&str]| match answer.get(field) {
            None => true,
            Some(Value::String(t)) => accepted.iter().any(|a| t.eq_ignore_ascii_case(a)),
            Some(_) => false,
        };
        if !kind_ok("token_type", &["bearer", "access_token"])
            || !kind_ok("token_use", &["access_token"])
        {
            return Err(TokenError::NotAccessToken);
        }
        let issuer = &self.issuer.config;
        match answer.get("iss") {
            None => {
                answer.insert("iss".into(), Value::String(issuer.issuer.clone()));
            }
            Some(Value::String(iss)) if *iss == issuer.issuer => {}
            Some(_) => return Err(TokenError::UnknownIssuer),
        }
        let leeway = issuer.leeway_seconds;
        let exp = seconds(&answer, "exp")?;
        if let Some(exp) = exp
            && now >= exp.saturating_add(leeway)
        {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = seconds(&answer, "nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        if !audience_ok(answer.get("aud"), &issuer.audiences) {
            return Err(TokenError::WrongAudience);
        }
        for field in ["active", "token_type", "token_use"] {
            answer.remove(field);
        }
        let trusted_until = now.saturating_add(self.cache_for.as_secs());
        qualify(&mut answer, issuer.subject_prefix.as_deref());
        Ok(Arc::new(Verified {
            claims: answer,
            expires_at: exp.map_or(trusted_until, |e| e.min(trusted_until)),
            leeway: 0,
        }))
    }
}

/// Accepted answers live until they must be asked again; refusals for a
/// few seconds (a flood of one junk token costs one request); an
/// unreachable issuer is not remembered.
struct AnswerExpiry;

impl moka::Expiry<[u8; 32], Answer> for AnswerExpiry {
    fn expire_after_create(&self, _: &[u8; 32], answer: &Answer, _: Instant) -> Option<Duration> {
        Some(match answer {
            Ok(v) => Duration::from_secs(v.expires_at.saturating_sub(now())),
            Err(TokenError::IntrospectionUnavailable) => Duration::ZERO,
            Err(_) => Duration::from_secs(5),
        })
    }
}
