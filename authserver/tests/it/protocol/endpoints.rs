//! The token, introspection and revocation endpoints: errors by RFC 6749,
//! who may introspect what, opaque tokens, client assertions.

use super::*;

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
    let logs = server.logs();
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
