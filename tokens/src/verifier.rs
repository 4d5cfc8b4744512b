//! The verification rules, applied to every configured issuer.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde_json::{Map, Value};

use crate::cache::VerifiedCache;
use crate::config::{ASYMMETRIC, IssuerConfig};
use crate::error::{ConfigError, TokenError};
use crate::introspection::Introspector;
use crate::issuer::{Issuer, IssuerStatus};
use crate::keys::KeySet;
use crate::verified::{Verified, audience_ok, now, qualify, seconds};

/// Tokens above this size are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Verifies bearer tokens of any configured issuer. Cheap to share: clone
/// the `Arc` it lives in.
pub struct Verifier {
    issuers: Vec<Arc<Issuer>>,
    cache: VerifiedCache,
    /// For opaque tokens, when an issuer has `introspection`.
    introspector: Option<Introspector>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuers", &self.issuers.len())
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Validate the issuer list. Keys are fetched by [`Verifier::start`].
    pub fn new(configs: &[IssuerConfig]) -> Result<Self, ConfigError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(2))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|e| ConfigError {
                index: 0,
                field: "issuer",
                message: format!("HTTP client: {e}"),
            })?;
        let issuers: Vec<Arc<Issuer>> = IssuerConfig::algorithms_of_all(configs)?
            .into_iter()
            .zip(configs)
            .map(|(algorithms, config)| {
                Arc::new(Issuer::new(config.clone(), algorithms, http.clone()))
            })
            .collect();
        let mut introspector = None;
        for (index, issuer) in issuers.iter().enumerate() {
            if let Some(config) = &issuer.config.introspection {
                introspector = Some(Introspector::new(issuer.clone(), config).map_err(
                    |message| ConfigError {
                        index,
                        field: "introspection",
                        message,
                    },
                )?);
            }
        }
        Ok(Self {
            issuers,
            cache: VerifiedCache::new(100_000, Duration::from_secs(300)),
            introspector,
        })
    }

    /// Fetch every issuer's keys (all at once, waiting at most
    /// [`START_WAIT`]), then keep them fresh in the background for as long as
    /// the runtime lives. A failed fetch is retried sooner than the regular
    /// refresh and never drops keys already held; until an issuer's keys
    /// arrive, [`Verifier::ready`] is false and its tokens are refused.
    pub async fn start(&self) {
        let (done, mut finished) = tokio::sync::mpsc::channel(self.issuers.len().max(1));
        for issuer in &self.issuers {
            let (issuer, done) = (issuer.clone(), done.clone());
            tokio::spawn(async move {
                issuer.refresh(None).await;
                let _ = done.send(()).await;
                drop(done);
                keep_fresh(issuer).await;
            });
        }
        let _ = tokio::time::timeout(START_WAIT, async {
            for _ in 0..self.issuers.len() {
                let _ = finished.recv().await;
            }
        })
        .await;
    }

    /// Every issuer has keys to verify with.
    pub fn ready(&self) -> bool {
        self.issuers.iter().all(|i| !i.keys.load().keys.is_empty())
    }

    pub fn status(&self) -> Vec<IssuerStatus> {
        self.issuers.iter().map(|i| i.status()).collect()
    }

    /// Verify a bearer token (without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<Arc<Verified>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(MAX_TOKEN_BYTES));
        }
        let now = now();
        let cache_key = VerifiedCache::key(token);
        if let Some(introspector) = &self.introspector
            && !token.contains('.')
        {
            return introspector.verify(token, cache_key).await;
        }
        if let Some(hit) = self.cache.get(&cache_key, now) {
            return Ok(hit);
        }
        let (parts, header, claims) = unverified(token)?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .ok_or(TokenError::BadClaim("iss"))?;
        let issuer = self
            .issuers
            .iter()
            .find(|i| i.config.issuer == iss)
            .ok_or(TokenError::UnknownIssuer)?;
        let alg = header.algorithm(&issuer.algorithms)?;
        let rules = Rules {
            token_type: issuer.config.token_type.as_deref(),
            leeway: issuer.config.leeway_seconds,
            audiences: &issuer.config.audiences,
        };
        rules.check_type(&header)?;
        let kid = header.kid.as_deref();
        let mut keys = issuer.keys.load_full();
        if keys.keys.is_empty() || kid.is_some_and(|k| !keys.has_kid(k)) {
            // Perhaps the issuer rotated: refetch, at most once per gap.
            issuer
                .refresh(Some(Duration::from_secs(issuer.config.min_refetch_seconds)))
                .await;
            keys = issuer.keys.load_full();
        }
        if keys.keys.is_empty() {
            return Err(TokenError::KeysUnavailable);
        }
        let exp = rules.check_signed(&parts, &keys, kid, alg, &claims, now)?;
        let leeway = rules.leeway;
        let mut claims = claims;
        qualify(&mut claims, issuer.config.subject_prefix.as_deref());
        let verified = Arc::new(Verified {
            claims,
            expires_at: exp,
            leeway,
        });
        self.cache.insert(cache_key, verified.clone());
        Ok(verified)
    }
}

/// Verifies a JWT signed with one of a fixed set of keys (a client's
/// registered JWKS: RFC 7523 client assertions) by the same rules as an
/// issuer's tokens, the keys given rather than fetched: the shape and
/// header rules, an asymmetric `alg` the chosen key fits, the signature,
/// `exp` (required) and `nbf` with `leeway_seconds`, `iss` exactly
/// `issuer`, and `aud` one of `audiences`. Returns the claims.
pub fn verify_with_keys(
    token: &str,
    jwks: &str,
    issuer: &str,
    audiences: &[String],
    leeway_seconds: u64,
    now: u64,
) -> Result<Map<String, Value>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(MAX_TOKEN_BYTES));
    }
    let (parts, header, claims) = unverified(token)?;
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(TokenError::UnknownIssuer);
    }
    let keys = KeySet::parse(jwks.as_bytes()).map_err(|_| TokenError::UnknownKey)?;
    let alg = header.algorithm(&ASYMMETRIC)?;
    let rules = Rules {
        token_type: None,
        leeway: leeway_seconds,
        audiences,
    };
    rules.check_signed(&parts, &keys, header.kid.as_deref(), alg, &claims, now)?;
    Ok(claims)
}

/// The checks after the issuer is known, shared by every kind of token.
struct Rules<'a> {
    token_type: Option<&'a str>,
    leeway: u64,
    audiences: &'a [String],
}

impl Rules<'_> {
    fn check_type(&self, header: &Header) -> Result<(), TokenError> {
        match self.token_type {
            Some(required)
                if !header
                    .typ
                    .as_deref()
                    .is_some_and(|t| same_type(t, required)) =>
            {
                Err(TokenError::WrongType(required.to_owned()))
            }
            _ => Ok(()),
        }
    }

    /// Key, signature, time and audience; returns `exp`.
    fn check_signed(
        &self,
        parts: &Parts<'_>,
        keys: &KeySet,
        kid: Option<&str>,
        alg: Algorithm,
        claims: &Map<String, Value>,
        now: u64,
    ) -> Result<u64, TokenError> {
        let key = keys.find(kid, alg).ok_or(TokenError::UnknownKey)?;
        let signed = jsonwebtoken::crypto::verify(parts.signature, parts.message, &key.key, alg)
            .map_err(|_| TokenError::Malformed("signature encoding"))?;
        if !signed {
            return Err(TokenError::BadSignature);
        }
        let exp = seconds(claims, "exp")?.ok_or(TokenError::BadClaim("exp"))?;
        if now >= exp.saturating_add(self.leeway) {
            return Err(TokenError::Expired);
        }
        if let Some(nbf) = seconds(claims, "nbf")?
            && now.saturating_add(self.leeway) < nbf
        {
            return Err(TokenError::NotYetValid);
        }
        if !audience_ok(claims.get("aud"), self.audiences) {
            return Err(TokenError::WrongAudience);
        }
        Ok(exp)
    }
}

/// How long [`Verifier::start`] waits for the first fetches.
pub const START_WAIT: Duration = Duration::from_secs(3);

/// Refresh an issuer's keys forever: regularly, and sooner while failing.
async fn keep_fresh(issuer: Arc<Issuer>) {
    let every = Duration::from_secs(issuer.config.refresh_seconds);
    let retry = Duration::from_secs(issuer.config.min_refetch_seconds.max(1));
    loop {
        let failing = issuer.status().last_error.is_some();
        tokio::time::sleep(if failing { retry } else { every }).await;
        issuer.refresh(None).await;
    }
}

/// The rules a token must pass before any key is looked up or any
/// signature computed: compact JWS shape, base64url JSON header and
/// payload, the header's forbidden fields. A fuzz target's entry point.
pub fn pre_signature(token: &str) -> Result<(), TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(MAX_TOKEN_BYTES));
    }
    unverified(token).map(|_| ())
}

/// A token's parts, header and claims, none of them trusted yet.
fn unverified(token: &str) -> Result<(Parts<'_>, Header, Map<String, Value>), TokenError> {
    let parts = Parts::split(token)?;
    let header = parts.header()?;
    let claims = parts.claims()?;
    Ok((parts, header, claims))
}

/// The three parts of a compact JWS.
struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    /// `header.payload`, the signed bytes.
    message: &'a [u8],
}

impl<'a> Parts<'a> {
    fn split(token: &'a str) -> Result<Self, TokenError> {
        let mut it = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (it.next(), it.next(), it.next(), it.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        if header.is_empty() || payload.is_empty() {
            return Err(TokenError::Malformed("empty part"));
        }
        if signature.is_empty() {
            return Err(TokenError::Malformed("unsigned token"));
        }
        Ok(Self {
            header,
            payload,
            signature,
            message: &token.as_bytes()[..header.len() + 1 + payload.len()],
        })
    }

    fn header(&self) -> Result<Header, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.header)
            .map_err(|_| TokenError::Malformed("header is not base64url"))?;
        let map: Map<String, Value> = serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::Malformed("header is not a JSON object"))?;
        // Keys come from the issuer's JWKS only; `crit` extensions are not
        // understood, so RFC 7515 §4.1.11 says refuse.
        for name in ["jku", "jwk", "x5u", "x5c", "crit"] {
            if map.contains_key(name) {
                return Err(TokenError::ForbiddenHeader(name));
            }
        }
        let text = |name| match map.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(TokenError::Malformed("header field is not a string")),
        };
        Ok(Header {
            alg: text("alg")?.ok_or(TokenError::Malformed("header has no `alg`"))?,
            kid: text("kid")?,
            typ: text("typ")?,
        })
    }

    fn claims(&self) -> Result<Map<String, Value>, TokenError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(self.payload)
            .map_err(|_| TokenError::Malformed("payload is not base64url"))?;
        serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::Malformed("payload is not a JSON object"))
    }
}

struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
}

impl Header {
    /// The header's `alg`, if the issuer allows it. Exact spelling only:
    /// `none`, `None`, `NONE`, `HS256`, … are all refused here.
    fn algorithm(&self, allowed: &[Algorithm]) -> Result<Algorithm, TokenError> {
        self.alg
            .parse::<Algorithm>()
            .ok()
            .filter(|a| allowed.contains(a))
            .ok_or_else(|| TokenError::DisallowedAlgorithm(self.alg.chars().take(16).collect()))
    }
}

fn same_type(actual: &str, required: &str) -> bool {
    let strip = |t: &str| {
        let t = t.trim();
        t.get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .map_or(t, |_| &t[12..])
            .to_owned()
    };
    strip(actual).eq_ignore_ascii_case(&strip(required))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_compare_like_rfc_9068_says() {
        assert!(same_type("at+jwt", "at+jwt"));
        assert!(same_type("application/at+jwt", "at+jwt"));
        assert!(same_type("AT+JWT", "application/at+jwt"));
        assert!(!same_type("JWT", "at+jwt"));
        assert!(!same_type("", "at+jwt"));
    }

    #[test]
    fn split_refuses_jwe_and_unsigned() {
        assert!(Parts::split("a.b.c").is_ok());
        assert!(Parts::split("a.b.").is_err());
        assert!(Parts::split("a.b.c.d.e").is_err());
        assert!(Parts::split("a.b").is_err());
        assert!(Parts::split("").is_err());
    }
}
