//! Signing in, consent and signing out on the real pages: backoff and
//! lockout, `prompt` and `max_age`, disabled users, the logout forms.

use super::*;

#[tokio::test]
async fn failed_logins_back_off_lock_out_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ACCOUNT",
        "3",
    )];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    // Without the CSRF token the form is refused.
    let request = page.hidden("request");
    let refused = browser
        .post(
            "/login",
            &[
                ("request", &request),
                ("username", "demo"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    // Wrong password and unknown user read the same.
    let wrong = log_in(&mut browser, &page, "demo", "not-the-password").await;
    let unknown = log_in(&mut browser, &page, "nobody", "not-the-password").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(wrong.body.contains("Wrong username or password."));
    assert!(unknown.body.contains("Wrong username or password."));
    assert!(
        wrong.body.contains("value=\"demo\""),
        "the username is kept"
    );
    let _ = log_in(&mut browser, &page, "DEMO", "again-wrong").await;
    let _ = log_in(&mut browser, &page, "demo", "not-the-password").await;
    // Three failures on the account: even the right password is refused now.
    let locked = log_in(&mut browser, &page, "demo", &password(&server)).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("Too many failed sign-in attempts"));
    let store = server.embedded_store().await;
    let events = store.audit_events(100).await.unwrap();
    store.close().await;
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e.action == "login.failure")
        .collect();
    assert_eq!(failures.len(), 4);
    assert!(
        failures.iter().any(|f| f.detail["username"] == "D***O"),
        "usernames are masked"
    );
    assert_eq!(failures[0].source_ip.as_deref(), Some("127.0.0.1"));
    assert!(events.iter().any(|e| e.action == "login.locked"));
    let logs = server.logs();
    assert!(!logs.contains("not-the-password") && !logs.contains(&password(&server)));
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ADDRESS",
        "3",
    )];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    for user in ["amy", "ben", "cat"] {
        assert_eq!(
            log_in(&mut browser, &page, user, "guess-guess")
                .await
                .status,
            401
        );
    }
    let locked = log_in(&mut browser, &page, "demo", &password(&server)).await;
    assert_eq!(
        locked.status, 429,
        "credential stuffing from one address stops it"
    );
}

#[tokio::test]
async fn prompt_max_age_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let (_, tokens) = exchange(&server, &back.redirect_param("code").unwrap(), VERIFIER).await;

    // Signed in: prompt=none works; prompt=login and max_age=0 ask again.
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "none")],
        ))
        .await;
    assert!(
        silent.redirect_param("code").is_some(),
        "{}",
        silent.location()
    );
    for extra in [("prompt", "login"), ("max_age", "0")] {
        let page = browser
            .get(&authorize_url("demo-web", WEB_REDIRECT, &[extra]))
            .await;
        assert_eq!(page.status, 200, "{extra:?}");
        assert!(page.body.contains("Sign in"), "{extra:?}");
        let after = log_in(&mut browser, &page, "demo", &password(&server)).await;
        assert!(
            after.redirect_param("code").is_some(),
            "{extra:?}: {}",
            after.location()
        );
    }
    let again = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "consent")],
        ))
        .await;
    assert!(again.body.contains("Allow access"));
    let denied = consent(&mut browser, &again, "deny").await;
    assert_eq!(
        denied.redirect_param("error").as_deref(),
        Some("access_denied")
    );

    // Logout without a hint asks first; a foreign redirect is refused.
    let asked = browser.get("/logout").await;
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("Sign out?"));
    let foreign = browser
        .get(&format!(
            "/logout?client_id=demo-web&post_logout_redirect_uri={}",
            urlenc("https://evil.example/")
        ))
        .await;
    assert_eq!(foreign.status, 400);
    // With the ID token as hint: at once, back to the registered URI.
    let hint = tokens["id_token"].as_str().unwrap();
    let out = browser
        .get(&format!(
            "/logout?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye",
            urlenc("http://127.0.0.1:8000/")
        ))
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location(), "http://127.0.0.1:8000/?state=bye");
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(
        silent.redirect_param("error").as_deref(),
        Some("login_required"),
        "session ended"
    );
}

#[tokio::test]
async fn consent_required_disabled_users_and_logout_forms() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    // prompt=none for a scope not yet consented to.
    let url = format!(
        "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid+email&prompt=none&state=s",
        urlenc(WEB_REDIRECT)
    );
    let back = browser.get(&url).await;
    assert_eq!(
        back.redirect_param("error").as_deref(),
        Some("consent_required")
    );
    // login_hint prefills the username.
    let mut other = Browser::new(&server.url(""));
    let page = other
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("login_hint", "demo")],
        ))
        .await;
    assert!(page.body.contains("value=\"demo\""));

    // A disabled user's tokens stop working at once.
    let code = fresh_code(&mut browser, &[]).await;
    let (_, tokens) = exchange(&server, &code, VERIFIER).await;
    // An access token is not an ID token hint.
    let bad = browser
        .get(&format!(
            "/logout?id_token_hint={}",
            tokens["access_token"].as_str().unwrap()
        ))
        .await;
    assert_eq!(bad.status, 400);
    // The confirmation form needs its CSRF token (another browser).
    let mut leaving = Browser::new(&server.url(""));
    let login = leaving
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    log_in(&mut leaving, &login, "demo", &password(&server)).await;
    let confirm = leaving.get("/logout").await;
    let csrf = confirm.hidden("csrf");
    assert_eq!(leaving.post("/logout", &[]).await.status, 403);
    let done = leaving.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("Signed out"));
    let admin = server.creds["admin_token"].as_str().unwrap();
    let users: Value = server
        .http
        .get(server.url("/admin/v1/users"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = users["users"][0]["id"].as_str().unwrap();
    let resp = server
        .http
        .patch(server.url(&format!("/admin/v1/users/{id}")))
        .bearer_auth(admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (svc, secret) = server.client("service");
    let (_, _, info) = server
        .form(
            "/introspect",
            Some((&svc, &secret)),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(info["active"], false, "disabled user");
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
    assert_eq!(status, 400, "no refresh for a disabled user");
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(
        silent.redirect_param("error").as_deref(),
        Some("login_required"),
        "the session no longer counts"
    );

    // The disabled user's browser session ended with it.
    let gone = browser.get("/logout").await;
    assert!(gone.body.contains("Signed out"), "{}", gone.body);
}
