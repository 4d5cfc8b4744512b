//! Opaque tokens, introspected (RFC 7662) at a real HTTP issuer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokens::testing::{SigningKey, TestIssuer as Issuer, now};
use tokens::{IntrospectionConfig, IssuerConfig, TokenError, Verifier};

async fn verifier(configs: &[IssuerConfig]) -> Verifier {
    let v = Verifier::new(configs).unwrap();
    v.start().await;
    v
}

#[tokio::test]
async fn active_access_tokens_pass_and_the_answer_is_cached() {
    let key = SigningKey::es256("k");
    let issuer = Issuer::start(&[&key]).await;
    let v = verifier(&[issuer.introspecting_config(30)]).await;
    issuer.answer("opaque-alice", issuer.active("alice"));

    let verified = v.verify("opaque-alice").await.unwrap();
    assert_eq!(verified.claims["sub"], "alice");
    assert_eq!(verified.claims["iss"], issuer.url.as_str());
    assert!(!verified.claims.contains_key("active"));
    // Trusted for cache_seconds, not until exp (300 s away).
    let until = verified.expires_at;
    assert!(until <= now() + 30 && until + 5 >= now() + 30, "{until}");
    v.verify("opaque-alice").await.unwrap();
    assert_eq!(issuer.introspections(), 1);
    // JWTs still go to the JWKS, never to introspection.
    v.verify(&key.sign(&issuer.claims("bob"))).await.unwrap();
    assert_eq!(issuer.introspections(), 1);

    // An answer without `exp`, `iss` or `token_type` is fine: RFC 7662
    // makes them optional; the configured issuer vouches.
    issuer.answer(
        "bare",
        json!({"active": true, "sub": "carol", "aud": "api"}),
    );
    let bare = v.verify("bare").await.unwrap();
    assert_eq!(bare.claims["iss"], issuer.url.as_str());
}

#[tokio::test]
async fn answers_that_are_not_an_active_access_token_for_us_are_refused() {
    let issuer = Issuer::start(&[]).await;
    let v = verifier(&[issuer.introspecting_config(30)]).await;
    let with = |field: &str, value: serde_json::Value| {
        let mut a = issuer.active("alice");
        a[field] = value;
        a
    };
    let cases = [
        ("unknown", None, TokenError::Inactive),
        (
            "inactive",
            Some(json!({"active": false})),
            TokenError::Inactive,
        ),
        (
            "active-as-string",
            Some(with("active", json!("true"))),
            TokenError::Inactive,
        ),
        (
            "refresh",
            Some(with("token_type", json!("refresh_token"))),
            TokenError::NotAccessToken,
        ),
        (
            "ory-refresh",
            Some(with("token_use", json!("refresh_token"))),
            TokenError::NotAccessToken,
        ),
        (
            "other-issuer",
            Some(with("iss", json!("https://elsewhere"))),
            TokenError::UnknownIssuer,
        ),
        (
            "other-audience",
            Some(with("aud", json!(["other"]))),
            TokenError::WrongAudience,
        ),
        (
            "no-audience",
            Some({
                let mut a = issuer.active("alice");
                a.as_object_mut().unwrap().remove("aud");
                a
            }),
            TokenError::WrongAudience,
        ),
        (
            "expired",
            Some(with("exp", json!(now() - 120))),
            TokenError::Expired,
        ),
        (
            "future-nbf",
            Some(with("nbf", json!(now() + 120))),
            TokenError::NotYetValid,
        ),
        (
            "exp-as-string",
            Some(with("exp", json!("soon"))),
            TokenError::BadClaim("exp"),
        ),
    ];
    for (token, answer, expected) in cases {
        if let Some(answer) = answer {
            issuer.answer(token, answer);
        }
        assert_eq!(v.verify(token).await.unwrap_err(), expected, "{token}");
    }
    // Refusals are remembered briefly: asking again costs nothing.
    let asked = issuer.introspections();
    assert_eq!(
        v.verify("refresh").await.unwrap_err(),
        TokenError::NotAccessToken
    );
    assert_eq!(issuer.introspections(), asked);
}

#[tokio::test]
async fn concurrent_lookups_of_one_token_share_one_request() {
    let issuer = Issuer::start(&[]).await;
    let v = Arc::new(verifier(&[issuer.introspecting_config(30)]).await);
    issuer.answer("shared", issuer.active("alice"));
    issuer.set_introspection_delay(Duration::from_millis(300));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let v = v.clone();
            tokio::spawn(async move { v.verify("shared").await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap().unwrap().claims["sub"], "alice");
    }
    assert_eq!(issuer.introspections(), 1);
}

#[tokio::test]
async fn an_unreachable_or_refusing_issuer_is_unavailable_and_not_remembered() {
    let issuer = Issuer::start(&[]).await;
    issuer.answer("t", issuer.active("alice"));
    let v = verifier(&[issuer.introspecting_config(30)]).await;
    issuer.set_down(true);
    let e = v.verify("t").await.unwrap_err();
    assert_eq!(e, TokenError::IntrospectionUnavailable);
    assert!(e.is_unavailable());
    issuer.set_down(false);
    assert_eq!(v.verify("t").await.unwrap().claims["sub"], "alice");

    // Wrong client credentials: the issuer says 401, which is our
    // misconfiguration, not the caller's bad token.
    let mut config = issuer.introspecting_config(30);
    config.introspection.as_mut().unwrap().client_secret = Some("wrong".into());
    let wrong = verifier(&[config]).await;
    assert_eq!(
        wrong.verify("t").await.unwrap_err(),
        TokenError::IntrospectionUnavailable
    );

    // A slow issuer is cut off by the timeout.
    let mut config = issuer.introspecting_config(30);
    config.introspection.as_mut().unwrap().timeout_ms = 100;
    let impatient = verifier(&[config]).await;
    issuer.set_introspection_delay(Duration::from_millis(500));
    assert_eq!(
        impatient.verify("t").await.unwrap_err(),
        TokenError::IntrospectionUnavailable
    );
}

#[tokio::test]
async fn without_introspection_opaque_tokens_are_malformed() {
    let issuer = Issuer::start(&[]).await;
    issuer.answer("t", issuer.active("alice"));
    let v = verifier(&[issuer.config()]).await;
    assert!(matches!(
        v.verify("t").await.unwrap_err(),
        TokenError::Malformed(_)
    ));
    assert_eq!(issuer.introspections(), 0);
}

#[test]
fn bad_introspection_config_names_the_field() {
    let base = || IssuerConfig {
        introspection: Some(IntrospectionConfig {
            endpoint: None,
            client_id: "rs".into(),
            client_secret: Some("s".into()),
            client_secret_file: None,
            cache_seconds: 30,
            timeout_ms: 2000,
        }),
        ..toml::from_str(
            r#"issuer = "https://a"
audiences = ["x"]"#,
        )
        .unwrap()
    };
    let field = |change: &dyn Fn(&mut IntrospectionConfig)| {
        let mut config = base();
        change(config.introspection.as_mut().unwrap());
        Verifier::new(&[config]).unwrap_err().to_string()
    };
    assert!(field(&|c| c.client_id.clear()).starts_with("issuers[0].introspection.client_id"));
    assert!(
        field(&|c| c.client_secret = None).starts_with("issuers[0].introspection.client_secret")
    );
    assert!(
        field(&|c| c.client_secret_file = Some("/x".into()))
            .starts_with("issuers[0].introspection.client_secret")
    );
    assert!(
        field(&|c| {
            c.client_secret = None;
            c.client_secret_file = Some("/nonexistent/secret".into());
        })
        .contains("/nonexistent/secret")
    );
    assert!(field(&|c| c.cache_seconds = 0).starts_with("issuers[0].introspection.cache_seconds"));
    assert!(
        field(&|c| c.endpoint = Some("file:///x".into()))
            .starts_with("issuers[0].introspection.endpoint")
    );
    // Two introspecting issuers: an opaque token would not say which.
    let mut second = base();
    second.issuer = "https://b".into();
    let err = Verifier::new(&[base(), second]).unwrap_err().to_string();
    assert!(err.starts_with("issuers[1].introspection"), "{err}");

    // A secret from a file (trailing newline dropped).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, "from-file\n").unwrap();
    let mut config = base();
    let i = config.introspection.as_mut().unwrap();
    i.client_secret = None;
    i.client_secret_file = Some(path.display().to_string());
    assert!(Verifier::new(&[config]).is_ok());
}

#[tokio::test]
async fn the_client_secret_can_come_from_a_file() {
    let issuer = Issuer::start(&[]).await;
    issuer.answer("t", issuer.active("alice"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(
        &path,
        format!("{}\n", tokens::testing::INTROSPECTION_CLIENT.1),
    )
    .unwrap();
    let mut config = issuer.introspecting_config(30);
    let i = config.introspection.as_mut().unwrap();
    i.client_secret = None;
    i.client_secret_file = Some(path.display().to_string());
    let v = verifier(&[config]).await;
    assert_eq!(v.verify("t").await.unwrap().claims["sub"], "alice");
}
