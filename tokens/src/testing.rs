//! A real, in-process token issuer for tests of anything that verifies
//! tokens (this crate, the sidecar, the gateway): OpenID discovery and a JWKS
//! over HTTP on an ephemeral loopback port, with keys generated per run. Tests
//! can rotate the published keys, count fetches and take the issuer down.
//! It also introspects (RFC 7662) the opaque tokens a test registers, for
//! the client `rs` / `rs-secret`.
//! Enabled by the `testing` feature; never part of a service binary.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    reason = "test support: a failure to generate a key or bind loopback should stop the test"
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use crate::signer::Signer;
use crate::{IntrospectionConfig, IssuerConfig};

/// A private signing key and its public JWK.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    pub jwk: Value,
    signer: Signer,
}

impl SigningKey {
    pub fn es256(kid: &str) -> Self {
        Self::generate(Algorithm::ES256, kid)
    }

    /// An RSA 2048 key for `alg` (RS256 or PS256).
    pub fn rsa(kid: &str, alg: Algorithm) -> Self {
        Self::generate(alg, kid)
    }

    pub fn ed25519(kid: &str) -> Self {
        Self::generate(Algorithm::EdDSA, kid)
    }

    fn generate(alg: Algorithm, kid: &str) -> Self {
        let (signer, _) = Signer::generate(alg, kid).expect("generate key");
        Self {
            kid: kid.into(),
            alg,
            jwk: signer.jwk().clone(),
            signer,
        }
    }

    /// A compact JWS with a standard header (`alg`, `kid`, `typ: JWT`).
    pub fn sign(&self, claims: &Value) -> String {
        self.signer.sign("JWT", claims).expect("sign")
    }

    /// A compact JWS with exactly this header, validly signed with this key
    /// whatever the header claims (for hostile-header tests).
    pub fn sign_raw(&self, header: &Value, claims: &Value) -> String {
        self.sign_as(self.alg, header, claims)
    }

    /// Like [`SigningKey::sign_raw`], signing with another algorithm of the
    /// key's family (e.g. PS256 with a key published for RS256).
    pub fn sign_as(&self, alg: Algorithm, header: &Value, claims: &Value) -> String {
        self.signer
            .sign_raw(alg, &b64(header), &b64(claims))
            .expect("sign")
    }
}

/// Base64url (no padding) of a JSON value, as in a JWS.
pub fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap_or_default())
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Discovery and a JWKS served from 127.0.0.1 on an ephemeral port.
#[derive(Clone)]
pub struct TestIssuer {
    pub url: String,
    jwks: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
    /// Opaque token → the introspection answer.
    answers: Arc<Mutex<HashMap<String, Value>>>,
    introspections: Arc<AtomicUsize>,
    /// How long the introspection endpoint takes to answer.
    introspection_delay: Arc<Mutex<Duration>>,
}

/// The client the test issuer's introspection endpoint accepts.
pub const INTROSPECTION_CLIENT: (&str, &str) = ("rs", "rs-secret");

impl TestIssuer {
    /// Start serving on the current Tokio runtime.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("local address");
        let issuer = Self {
            url: format!("http://{addr}"),
            jwks: Arc::new(Mutex::new(Value::Null)),
            fetches: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
            answers: Arc::new(Mutex::new(HashMap::new())),
            introspections: Arc::new(AtomicUsize::new(0)),
            introspection_delay: Arc::new(Mutex::new(Duration::ZERO)),
        };
        issuer.publish(keys);
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(|State(i): State<TestIssuer>| async move {
                    Json(json!({
                        "issuer": i.url,
                        "jwks_uri": format!("{}/jwks", i.url),
                        "introspection_endpoint": format!("{}/introspect", i.url),
                    }))
                }),
            )
            .route(
                "/jwks",
                get(|State(i): State<TestIssuer>| async move {
                    i.fetches.fetch_add(1, Ordering::SeqCst);
                    if i.down.load(Ordering::SeqCst) {
                        return Err(StatusCode::SERVICE_UNAVAILABLE);
                    }
                    Ok(Json(i.jwks.lock().map(|j| j.clone()).unwrap_or_default()))
                }),
            )
            .route("/introspect", post(introspect))
            .with_state(issuer.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        issuer
    }

    /// Replace the published key set.
    pub fn publish(&self, keys: &[&SigningKey]) {
        let set = json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()});
        if let Ok(mut jwks) = self.jwks.lock() {
            *jwks = set;
        }
    }

    /// How many times the JWKS was requested.
    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Answer 503 to JWKS requests (or recover).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Answer `answer` when `token` is introspected (unknown tokens are
    /// `{"active": false}`).
    pub fn answer(&self, token: &str, answer: Value) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(token.to_owned(), answer);
        }
    }

    /// How many introspection requests arrived.
    pub fn introspections(&self) -> usize {
        self.introspections.load(Ordering::SeqCst)
    }

    /// Make the introspection endpoint slow.
    pub fn set_introspection_delay(&self, delay: Duration) {
        if let Ok(mut d) = self.introspection_delay.lock() {
            *d = delay;
        }
    }

    /// An active access token's answer for audience `api`.
    pub fn active(&self, sub: &str) -> Value {
        let mut answer = self.claims(sub);
        answer["active"] = json!(true);
        answer["token_type"] = json!("Bearer");
        answer
    }

    /// [`TestIssuer::config`] that also introspects opaque tokens.
    pub fn introspecting_config(&self, cache_seconds: u64) -> IssuerConfig {
        IssuerConfig {
            introspection: Some(IntrospectionConfig {
                endpoint: None,
                client_id: INTROSPECTION_CLIENT.0.into(),
                client_secret: Some(INTROSPECTION_CLIENT.1.into()),
                client_secret_file: None,
                cache_seconds,
                timeout_ms: 2000,
            }),
            ..self.config()
        }
    }

    /// Trust this issuer for audience `api`, keys by discovery.
    pub fn config(&self) -> IssuerConfig {
        IssuerConfig {
            issuer: self.url.clone(),
            jwks_uri: None,
            audiences: vec!["api".into()],
            algorithms: ["RS256", "PS256", "ES256", "EdDSA"]
                .map(String::from)
                .to_vec(),
            leeway_seconds: 30,
            token_type: None,
            refresh_seconds: 300,
            min_refetch_seconds: 10,
            introspection: None,
            subject_prefix: None,
        }
    }

    /// Valid claims for audience `api`, expiring in five minutes.
    pub fn claims(&self, sub: &str) -> Value {
        json!({"iss": self.url, "sub": sub, "aud": "api", "exp": now() + 300, "iat": now()})
    }
}

/// RFC 7662 for the registered answers; 401 for any client but `rs`.
async fn introspect(
    State(issuer): State<TestIssuer>,
    headers: HeaderMap,
    body: String,
) -> Result<Json<Value>, StatusCode> {
    issuer.introspections.fetch_add(1, Ordering::SeqCst);
    let delay = issuer
        .introspection_delay
        .lock()
        .map(|d| *d)
        .unwrap_or_default();
    tokio::time::sleep(delay).await;
    if issuer.down.load(Ordering::SeqCst) {
        return Err(StatusCode::SERVICE_UNAVAILABLE);
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            INTROSPECTION_CLIENT.0, INTROSPECTION_CLIENT.1
        ))
    );
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return Err(StatusCode::UNAUTHORIZED);
    }
    let token = form_urlencoded::parse(body.as_bytes())
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .ok_or(StatusCode::BAD_REQUEST)?;
    let answers = issuer
        .answers
        .lock()
        .map_err(|_| StatusCode::INTERNAL_SERVER_ERROR)?;
    Ok(Json(
        answers
            .get(&token)
            .cloned()
            .unwrap_or_else(|| json!({"active": false})),
    ))
}

/// A token that must be refused, or (`reason == "ok"`) one that must pass.
#[derive(Debug, Clone)]
pub struct HostileToken {
    pub name: &'static str,
    pub token: String,
    /// `TokenError::reason()` it must get, or `"ok"`.
    pub reason: &'static str,
}

/// The hostile-token table every verifying component is tested with: `alg`
/// tricks, key-location headers, `kid` tricks, bad signatures, times,
/// issuers and audiences, malformed encodings. `key` is `issuer`'s (kid
/// `k1`); `other` is `stranger`'s (kid `k2`); both issuers are trusted for
/// audience `api` by the verifier under test.
pub fn hostile_tokens(
    issuer: &TestIssuer,
    key: &SigningKey,
    stranger: &TestIssuer,
    other: &SigningKey,
) -> Vec<HostileToken> {
    let good = issuer.claims("alice");
    let header = |extra: Value| {
        let mut h = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
        h.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        h
    };
    let with = |change: Value| {
        let mut c = good.clone();
        c.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        c
    };
    let valid = key.sign(&good);
    let sig = valid.rsplit('.').next().unwrap().to_owned();
    let x = key.jwk["x"].as_str().unwrap().to_owned();
    let hs256_with_public_key = {
        let message = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "kid": "k1"})),
            b64(&good)
        );
        let s = jsonwebtoken::crypto::sign(
            message.as_bytes(),
            &EncodingKey::from_secret(x.as_bytes()),
            Algorithm::HS256,
        )
        .expect("HMAC signing");
        format!("{message}.{s}")
    };
    let mut tampered = valid.split('.').map(str::to_owned).collect::<Vec<_>>();
    tampered[1] = b64(&with(json!({"sub": "admin"})));
    let tampered = tampered.join(".");

    let cases: Vec<(&'static str, String, &'static str)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&good)),
            "malformed",
        ),
        (
            "alg none with a signature",
            format!("{}.{}.{sig}", b64(&json!({"alg": "none"})), b64(&good)),
            "disallowed_alg",
        ),
        (
            "alg None",
            format!("{}.{}.{sig}", b64(&json!({"alg": "None"})), b64(&good)),
            "disallowed_alg",
        ),
        (
            "alg NONE",
            format!("{}.{}.{sig}", b64(&json!({"alg": "NONE"})), b64(&good)),
            "disallowed_alg",
        ),
        (
            "alg nOnE",
            format!(
                "{}.{}.{sig}",
                b64(&json!({"alg": "nOnE", "kid": "k1"})),
                b64(&good)
            ),
            "disallowed_alg",
        ),
        (
            "HS256 signed with the public key",
            hs256_with_public_key,
            "disallowed_alg",
        ),
        (
            "no alg",
            format!("{}.{}.{sig}", b64(&json!({"kid": "k1"})), b64(&good)),
            "malformed",
        ),
        (
            "jku header",
            key.sign_raw(&header(json!({"jku": "http://127.0.0.1:1/jwks"})), &good),
            "forbidden_header",
        ),
        (
            "jwk header",
            key.sign_raw(&header(json!({"jwk": other.jwk.clone()})), &good),
            "forbidden_header",
        ),
        (
            "x5u header",
            key.sign_raw(&header(json!({"x5u": "http://127.0.0.1:1/cert"})), &good),
            "forbidden_header",
        ),
        (
            "x5c header",
            key.sign_raw(&header(json!({"x5c": ["MIIB"]})), &good),
            "forbidden_header",
        ),
        (
            "crit header",
            key.sign_raw(&header(json!({"crit": ["exp"]})), &good),
            "forbidden_header",
        ),
        (
            "unknown kid",
            key.sign_raw(&header(json!({"kid": "nope"})), &good),
            "unknown_key",
        ),
        (
            "kid path trick",
            key.sign_raw(&header(json!({"kid": "../../k1"})), &good),
            "unknown_key",
        ),
        (
            "kid of the wrong key type",
            key.sign_raw(&header(json!({"alg": "EdDSA"})), &good),
            "unknown_key",
        ),
        ("key of another issuer", other.sign(&good), "unknown_key"),
        ("tampered payload", tampered, "bad_signature"),
        (
            "signature of another token",
            format!("{}.{sig}", {
                let t = key.sign(&with(json!({"sub": "bob"})));
                t.rsplit_once('.').unwrap().0.to_owned()
            }),
            "bad_signature",
        ),
        (
            "expired",
            key.sign(&with(json!({"exp": now() - 120}))),
            "expired",
        ),
        (
            "expired inside leeway is fine",
            key.sign(&with(json!({"exp": now() - 5}))),
            "ok",
        ),
        (
            "future nbf",
            key.sign(&with(json!({"nbf": now() + 600}))),
            "not_yet_valid",
        ),
        (
            "no exp",
            key.sign(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("exp");
                c
            }),
            "bad_claim",
        ),
        (
            "exp as string",
            key.sign(&with(json!({"exp": "tomorrow"}))),
            "bad_claim",
        ),
        (
            "wrong iss",
            key.sign(&with(json!({"iss": "https://evil.example"}))),
            "unknown_issuer",
        ),
        (
            "iss of the other issuer, our key",
            key.sign(&with(json!({"iss": stranger.url}))),
            "unknown_key",
        ),
        (
            "no iss",
            key.sign(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("iss");
                c
            }),
            "bad_claim",
        ),
        (
            "wrong aud",
            key.sign(&with(json!({"aud": "other"}))),
            "wrong_audience",
        ),
        (
            "no aud",
            key.sign(&{
                let mut c = good.clone();
                c.as_object_mut().unwrap().remove("aud");
                c
            }),
            "wrong_audience",
        ),
        (
            "oversize",
            format!("{}.{}.{sig}", b64(&header(json!({}))), "A".repeat(20_000)),
            "too_large",
        ),
        (
            "header not base64",
            format!("%%%.{}.{sig}", b64(&good)),
            "malformed",
        ),
        (
            "header not JSON",
            format!(
                "{}.{}.{sig}",
                URL_SAFE_NO_PAD.encode("not json"),
                b64(&good)
            ),
            "malformed",
        ),
        (
            "payload not JSON",
            format!(
                "{}.{}.{sig}",
                b64(&header(json!({}))),
                URL_SAFE_NO_PAD.encode("[1,2")
            ),
            "malformed",
        ),
        ("JWE shape", "a.b.c.d.e".to_owned(), "malformed"),
        ("two parts", "a.b".to_owned(), "malformed"),
        ("empty", String::new(), "malformed"),
    ];
    cases
        .into_iter()
        .map(|(name, token, reason)| HostileToken {
            name,
            token,
            reason,
        })
        .collect()
}
