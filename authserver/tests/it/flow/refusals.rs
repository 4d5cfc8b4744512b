//! What the provider refuses, and how: untrusted requests never redirect,
//! hostile input gets a clean refusal; and what discovery says.

use super::*;

#[tokio::test]
async fn requests_that_cannot_be_trusted_are_refused_without_redirecting() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    // Unknown client, unregistered or missing redirect URI: our page, never a redirect.
    for (url, says) in [
        (authorize_url("nobody", WEB_REDIRECT, &[]), "unknown client"),
        (
            authorize_url("demo-web", "https://evil.example/cb", &[]),
            "not a registered redirect URI",
        ),
        (
            authorize_url("demo-web", "http://127.0.0.1:8000/_auth/callback/../x", &[]),
            "not a registered redirect URI",
        ),
    ] {
        let page = browser.get(&url).await;
        assert_eq!(page.status, 400, "{url}");
        assert!(page.headers.get("location").is_none());
        assert!(page.body.contains(says), "{url}: {}", page.body);
    }
    // With the redirect URI established, errors go back to it with the state.
    let spa = "http://127.0.0.1:5173/callback";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=token&scope=openid&state=s",
                urlenc(WEB_REDIRECT)
            ),
            "unsupported_response_type",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("prompt", "none login")]),
            "invalid_request",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("max_age", "-1")]),
            "invalid_request",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("request", "eyJ")]),
            "request_not_supported",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("prompt", "none")]),
            "login_required",
        ),
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid+admin&state=s",
                urlenc(WEB_REDIRECT)
            ),
            "invalid_scope",
        ),
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=plain&state=s",
                urlenc(WEB_REDIRECT)
            ),
            "invalid_request",
        ),
        (
            format!(
                "/authorize?client_id=demo-spa&redirect_uri={}&response_type=code&scope=openid&state=s",
                urlenc(spa)
            ),
            "invalid_request",
        ),
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&response_type=code&scope=openid",
                urlenc(WEB_REDIRECT)
            ),
            "",
        ),
    ];
    for (url, error) in cases {
        let page = browser.get(&url).await;
        if error.is_empty() {
            assert_eq!(page.status, 400, "repeated parameter: our page: {url}");
            continue;
        }
        assert_eq!(page.status, 303, "{url}: {}", page.body);
        assert_eq!(
            page.redirect_param("error").as_deref(),
            Some(error),
            "{url} -> {}",
            page.location()
        );
        assert!(page.redirect_param("state").is_some());
        assert_eq!(page.redirect_param("iss"), Some(server.issuer()));
    }
}

#[tokio::test]
async fn injection_shaped_and_oversized_input_gets_a_clean_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    for username in [
        "' OR '1'='1' --",
        "demo\"; DROP TABLE users; --",
        "<script>alert(1)</script>",
        "demo\u{0}x",
    ] {
        let after = log_in(&mut browser, &page, username, "' OR ''='").await;
        assert_eq!(after.status, 401, "{username}");
        assert!(!after.body.contains("<script>alert"), "escaped");
    }
    // The users table is intact and the demo user still logs in.
    let ok = log_in(&mut browser, &page, "demo", &password(&server)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Oversized parameters: refused or carried, never a server error.
    for size in [10_000, 200_000] {
        let state = "s".repeat(size);
        let resp = server
            .http
            .get(server.url(&authorize_url(
                "demo-web",
                WEB_REDIRECT,
                &[("state", &state)],
            )))
            .send()
            .await;
        if let Ok(resp) = resp {
            assert!(
                resp.status().as_u16() < 500,
                "state of {size}: {}",
                resp.status()
            );
        }
    }
    let client_id = "c".repeat(100_000);
    let (status, _, _) = server
        .form(
            "/token",
            Some((&client_id, "x")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert!((400..500).contains(&status), "{status}");
}

#[tokio::test]
async fn discovery_describes_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let doc: Value = server.get_json("/.well-known/openid-configuration").await;
    let issuer = server.issuer();
    assert_eq!(doc["issuer"], issuer);
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(doc[key], format!("{issuer}{path}"));
        let status = server
            .http
            .get(doc[key].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_ne!(status, 404, "{key} exists");
    }
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
}
