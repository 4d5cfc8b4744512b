//! Running the server: configuration errors, the example config, the
//! production backends, metrics, client addresses behind proxies.

use super::*;

#[tokio::test]
async fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    /// Arguments, environment, what the message must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 7] = [
        (
            &["serve", "--check"],
            &[("PORTCULLIS_AUTHSERVER__ISSUER", "https://auth.example.com")],
            "master_key",
        ),
        (&["serve", "--check"], &[], "issuer"),
        (
            &["--dev", "serve", "--check"],
            &[("PORTCULLIS_AUTHSERVER__SIGNING_ALG", "HS256")],
            "signing_alg",
        ),
        (
            &["--dev", "serve", "--check"],
            &[("PORTCULLIS_AUTHSERVER__ARGON2__MEMORY_KIB", "1024")],
            "argon2",
        ),
        (
            &["--dev", "serve", "--check", "--listen", "0.0.0.0:8080"],
            &[],
            "loopback",
        ),
        (
            &["--dev", "serve", "--check"],
            &[("PORTCULLIS_AUTHSERVER__MFA__SMS_CODE_SECONDS", "0")],
            "mfa.sms_code_seconds",
        ),
        (
            &["--dev", "serve", "--check"],
            &[("PORTCULLIS_AUTHSERVER__MFA__RECENT_SECONDS", "-5")],
            "mfa.recent_seconds",
        ),
    ];
    for (args, env, names) in cases {
        let mut cmd = command(dir.path());
        cmd.args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
        assert!(stderr.contains(names), "{args:?}: {stderr}");
    }
    let out = command(dir.path())
        .args(["--dev", "serve", "--check"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        !dir.path().join("data").exists(),
        "--check binds and writes nothing"
    );
}

#[tokio::test]
async fn production_backends_postgres_and_redis() {
    let Some((url, schema)) = crate::support::pg_schema_url().await else {
        return;
    };
    if !crate::support::redis_available().await {
        crate::support::drop_schema(&schema).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("pc_test:{}:", crate::support::unique());
    let redis = crate::support::redis_url();
    let server = Authserver::dev(
        dir.path(),
        &["--database-url", &url, "--redis-url", &redis],
        &[("PORTCULLIS_AUTHSERVER__REDIS_PREFIX", &prefix)],
    );
    let (svc, secret) = server.client("service");
    let token = server.service_token(None).await;
    let (_, _, body) = server
        .form("/introspect", Some((&svc, &secret)), &[("token", &token)])
        .await;
    assert_eq!(body["active"], true);
    let jti = body["jti"].as_str().unwrap().to_owned();
    let (status, _, _) = server
        .form("/revoke", Some((&svc, &secret)), &[("token", &token)])
        .await;
    assert_eq!(status, 200);
    let (_, _, body) = server
        .form("/introspect", Some((&svc, &secret)), &[("token", &token)])
        .await;
    assert_eq!(body["active"], false);
    // The browser flow too: sessions, codes and refresh tokens in Redis.
    let mut browser = crate::browser::Browser::new(&server.url(""));
    let login = browser
        .get(&crate::flow::authorize_url(
            "demo-web",
            crate::flow::WEB_REDIRECT,
            &[],
        ))
        .await;
    let consent_page = crate::flow::log_in(
        &mut browser,
        &login,
        "demo",
        &crate::flow::password(&server),
    )
    .await;
    let back = crate::flow::consent(&mut browser, &consent_page, "allow").await;
    let (status, tokens) = crate::flow::exchange(
        &server,
        &back.redirect_param("code").unwrap(),
        crate::flow::VERIFIER,
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["refresh_token"].is_string() && tokens["id_token"].is_string());
    let ready: Value = server.get_json("/readyz").await;
    assert_eq!(ready, json!({"database": "ok", "ephemeral": "ok"}));
    drop(server);

    // The revocation is in Redis, the audit trail and keys in PostgreSQL;
    // nothing went to the embedded defaults.
    let ephemeral = authserver::ephemeral::Ephemeral::redis(&redis, &prefix)
        .await
        .unwrap();
    assert!(
        ephemeral
            .get(&format!("revoked:{jti}"))
            .await
            .unwrap()
            .is_some()
    );
    let store = authserver::store::Store::connect(&url).await.unwrap();
    assert_eq!(store.backend_name(), "postgres");
    let actions: Vec<_> = store
        .audit_events(100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert!(actions.iter().any(|a| a == "token.revoke"), "{actions:?}");
    assert_eq!(store.keys().await.unwrap().len(), 2);
    store.close().await;
    assert!(!dir.path().join("data/authserver.db").exists());
    crate::support::drop_schema(&schema).await;
}

#[test]
fn the_example_config_is_valid_and_shows_the_defaults() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("authserver.example.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path())
        .args(["--dev", "serve", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&path).unwrap();
    let file: toml::Table = text.parse().unwrap();
    let defaults = authserver::config::Config::default();
    assert_eq!(
        file["tokens"]["access_seconds"].as_integer(),
        Some(i64::try_from(defaults.tokens.access_seconds).unwrap())
    );
    assert_eq!(
        file["argon2"]["memory_kib"].as_integer(),
        Some(i64::from(defaults.argon2.memory_kib))
    );
    assert_eq!(file["audience"].as_str(), Some(defaults.audience.as_str()));
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_tokens_by_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let _ = server.service_token(None).await;
    let _ = server
        .http
        .get(server.url("/no/such/path/abc123"))
        .send()
        .await
        .unwrap();
    let text = server
        .http
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"auth_requests_total{endpoint="/token",method="POST",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"auth_tokens_issued_total{type="access"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("auth_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(!text.contains("abc123"), "raw paths never become labels");
}

#[tokio::test]
async fn the_client_address_comes_from_trusted_proxies_only() {
    for (trusted, expect) in [("[\"127.0.0.1\"]", "203.0.113.9"), ("[]", "127.0.0.1")] {
        let dir = tempfile::tempdir().unwrap();
        let server = Authserver::dev(
            dir.path(),
            &[],
            &[("PORTCULLIS_AUTHSERVER__TRUSTED_PROXIES", trusted)],
        );
        let resp = server
            .http
            .post(server.url("/token"))
            .basic_auth("demo-service", Some("wrong"))
            .header("x-forwarded-for", "6.6.6.6, 203.0.113.9")
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        let store = server.embedded_store().await;
        let events = store.audit_events(10).await.unwrap();
        store.close().await;
        let failure = events
            .iter()
            .find(|e| e.action == "client.authenticate")
            .unwrap();
        assert_eq!(
            failure.source_ip.as_deref(),
            Some(expect),
            "trusted_proxies = {trusted}"
        );
    }
}
