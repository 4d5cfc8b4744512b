//! The token, introspection and revocation endpoints, against the real
//! binary; tokens checked by the verifier the gateway and sidecar use.

use std::time::Duration;

use serde_json::{Value, json};
use tokens::testing::{SigningKey, b64};

use crate::server::{Authserver, command};

fn verifier_for(server: &Authserver) -> tokens::Verifier {
    let config: tokens::IssuerConfig = serde_json::from_value(json!({
        "issuer": server.issuer(),
        "jwks_uri": server.url("/jwks"),
        "audiences": ["portcullis"],
        "token_type": "at+jwt",
    }))
    .unwrap();
    tokens::Verifier::new(&[config]).unwrap()
}

#[tokio::test]
async fn client_credentials_tokens_pass_the_gateways_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let token = server.service_token(Some("orders:read")).await;
    let verifier = verifier_for(&server);
    verifier.start().await;
    let verified = verifier.verify(&token).await.expect("verifies");
    assert_eq!(verified.claims["sub"], "demo-service");
    assert_eq!(verified.claims["client_id"], "demo-service");
    assert_eq!(verified.claims["scope"], "orders:read");
    assert_eq!(verified.claims["iss"], server.issuer());
    let lifetime =
        verified.claims["exp"].as_i64().unwrap() - verified.claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600);
    assert!(verified.claims["jti"].as_str().unwrap().len() >= 20);

    // Without `scope`, the client's registered scopes; repeats collapse.
    let all = server.service_token(None).await;
    assert_eq!(
        verifier.verify(&all).await.unwrap().claims["scope"],
        "orders:read orders:write"
    );
    let twice = server.service_token(Some("orders:read orders:read")).await;
    assert_eq!(
        verifier.verify(&twice).await.unwrap().claims["scope"],
        "orders:read"
    );

    // Metadata lists what is implemented, at the issuer's address.
    let meta: Value = server
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"], server.issuer());
    assert_eq!(meta["token_endpoint"], format!("{}/token", server.issuer()));
    assert_eq!(
        meta["grant_types_supported"],
        json!(["authorization_code", "refresh_token", "client_credentials"])
    );

    // Every issued token is in the audit log (read through the CLI's store).
    let events = audit_actions(&server).await;
    assert_eq!(
        events.iter().filter(|a| *a == "token.issue").count(),
        3,
        "{events:?}"
    );
}

async fn audit_actions(server: &Authserver) -> Vec<String> {
    let store = server.embedded_store().await;
    let events = store.audit_events(1000).await.unwrap();
    store.close().await;
    events.into_iter().map(|e| e.action).collect()
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let (svc, secret) = server.client("service");
    let (web, web_secret) = server.client("web");
    let (spa, _) = server.client("spa");
    let cc = [("grant_type", "client_credentials")];
    type Case<'a> = (
        &'a str,
        Option<(&'a str, &'a str)>,
        Vec<(&'a str, &'a str)>,
        u16,
        &'a str,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        (
            "wrong secret",
            Some((&svc, "wrong")),
            cc.to_vec(),
            401,
            "invalid_client",
            "authentication failed",
        ),
        (
            "unknown client",
            Some(("nobody", "x")),
            cc.to_vec(),
            401,
            "invalid_client",
            "authentication failed",
        ),
        (
            "no client at all",
            None,
            cc.to_vec(),
            401,
            "invalid_client",
            "no client authentication",
        ),
        (
            "wrong secret in the body",
            None,
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &svc),
                ("client_secret", "wrong"),
            ],
            401,
            "invalid_client",
            "authentication failed",
        ),
        (
            "two authentication methods",
            Some((&svc, &secret)),
            vec![
                ("grant_type", "client_credentials"),
                ("client_secret", &secret),
            ],
            400,
            "invalid_request",
            "more than one",
        ),
        (
            "client_id differs from Basic",
            Some((&svc, &secret)),
            vec![("grant_type", "client_credentials"), ("client_id", "other")],
            400,
            "invalid_request",
            "client_id",
        ),
        (
            "missing grant_type",
            Some((&svc, &secret)),
            vec![],
            400,
            "invalid_request",
            "grant_type",
        ),
        (
            "unknown grant_type",
            Some((&svc, &secret)),
            vec![("grant_type", "password")],
            400,
            "unsupported_grant_type",
            "password",
        ),
        (
            "scope not allowed",
            Some((&svc, &secret)),
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "orders:read admin"),
            ],
            400,
            "invalid_scope",
            "admin",
        ),
        (
            "malformed scope",
            Some((&svc, &secret)),
            vec![
                ("grant_type", "client_credentials"),
                ("scope", "orders:read \"x\""),
            ],
            400,
            "invalid_scope",
            "valid scope token",
        ),
        (
            "web client not registered for client_credentials",
            Some((&web, &web_secret)),
            cc.to_vec(),
            400,
            "unauthorized_client",
            "not registered",
        ),
        (
            "public client",
            None,
            vec![("grant_type", "client_credentials"), ("client_id", &spa)],
            400,
            "unauthorized_client",
            "public",
        ),
    ];
    for (name, basic, fields, status, error, says) in cases {
        let (got, headers, body) = server.form("/token", basic, &fields).await;
        assert_eq!(got, status, "{name}: {body}");
        assert_eq!(body["error"], error, "{name}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{name}: {description}");
        assert_eq!(headers["cache-control"], "no-store", "{name}");
        let challenged = headers.contains_key("www-authenticate");
        assert_eq!(
            challenged,
            status == 401,
            "{name}: every 401 carries a challenge"
        );
    }

    // The secret is accepted in the body too (client_secret_post).
    let (status, _, body) = server
        .form(
            "/token",
            None,
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &svc),
                ("client_secret", &secret),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Repeated parameters, the wrong media type, oversized bodies.
    let raw = |body: &'static str, content_type: &'static str| {
        server
            .http
            .post(server.url("/token"))
            .basic_auth(&svc, Some(&secret))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let resp = raw(
        "grant_type=client_credentials&grant_type=client_credentials",
        "application/x-www-form-urlencoded",
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("repeated"),
        "{body}"
    );
    let resp = raw(r#"{"grant_type":"client_credentials"}"#, "application/json")
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let big = "x".repeat(70 * 1024);
    let resp = server
        .http
        .post(server.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&pad={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);

    // Failed client authentications are audited.
    let events = audit_actions(&server).await;
    assert!(
        events
            .iter()
            .filter(|a| *a == "client.authenticate")
            .count()
            >= 3,
        "{events:?}"
    );
}

#[tokio::test]
async fn introspection_and_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let (svc, secret) = server.client("service");
    let (web, web_secret) = server.client("web");
    let token = server.service_token(None).await;

    let introspect = |id: String, secret: String, token: String| {
        let server = &server;
        async move {
            server
                .form("/introspect", Some((&id, &secret)), &[("token", &token)])
                .await
        }
    };
    // A resource server (demo-service is the demo's) may introspect.
    let (status, _, body) = introspect(svc.clone(), secret.clone(), token.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(body["active"], true);
    assert_eq!(body["client_id"], "demo-service");
    assert_eq!(body["scope"], "orders:read orders:write");
    assert_eq!(body["token_type"], "Bearer");
    // Any other client hears only "inactive" (RFC 7662 §4), claims and all.
    let (status, _, body) = introspect(web.clone(), web_secret.clone(), token.clone()).await;
    assert_eq!((status, body), (200, json!({"active": false})));
    // Unauthenticated introspection is refused; junk is just inactive.
    let (status, _, _) = server.form("/introspect", None, &[("token", &token)]).await;
    assert_eq!(status, 401);
    for junk in ["junk", "a.b.c", &token[..token.len() - 4]] {
        let (_, _, body) = introspect(svc.clone(), secret.clone(), junk.into()).await;
        assert_eq!(body, json!({"active": false}), "{junk}");
    }

    // Another client cannot revoke it (and is not told).
    let (status, _, _) = server
        .form("/revoke", Some((&web, &web_secret)), &[("token", &token)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        introspect(svc.clone(), secret.clone(), token.clone())
            .await
            .2["active"],
        true
    );
    // Its own client can; junk is fine; a wrong hint is only a hint
    // (RFC 7009 §2.1), so the token is found anyway.
    let (status, _, _) = server
        .form("/revoke", Some((&svc, &secret)), &[("token", "junk")])
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = server
        .form(
            "/revoke",
            Some((&svc, &secret)),
            &[("token", &token), ("token_type_hint", "refresh_token")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        introspect(svc.clone(), secret.clone(), token.clone())
            .await
            .2,
        json!({"active": false})
    );
    // A fresh token is unaffected.
    let fresh = server.service_token(None).await;
    assert_eq!(
        introspect(svc.clone(), secret.clone(), fresh).await.2["active"],
        true
    );
    assert!(
        audit_actions(&server)
            .await
            .iter()
            .any(|a| a == "token.revoke")
    );
    // Secrets never reach the logs.
    let logs = server.stderr.lock().unwrap().join("\n");
    for secret in [&secret, &web_secret, &token] {
        assert!(!logs.contains(secret.as_str()), "a secret was logged");
    }
}

/// A client that is no resource server learns about tokens meant for it:
/// those whose audience names it.
#[tokio::test]
async fn a_token_for_the_caller_may_be_introspected_by_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(
        dir.path(),
        &[],
        &[("PORTCULLIS_AUTHSERVER__AUDIENCE", "demo-web")],
    );
    let (web, web_secret) = server.client("web");
    let token = server.service_token(None).await;
    let (status, _, body) = server
        .form(
            "/introspect",
            Some((&web, &web_secret)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (&body["active"], &body["aud"]),
        (&json!(true), &json!("demo-web")),
        "{body}"
    );
}

#[tokio::test]
async fn opaque_access_tokens_are_looked_up_and_revoked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(
        dir.path(),
        &[],
        &[("PORTCULLIS_AUTHSERVER__TOKENS__ACCESS_FORMAT", "opaque")],
    );
    let (svc, secret) = server.client("service");
    let token = server.service_token(Some("orders:read")).await;
    // A reference token: nothing to decode, nothing a verifier could accept.
    assert!(!token.contains('.') && token.len() >= 40, "{token}");
    assert!(verifier_for(&server).verify(&token).await.is_err());

    let introspect = |token: String| {
        let (server, svc, secret) = (&server, svc.clone(), secret.clone());
        async move {
            server
                .form("/introspect", Some((&svc, &secret)), &[("token", &token)])
                .await
                .2
        }
    };
    let body = introspect(token.clone()).await;
    assert_eq!(body["active"], true, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["client_id"], "demo-service");
    assert_eq!(body["sub"], "demo-service");
    assert_eq!(body["scope"], "orders:read");
    assert_eq!(body["aud"], "portcullis");
    assert_eq!(body["iss"], server.issuer());
    assert!(body["exp"].as_i64().unwrap() > body["iat"].as_i64().unwrap());
    // Unknown or altered tokens are just inactive.
    let mut altered = token.clone();
    altered.replace_range(..1, if token.starts_with('A') { "B" } else { "A" });
    for junk in [altered.as_str(), "x"] {
        assert_eq!(introspect(junk.into()).await, json!({"active": false}));
    }

    // Revocation by its client ends it for every resource server at once.
    let (status, _, _) = server
        .form("/revoke", Some((&svc, &secret)), &[("token", &token)])
        .await;
    assert_eq!(status, 200);
    assert_eq!(introspect(token).await, json!({"active": false}));
    let fresh = server.service_token(None).await;
    assert_eq!(introspect(fresh).await["active"], true);
}

#[tokio::test]
async fn private_key_jwt_clients_authenticate_with_single_use_assertions() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let key = SigningKey::es256("client-key-1");
    let jwks = dir.path().join("client-jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk]}).to_string()).unwrap();
    let out = command(dir.path())
        .args([
            "--dev",
            "client",
            "add",
            "reporting",
            "--kind",
            "service",
            "--scope",
            "orders:read",
            "--jwks-file",
        ])
        .arg(&jwks)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(issued["token_endpoint_auth_method"], "private_key_jwt");
    assert!(issued.get("client_secret").is_none());

    let now = tokens::testing::now();
    let assertion = |jti: &str, aud: &str, sub: &str, exp: u64| {
        key.sign(&json!({"iss": sub, "sub": sub, "aud": aud, "jti": jti, "exp": exp, "iat": now}))
    };
    let token_endpoint = format!("{}/token", server.issuer());
    let ask = |assertion: String| {
        let server = &server;
        async move {
            server
                .form(
                    "/token",
                    None,
                    &[
                        ("grant_type", "client_credentials"),
                        (
                            "client_assertion_type",
                            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                        ),
                        ("client_assertion", &assertion),
                    ],
                )
                .await
        }
    };
    let good = assertion("a-1", &token_endpoint, "reporting", now + 60);
    let (status, _, body) = ask(good.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "orders:read");
    let (status, _, body) = ask(good).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "replayed assertion"
    );
    // The issuer as audience is accepted too.
    assert_eq!(
        ask(assertion("a-2", &server.issuer(), "reporting", now + 60))
            .await
            .0,
        200
    );
    for (name, bad) in [
        ("expired", assertion("a-3", &token_endpoint, "reporting", now - 120)),
        ("wrong audience", assertion("a-4", "https://elsewhere/token", "reporting", now + 60)),
        ("another client's name", assertion("a-5", &token_endpoint, "demo-service", now + 60)),
        ("signed by another key", SigningKey::es256("client-key-1").sign(&json!({
            "iss": "reporting", "sub": "reporting", "aud": token_endpoint, "jti": "a-6", "exp": now + 60
        }))),
        ("alg none", format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&json!({
            "iss": "reporting", "sub": "reporting", "aud": token_endpoint, "jti": "a-7", "exp": now + 60
        })))),
    ] {
        let (status, _, body) = ask(bad).await;
        assert_eq!((status, body["error"].as_str()), (401, Some("invalid_client")), "{name}: {body}");
    }
}

#[tokio::test]
async fn key_rotation_publishes_before_signing_and_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("PORTCULLIS_AUTHSERVER__TOKENS__KEY_REFRESH_SECONDS", "1")];
    let server = Authserver::dev(dir.path(), &[], &env);
    let jwks = || async {
        let v: Value = server.get_json("/jwks").await;
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let kid_of = |token: &str| {
        let header = token.split('.').next().unwrap();
        let bytes = base64_decode(header);
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = jwks().await;
    assert_eq!(before.len(), 2, "active + next");
    let old_token = server.service_token(None).await;
    let old_kid = kid_of(&old_token);
    let next_kid = before.iter().find(|k| **k != old_kid).unwrap().clone();

    // Right after start, the next key is too new to sign: refused.
    let out = command(dir.path())
        .args(["--dev", "keys", "rotate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verifiers may not have it yet"));
    let out = command(dir.path())
        .args(["--dev", "keys", "rotate", "--force"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("active: {next_kid}")),
        "{printed}"
    );

    // The running server picks the rotation up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let new_token = loop {
        let t = server.service_token(None).await;
        if kid_of(&t) != old_kid {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        kid_of(&new_token),
        next_kid,
        "the key published before is the one that signs"
    );
    let after = jwks().await;
    assert_eq!(after.len(), 3, "retired + active + new next: {after:?}");
    assert!(after.contains(&old_kid));
    let verifier = verifier_for(&server);
    verifier.start().await;
    assert!(
        verifier.verify(&old_token).await.is_ok(),
        "old tokens still verify"
    );
    assert!(verifier.verify(&new_token).await.is_ok());

    // Private keys are sealed at rest: no PKCS#8 in the clear.
    let store = server.embedded_store().await;
    for key in store.keys().await.unwrap() {
        assert_eq!(key.sealed_private_key[0], 1, "sealed format");
        assert!(
            !key.sealed_private_key
                .windows(3)
                .any(|w| w == [0x30, 0x81, 0x87]),
            "PKCS#8 header in clear"
        );
    }
    store.close().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn restart_keeps_keys_and_rotates_printed_credentials() {
    let dir = tempfile::tempdir().unwrap();
    // The port changes between runs; the issuer identifier must not.
    let env = [("PORTCULLIS_AUTHSERVER__ISSUER", "http://auth.test")];
    let first = Authserver::dev(dir.path(), &[], &env);
    let (svc, old_secret) = first.client("service");
    let token = first.service_token(None).await;
    let old_password = first.creds["user"]["password"].as_str().unwrap().to_owned();
    drop(first);
    let second = Authserver::dev(dir.path(), &[], &env);
    let (_, new_secret) = second.client("service");
    assert_ne!(new_secret, old_secret);
    assert_ne!(second.creds["user"]["password"], old_password);
    let (status, _, _) = second
        .form(
            "/token",
            Some((&svc, &old_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 401, "the old secret is gone");
    let (_, _, body) = second
        .form(
            "/introspect",
            Some((&svc, &new_secret)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(body["active"], true, "the same keys after restart: {body}");
}

#[tokio::test]
async fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    /// Arguments, environment, what the message must name.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 5] = [
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
async fn rs256_eddsa_and_ps256_keys_sign_verifiable_tokens() {
    for alg in ["RS256", "EdDSA", "PS256"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Authserver::dev(
            dir.path(),
            &[],
            &[("PORTCULLIS_AUTHSERVER__SIGNING_ALG", alg)],
        );
        let token = server.service_token(None).await;
        let header: Value =
            serde_json::from_slice(&base64_decode(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg);
        let verifier = verifier_for(&server);
        verifier.start().await;
        assert!(verifier.verify(&token).await.is_ok(), "{alg}");
    }
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
