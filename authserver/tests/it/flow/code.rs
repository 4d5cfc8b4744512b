//! Codes and refresh tokens: the whole flow, replay, binding to client,
//! redirect and verifier, public clients.

use super::*;

#[tokio::test]
async fn code_flow_with_pkce_consent_refresh_and_userinfo() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));

    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    assert_eq!(login_page.status, 200);
    let csp = login_page.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    // No inline script: our one static file, and the passkey options as a
    // JSON data block (not run).
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    for tag in login_page.body.split("<script").skip(1) {
        assert!(
            tag.starts_with(" type=\"application/json\"")
                || tag.starts_with(" src=\"/static/webauthn.js\" defer></script>"),
            "{tag}"
        );
    }
    assert!(login_page.body.contains("Demo web app"));

    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    assert_eq!(consent_page.status, 200, "{}", consent_page.body);
    assert!(consent_page.body.contains("orders:read"));
    let session_cookie = browser
        .cookies
        .keys()
        .find(|k| k.contains("session"))
        .cloned()
        .unwrap();
    assert_eq!(
        session_cookie, "portcullis-session",
        "plain-HTTP dev mode: no __Host- prefix"
    );

    let back = consent(&mut browser, &consent_page, "allow").await;
    assert_eq!(back.status, 303);
    assert!(
        back.location().starts_with(&format!("{WEB_REDIRECT}?")),
        "{}",
        back.location()
    );
    assert_eq!(back.redirect_param("state").as_deref(), Some("state-123"));
    assert_eq!(back.redirect_param("iss"), Some(server.issuer()));
    let code = back.redirect_param("code").unwrap();

    // A wrong verifier fails and burns the code.
    let (status, body) = exchange(&server, &code, &"x".repeat(43)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Again, consent is remembered: straight back with a code.
    let back = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    let code = back.redirect_param("code").unwrap();
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile groups orders:read");

    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["nonce"], "nonce-456");
    assert_eq!(id["azp"], "demo-web");
    assert_eq!(id["preferred_username"], "demo");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert_eq!(id["groups"], json!(["editors", "staff"]));
    let now = i64::try_from(tokens::testing::now()).unwrap();
    assert!((now - id["auth_time"].as_i64().unwrap()).abs() < 60);
    // at_hash matches the access token.
    let access = tokens["access_token"].as_str().unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    use base64::Engine as _;
    let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
    assert_eq!(id["at_hash"], expect);

    // The access token carries what the sidecar's policies read.
    let verifier: tokens::IssuerConfig = serde_json::from_value(json!({
        "issuer": server.issuer(), "audiences": ["portcullis"], "token_type": "at+jwt"
    }))
    .unwrap();
    let verifier = tokens::Verifier::new(&[verifier]).unwrap();
    verifier.start().await;
    let claims = &verifier
        .verify(access)
        .await
        .expect("discovery + JWKS")
        .claims;
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["groups"], json!(["editors", "staff"]));
    assert_eq!(claims["client_id"], "demo-web");

    let info: Value = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["name"], "Demo User");
    assert!(info.get("email").is_none(), "email scope not granted");

    // Refresh rotates; reusing the old refresh token ends the family.
    let (wid, wsecret) = server.client("web");
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let (server, wid, wsecret) = (&server, wid.clone(), wsecret.clone());
        async move {
            server
                .form(
                    "/token",
                    Some((&wid, &wsecret)),
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                )
                .await
        }
    };
    let (status, _, rotated) = refresh(first.clone()).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(rotated["id_token"].is_string());
    // The holder may introspect its refresh token; another client learns nothing.
    let (_, _, info) = server
        .form("/introspect", Some((&wid, &wsecret)), &[("token", &second)])
        .await;
    assert_eq!(
        (info["active"].as_bool(), info["token_type"].as_str()),
        (Some(true), Some("refresh_token")),
        "{info}"
    );
    let (svc, ssecret) = server.client("service");
    let (_, _, info) = server
        .form("/introspect", Some((&svc, &ssecret)), &[("token", &second)])
        .await;
    assert_eq!(info, json!({"active": false}));
    let (status, _, body) = refresh(first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "reuse detected"
    );
    let (_, _, info) = server
        .form("/introspect", Some((&wid, &wsecret)), &[("token", &second)])
        .await;
    assert_eq!(info, json!({"active": false}), "the family is revoked");
    let (status, _, body) = refresh(second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "family revoked: {body}"
    );
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let code = back.redirect_param("code").unwrap();
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (svc, secret) = server.client("service");
    let (_, _, info) = server
        .form(
            "/introspect",
            Some((&svc, &secret)),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(
        info["active"], false,
        "the first exchange's access token is revoked"
    );
    let (wid, wsecret) = server.client("web");
    let (status, _, _) = server
        .form(
            "/token",
            Some((&wid, &wsecret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 400, "and its refresh token");
}

#[tokio::test]
async fn a_public_client_uses_pkce_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let spa = "http://127.0.0.1:5173/callback";
    let mut browser = Browser::new(&server.url(""));
    let url = format!(
        "/authorize?client_id=demo-spa&redirect_uri={}&response_type=code&scope=openid+orders%3Aread&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256",
        urlenc(spa)
    );
    let login_page = browser.get(&url).await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let code = back.redirect_param("code").unwrap();
    let exchange = |fields: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.form("/token", None, &fields).await
        }
    };
    // Without the verifier the code is refused (and spent).
    let base = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "demo-spa".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", spa.to_owned()),
        ]
    };
    let (status, _, body) = exchange(base(&code)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let again = browser.get(&url).await;
    let code = again.redirect_param("code").unwrap();
    let mut fields = base(&code);
    fields.push(("code_verifier", VERIFIER.to_owned()));
    let (status, _, tokens) = exchange(fields).await;
    assert_eq!(status, 200, "{tokens}");
    // Public clients rotate refresh tokens like everyone else.
    let (status, _, rotated) = exchange(vec![
        ("grant_type", "refresh_token".to_owned()),
        ("client_id", "demo-spa".to_owned()),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
    ])
    .await;
    assert_eq!(status, 200, "{rotated}");
    // A browser app may call the token endpoint from its own origin.
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/token"))
        .header("origin", "http://127.0.0.1:5173")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let jwks = server.http.get(server.url("/jwks")).send().await.unwrap();
    assert_eq!(jwks.headers()["access-control-allow-origin"], "*");
    // The login pages are not readable cross-origin.
    let page = server
        .http
        .get(server.url("/authorize?client_id=nobody"))
        .send()
        .await
        .unwrap();
    assert!(page.headers().get("access-control-allow-origin").is_none());
    // But it cannot pose as a confidential client.
    let (status, _, body) = exchange(vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", "demo-spa".to_owned()),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn codes_are_bound_to_client_redirect_and_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    let (wid, wsecret) = server.client("web");
    let token = |fields: Vec<(&'static str, String)>, basic: bool| {
        let (server, wid, wsecret) = (&server, wid.clone(), wsecret.clone());
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let auth = basic.then_some((wid.as_str(), wsecret.as_str()));
            server.form("/token", auth, &fields).await
        }
    };
    let exchange_fields = |code: &str, redirect: &str, verifier: Option<&str>| {
        let mut f = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect.to_owned()),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v.to_owned()));
        }
        f
    };
    // A wrong verifier is refused without using the code up (whoever
    // intercepted it cannot void it): the right one still works, once.
    let code = fresh_code(&mut browser, &[]).await;
    let (status, _, body) = token(
        exchange_fields(&code, WEB_REDIRECT, Some(&"x".repeat(43))),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _, body) = token(exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER)), true).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = token(exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER)), true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "used"
    );
    // Another redirect URI than the request's.
    let code = fresh_code(&mut browser, &[]).await;
    let (status, _, body) = token(
        exchange_fields(&code, "http://127.0.0.1:8000/other", Some(VERIFIER)),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Another client (the public SPA) presenting the web client's code.
    let code = fresh_code(&mut browser, &[]).await;
    let mut f = exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER));
    f.push(("client_id", "demo-spa".to_owned()));
    let (status, _, body) = token(f, false).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // A verifier where no challenge was made (a PKCE downgrade probe).
    let back = browser
        .get(&format!(
            "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid+profile+groups+orders%3Aread",
            urlenc(WEB_REDIRECT)
        ))
        .await;
    let code = back.redirect_param("code").unwrap();
    let (status, _, body) = token(exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER)), true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// A code or refresh token is used up only by the client it was issued
/// to, once that client has authenticated: another client presenting a
/// leaked one gets `invalid_grant`, and the rightful client can still use
/// it; another client's replay of a used one revokes nothing.
#[tokio::test]
async fn another_clients_code_or_refresh_token_neither_works_nor_voids_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    let (svc, ssecret) = server.client("service");
    let (wid, wsecret) = server.client("web");
    // Another web app of the same provider, registered for the same grants.
    let other: Value = server
        .http
        .post(server.url("/admin/v1/clients"))
        .bearer_auth(server.creds["admin_token"].as_str().unwrap())
        .json(&json!({"client_id": "other-web", "kind": "web", "redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_secret = other["client_secret"].as_str().unwrap().to_owned();
    let as_other = |fields: Vec<(&'static str, String)>| {
        let (server, secret) = (&server, other_secret.clone());
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .form("/token", Some(("other-web", &secret)), &fields)
                .await
        }
    };
    let active = |token: String| {
        let (server, svc, ssecret) = (&server, svc.clone(), ssecret.clone());
        async move {
            let (_, _, info) = server
                .form("/introspect", Some((&svc, &ssecret)), &[("token", &token)])
                .await;
            info["active"].as_bool().unwrap_or(false)
        }
    };
    let code_fields = |code: &str| {
        vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", VERIFIER),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect::<Vec<_>>()
    };

    // A leaked code, presented by another (authenticated) client first.
    let code = fresh_code(&mut browser, &[]).await;
    let (status, _, body) = as_other(code_fields(&code)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200, "the code still works for its client: {tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // Presented again by the other client: no replay revocation.
    let (status, _, _) = as_other(code_fields(&code)).await;
    assert_eq!(status, 400);
    assert!(
        active(access.clone()).await,
        "another client's replay voids nothing"
    );
    // Its own client's replay does revoke (RFC 6749 §4.1.2).
    let (status, _) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 400);
    assert!(
        !active(access).await,
        "the rightful client's replay revokes"
    );

    // A refresh token, the same way.
    let code = fresh_code(&mut browser, &[]).await;
    let (_, tokens) = exchange(&server, &code, VERIFIER).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh_fields = |token: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token.to_owned()),
        ]
    };
    let (status, _, body) = as_other(refresh_fields(&first)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let web_refresh = |token: String| {
        let (server, wid, wsecret) = (&server, wid.clone(), wsecret.clone());
        async move {
            server
                .form(
                    "/token",
                    Some((&wid, &wsecret)),
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                )
                .await
        }
    };
    let (status, _, rotated) = web_refresh(first.clone()).await;
    assert_eq!(status, 200, "still usable by its client: {rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    // The rotated-out token from another client: the family lives on.
    let (status, _, _) = as_other(refresh_fields(&first)).await;
    assert_eq!(status, 400);
    let (status, _, body) = web_refresh(second).await;
    assert_eq!(status, 200, "another client's reuse ends no family: {body}");
}

#[tokio::test]
async fn concurrent_replays_of_a_code_leave_no_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    for round in 0..5 {
        let code = fresh_code(&mut browser, &[]).await;
        let ex = || exchange(&server, &code, VERIFIER);
        let (a, b, c, d, e, f) = tokio::join!(ex(), ex(), ex(), ex(), ex(), ex());
        let results = [a, b, c, d, e, f];
        let issued: Vec<&Value> = results
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert!(
            issued.len() <= 1,
            "round {round}: {} successes",
            issued.len()
        );
        let (svc, secret) = server.client("service");
        for tokens in issued {
            let (_, _, info) = server
                .form(
                    "/introspect",
                    Some((&svc, &secret)),
                    &[("token", tokens["access_token"].as_str().unwrap())],
                )
                .await;
            assert_eq!(
                info["active"], false,
                "round {round}: replays revoke the winner's token"
            );
        }
    }
}
