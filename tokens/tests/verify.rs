//! The verification rules against a real HTTP issuer (discovery + JWKS on
//! an ephemeral port) with keys generated per run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde_json::json;
use tokens::testing::{SigningKey, TestIssuer as Issuer, hostile_tokens, now};
use tokens::{IssuerConfig, TokenError, Verifier};

async fn verifier(configs: &[IssuerConfig]) -> Verifier {
    let v = Verifier::new(configs).unwrap();
    v.start().await;
    v
}

#[tokio::test]
async fn accepts_tokens_of_configured_issuers_by_discovery() {
    let es = SigningKey::es256("es-1");
    let ed = SigningKey::ed25519("ed-1");
    let rs = SigningKey::rsa("rs-1", Algorithm::RS256);
    let ps = SigningKey::rsa("ps-1", Algorithm::PS256);
    let issuer = Issuer::start(&[&es, &ed, &rs, &ps]).await;
    let v = verifier(&[issuer.config()]).await;
    assert!(v.ready());
    for key in [&es, &ed, &rs, &ps] {
        let token = key.sign(&issuer.claims("alice"));
        let verified = v.verify(&token).await.unwrap();
        assert_eq!(verified.claims["sub"], "alice");
        // Again: served from the verified-token cache, same answer.
        assert_eq!(v.verify(&token).await.unwrap().claims["sub"], "alice");
    }
    // `aud` as an array holding the audience.
    let mut claims = issuer.claims("alice");
    claims["aud"] = json!(["other", "api"]);
    assert!(v.verify(&es.sign(&claims)).await.is_ok());
    assert_eq!(v.status()[0].keys, 4);
    // An RSA key published for RS256 does not verify a PS256 token, even one
    // it signed: the key's pinned `alg` must be the header's.
    let pss = rs.sign_as(
        Algorithm::PS256,
        &json!({"alg": "PS256", "kid": "rs-1"}),
        &issuer.claims("alice"),
    );
    assert_eq!(v.verify(&pss).await.unwrap_err(), TokenError::UnknownKey);
}

#[tokio::test]
async fn refuses_every_hostile_token() {
    let key = SigningKey::es256("k1");
    let other = SigningKey::es256("k2");
    let issuer = Issuer::start(&[&key]).await;
    let stranger = Issuer::start(&[&other]).await;
    let mut typed = issuer.config();
    typed.token_type = Some("at+jwt".into());
    let prefixed = |config: IssuerConfig, prefix: &str| IssuerConfig {
        subject_prefix: Some(prefix.into()),
        ..config
    };
    let v = verifier(&[
        prefixed(issuer.config(), "ours:"),
        prefixed(stranger.config(), "stranger:"),
    ])
    .await;
    let strict = verifier(&[typed]).await;
    let cases = hostile_tokens(&issuer, &key, &stranger, &other);
    let mut failures = Vec::new();
    for case in &cases {
        let got = match v.verify(&case.token).await {
            Ok(_) => "ok",
            Err(e) => e.reason(),
        };
        if got != case.reason {
            failures.push(format!(
                "{}: expected {}, got {got}",
                case.name, case.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // RFC 9068 `typ`, when configured.
    let good = issuer.claims("alice");
    let valid = key.sign(&good);
    assert_eq!(
        strict.verify(&valid).await.unwrap_err(),
        TokenError::WrongType("at+jwt".into())
    );
    let at = key.sign_raw(
        &json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
        &good,
    );
    assert!(strict.verify(&at).await.is_ok());
}

#[tokio::test]
async fn rotation_is_picked_up_on_an_unknown_kid_with_one_fetch() {
    let old = SigningKey::es256("old");
    let issuer = Issuer::start(&[&old]).await;
    let v = Arc::new(verifier(&[issuer.config()]).await);
    assert_eq!(issuer.fetches(), 1);
    assert!(v.verify(&old.sign(&issuer.claims("alice"))).await.is_ok());

    let new = SigningKey::ed25519("new");
    issuer.publish(&[&old, &new]);
    // Many requests with the new kid at once: one refetch serves them all.
    let token = new.sign(&issuer.claims("alice"));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (v, token) = (v.clone(), token.clone());
        tasks.push(tokio::spawn(async move { v.verify(&token).await.is_ok() }));
    }
    for t in tasks {
        assert!(t.await.unwrap());
    }
    assert_eq!(issuer.fetches(), 2);
    // Random kids right after cannot make us fetch again.
    for i in 0..20 {
        let t = new.sign_raw(
            &json!({"alg": "EdDSA", "kid": format!("random-{i}")}),
            &issuer.claims("alice"),
        );
        assert_eq!(v.verify(&t).await.unwrap_err(), TokenError::UnknownKey);
    }
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn keeps_serving_cached_keys_while_the_issuer_is_down() {
    let key = SigningKey::es256("k");
    let issuer = Issuer::start(&[&key]).await;
    let mut config = issuer.config();
    config.min_refetch_seconds = 0;
    let v = verifier(&[config]).await;
    issuer.set_down(true);
    // An unknown kid forces a refetch, which fails...
    let stray = key.sign_raw(
        &json!({"alg": "ES256", "kid": "stray"}),
        &issuer.claims("alice"),
    );
    assert_eq!(v.verify(&stray).await.unwrap_err(), TokenError::UnknownKey);
    assert!(v.status()[0].last_error.as_deref().unwrap().contains("503"));
    // ...and the keys we had still verify.
    let mut claims = issuer.claims("alice");
    claims["jti"] = json!("fresh");
    assert!(v.verify(&key.sign(&claims)).await.is_ok());
    assert!(v.ready());
}

#[tokio::test]
async fn an_unreachable_issuer_is_not_ready_and_fails_closed() {
    let config: IssuerConfig = toml::from_str(
        r#"issuer = "http://127.0.0.1:9"
audiences = ["api"]"#,
    )
    .unwrap();
    let v = verifier(&[config]).await;
    assert!(!v.ready());
    let key = SigningKey::es256("k");
    let token = key.sign(&json!({"iss": "http://127.0.0.1:9", "aud": "api", "exp": now() + 60}));
    assert_eq!(
        v.verify(&token).await.unwrap_err(),
        TokenError::KeysUnavailable
    );
}

#[test]
fn bad_issuer_config_names_the_field() {
    let parse = |s: &str| toml::from_str::<IssuerConfig>(s).unwrap();
    let cases = [
        (
            r#"issuer = "https://a"
audiences = []"#,
            "issuers[0].audiences",
        ),
        (
            r#"issuer = "https://a"
audiences = ["x"]
algorithms = ["HS256"]"#,
            "issuers[0].algorithms",
        ),
        (
            r#"issuer = "https://a"
audiences = ["x"]
algorithms = ["none"]"#,
            "issuers[0].algorithms",
        ),
        (
            r#"issuer = "ftp://a"
audiences = ["x"]"#,
            "issuers[0].issuer",
        ),
        (
            r#"issuer = "https://a"
jwks_uri = "file:///etc/keys"
audiences = ["x"]"#,
            "issuers[0].jwks_uri",
        ),
    ];
    for (text, field) in cases {
        let err = Verifier::new(&[parse(text)]).unwrap_err().to_string();
        assert!(err.starts_with(field), "{err}");
    }
    let twice = parse(
        r#"issuer = "https://a"
audiences = ["x"]"#,
    );
    assert!(
        Verifier::new(&[twice.clone(), twice])
            .unwrap_err()
            .to_string()
            .contains("twice")
    );
    assert!(
        toml::from_str::<IssuerConfig>("issuer = \"https://a\"\naudiences = [\"x\"]\nunknown = 1")
            .is_err()
    );
    // Several issuers: each names its subjects apart from the others'.
    let with_prefix = |issuer: &str, prefix: Option<&str>| IssuerConfig {
        subject_prefix: prefix.map(str::to_owned),
        ..parse(&format!("issuer = \"{issuer}\"\naudiences = [\"x\"]"))
    };
    for (configs, field, words) in [
        (
            vec![
                with_prefix("https://a", None),
                with_prefix("https://b", Some("b:")),
            ],
            "issuers[0].subject_prefix",
            "several issuers",
        ),
        (
            vec![with_prefix("https://a", Some(""))],
            "issuers[0].subject_prefix",
            "non-empty",
        ),
        (
            vec![
                with_prefix("https://a", Some("p")),
                with_prefix("https://b", Some("pa")),
            ],
            "issuers[0].subject_prefix",
            "overlap",
        ),
    ] {
        let err = Verifier::new(&configs).unwrap_err().to_string();
        assert!(err.starts_with(field) && err.contains(words), "{err}");
    }
    assert!(
        Verifier::new(&[
            with_prefix("https://a", Some("a:")),
            with_prefix("https://b", Some("b:"))
        ])
        .is_ok()
    );
}

#[tokio::test]
async fn subjects_carry_their_issuers_prefix() {
    let key = SigningKey::es256("k1");
    let issuer = Issuer::start(&[&key]).await;
    let plain = verifier(&[issuer.config()]).await;
    let prefixed = verifier(&[IssuerConfig {
        subject_prefix: Some("partner:".into()),
        ..issuer.config()
    }])
    .await;
    let mut claims = issuer.claims("bob");
    claims["client_id"] = json!("web");
    claims["azp"] = json!("web");
    claims["groups"] = json!(["staff"]);
    claims["roles"] = json!(["admin"]);
    let token = key.sign(&claims);
    let got = prefixed.verify(&token).await.unwrap();
    for (name, want) in [
        ("sub", json!("partner:bob")),
        ("client_id", json!("partner:web")),
        ("azp", json!("partner:web")),
        ("groups", json!(["partner:staff"])),
        ("roles", json!(["partner:admin"])),
    ] {
        assert_eq!(got.claims[name], want, "{name}");
    }
    assert_eq!(got.claims["iss"], issuer.url, "other claims as issued");
    assert_eq!(plain.verify(&token).await.unwrap().claims["sub"], "bob");
}

#[tokio::test]
async fn a_hanging_issuer_does_not_hold_up_start() {
    // Accepts connections (the backlog does) but never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let config: IssuerConfig =
        toml::from_str(&format!("issuer = \"{url}\"\naudiences = [\"api\"]")).unwrap();
    let v = Verifier::new(&[config]).unwrap();
    let started = std::time::Instant::now();
    v.start().await;
    assert!(started.elapsed() < tokens::START_WAIT + std::time::Duration::from_secs(1));
    assert!(!v.ready());
}

/// Fixed keys (a client's registered JWKS, RFC 7523) get the same rules as
/// an issuer's: signature, asymmetric `alg`, no key-naming headers,
/// `exp`/`nbf`, exact `iss`, `aud`.
#[test]
fn fixed_keys_are_held_to_the_same_rules() {
    let key = SigningKey::es256("client-key");
    let other = SigningKey::es256("other-key");
    let jwks = json!({"keys": [key.jwk]}).to_string();
    let audiences = ["https://auth.test/token".to_owned()];
    let now = now();
    let claims = |iss: &str, aud: &str, exp: u64| json!({"iss": iss, "sub": iss, "aud": aud, "exp": exp, "jti": "j1"});
    let check =
        |token: &str| tokens::verify_with_keys(token, &jwks, "my-client", &audiences, 30, now);
    let good = key.sign(&claims("my-client", "https://auth.test/token", now + 60));
    assert_eq!(check(&good).unwrap()["jti"], "j1");
    let cases = [
        (
            key.sign(&claims("another", "https://auth.test/token", now + 60)),
            "issuer",
        ),
        (
            key.sign(&claims("my-client", "https://elsewhere", now + 60)),
            "audience",
        ),
        (
            key.sign(&claims("my-client", "https://auth.test/token", now - 60)),
            "expired",
        ),
        (
            other.sign(&claims("my-client", "https://auth.test/token", now + 60)),
            "unknown key",
        ),
        (
            key.sign_raw(
                &json!({"alg": "ES256", "kid": "client-key", "jwk": key.jwk}),
                &claims("my-client", "https://auth.test/token", now + 60),
            ),
            "jwk header",
        ),
    ];
    for (token, why) in cases {
        assert!(
            check(&token).is_err(),
            "accepted a token with the wrong {why}"
        );
    }
    let body = claims("my-client", "https://auth.test/token", now + 60);
    let symmetric = key.sign_raw(&json!({"alg": "HS256", "kid": "client-key"}), &body);
    assert!(matches!(
        check(&symmetric),
        Err(TokenError::DisallowedAlgorithm(_))
    ));
    let unsigned = format!(
        "{}.{}.",
        tokens::testing::b64(&json!({"alg": "none"})),
        tokens::testing::b64(&body)
    );
    assert!(check(&unsigned).is_err(), "accepted an unsigned token");
}
