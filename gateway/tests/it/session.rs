//! Session mode against the real authserver: sign-in through its real login
//! and consent pages with a cookie-jar client, the return to the original
//! URL, refreshes collapsed under concurrency, userinfo and logout.

use std::time::{Duration, Instant};

use reqwest::header::{ACCEPT, COOKIE, SET_COOKIE};
use serde_json::Value;

use crate::signin::{Browser, query_param, through_the_authserver_as};
use crate::support::{Authserver, Gateway, echo_upstream, free_port, redis_url, start_at};

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_through_the_authserver_then_refresh_and_log_out() {
    // Every request within 600 s of expiry refreshes: each access token
    // generation is refreshed exactly once however many requests need it.
    let auth = Authserver::start(&[("PORTCULLIS_AUTHSERVER__TOKENS__ACCESS_SECONDS", "600")]);
    // The authserver shares the gateway's host here, so its cookies would
    // reach the app too: they are private.
    let (gw, base, redirect) = session_gateway(
        &auth,
        r#"private_cookies = ["portcullis-session", "portcullis-csrf"]"#,
    )
    .await;
    let mut browser = Browser::new();

    // API calls and XHR are told to sign in, not redirected.
    let api = browser
        .send(
            browser
                .http
                .get(format!("{base}/app/data"))
                .header(ACCEPT, "application/json"),
        )
        .await;
    assert_eq!(api.status, 401, "{}", api.body);
    let xhr = browser
        .send(
            browser
                .http
                .get(format!("{base}/app/data"))
                .header("x-requested-with", "XMLHttpRequest"),
        )
        .await;
    assert_eq!(xhr.status, 401);

    // A page: off to the authserver with PKCE S256, state and nonce.
    let first = browser.page(&format!("{base}/app/page?x=1")).await;
    assert_eq!(first.status, 302, "{}", first.body);
    let authorize = first.location();
    assert!(
        authorize.starts_with(&format!("{}/authorize?", auth.url)),
        "{authorize}"
    );
    for (name, expected) in [
        ("response_type", Some("code")),
        (
            "client_id",
            Some(format!("gateway-test-{}", gw.addr.port()).as_str()),
        ),
        ("code_challenge_method", Some("S256")),
        ("redirect_uri", Some(redirect.as_str())),
    ] {
        assert_eq!(query_param(&authorize, name).as_deref(), expected, "{name}");
    }
    for name in ["state", "nonce", "code_challenge"] {
        assert!(
            query_param(&authorize, name).is_some_and(|v| v.len() >= 43),
            "{name}"
        );
    }
    assert!(browser.cookies.contains_key("portcullis_session_login"));

    // The authserver's real login and consent pages.
    let callback = auth.sign_in(&mut browser, &authorize).await;
    assert!(callback.starts_with(&redirect), "{callback}");

    // The callback: a session cookie, the login cookie gone, and back to
    // the page first asked for.
    let landed = browser.page(&callback).await;
    assert_eq!(landed.status, 302, "{}", landed.body);
    assert_eq!(landed.location(), "/app/page?x=1");
    assert!(browser.cookies.contains_key("portcullis_session"));
    assert!(!browser.cookies.contains_key("portcullis_session_login"));
    let cookie_attrs = landed
        .headers
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("portcullis_session="))
        .unwrap();
    assert!(
        cookie_attrs.contains("HttpOnly") && cookie_attrs.contains("SameSite=Lax"),
        "{cookie_attrs}"
    );
    // The same callback again: the sign-in is over.
    assert_eq!(browser.page(&callback).await.status, 400);

    // Signed in: the upstream sees the verified identity, not our cookie.
    browser.cookies.insert("app_pref".into(), "dark".into());
    let page = browser.page(&format!("{base}/app/page?x=1")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let seen = page.json();
    let info = browser.page(&format!("{base}/_auth/userinfo")).await.json();
    assert_eq!(info["preferred_username"], "demo", "{info}");
    assert_eq!(seen["headers"]["x-auth-subject"], info["sub"], "{seen}");
    // Neither the gateway's cookie nor the authserver's (`private_cookies`)
    // reach the app; its own do.
    assert!(browser.cookies.contains_key("portcullis-session"));
    let upstream_cookies = seen["headers"]["cookie"].as_str().unwrap();
    assert_eq!(upstream_cookies, "app_pref=dark", "{seen}");
    assert!(seen["headers"].get("authorization").is_none());
    // Cookies split over several headers (as HTTP/2 clients may send them):
    // ours is stripped from every one, the rest reach the upstream.
    let split = browser
        .http
        .get(format!("{base}/app/split"))
        .header(COOKIE, "app_theme=light")
        .header(COOKIE, browser.cookie_header())
        .header(ACCEPT, "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(split.status(), 200);
    let seen: Value = split.json().await.unwrap();
    assert_eq!(
        seen["headers"]["cookie"], "app_theme=light; app_pref=dark",
        "{seen}"
    );

    // Ten concurrent requests that all need a refresh: one refresh.
    let refreshes_before = count(&auth.audit().await, "token.refresh");
    let cookie = browser.cookie_header();
    let requests = (0..10).map(|_| {
        browser
            .http
            .get(format!("{base}/app/burst"))
            .header(COOKIE, cookie.clone())
            .header(ACCEPT, "application/json")
            .send()
    });
    let responses: Vec<reqwest::Response> = all_at_once(requests)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let mut renewed = 0;
    for resp in &responses {
        assert_eq!(resp.status(), 200);
        renewed += usize::from(resp.headers().get(SET_COOKIE).is_some());
    }
    assert_eq!(
        renewed, 10,
        "every request carrying the old cookie gets the new one"
    );
    let events = auth.audit().await;
    assert_eq!(
        count(&events, "token.refresh") - refreshes_before,
        1,
        "collapsed"
    );
    assert_eq!(count(&events, "token.refresh_reuse"), 0);
    browser.keep_cookies(responses[0].headers());
    assert_eq!(browser.page(&format!("{base}/app/after")).await.status, 200);

    // Logout asks first: a GET (a link, perhaps on another site) is a
    // confirmation page that cannot be framed, and signs nobody out.
    let logout = format!("{base}/_auth/logout");
    let confirm = browser.page(&logout).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let csp = confirm.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(confirm.headers["x-frame-options"], "DENY");
    assert_eq!(browser.page(&format!("{base}/app/after")).await.status, 200);
    // A POST without the page's token, or from another site, is refused.
    let forged = browser.post(&logout, &[("csrf", "forged")]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let token = confirm.hidden("csrf");
    let request = browser
        .http
        .post(&logout)
        .header("origin", "http://elsewhere.example")
        .form(&[("csrf", token.as_str())]);
    let cross_site = browser.send(request).await;
    assert_eq!(cross_site.status, 403, "{}", cross_site.body);
    assert!(
        cross_site.body.contains("this site only"),
        "{}",
        cross_site.body
    );
    assert_eq!(browser.page(&format!("{base}/app/after")).await.status, 200);
    assert_eq!(count(&auth.audit().await, "token.revoke"), 0);

    // The page's form: the cookie is cleared, the refresh token revoked,
    // and the browser goes to the authserver's end-session endpoint.
    let old_cookie = browser.cookie_header();
    let out = sign_out(&mut browser, &base).await;
    assert_eq!(out.status, 302);
    let end = out.location();
    assert!(
        end.starts_with(&format!("{}/", auth.url)) && end.contains("id_token_hint="),
        "{end}"
    );
    assert!(!browser.cookies.contains_key("portcullis_session"));
    assert!(count(&auth.audit().await, "token.revoke") >= 1);
    let replayed = browser
        .send(
            browser
                .http
                .get(format!("{base}/app/data"))
                .header(ACCEPT, "application/json")
                .header(COOKIE, old_cookie),
        )
        .await;
    assert_eq!(replayed.status, 401, "a logged-out session is not honoured");
    drop(gw);
}

/// Sign out as a person does: the confirmation page, then its form.
async fn sign_out(browser: &mut Browser, base: &str) -> crate::signin::Page {
    let logout = format!("{base}/_auth/logout");
    let confirm = browser.page(&logout).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let token = confirm.hidden("csrf");
    browser.post(&logout, &[("csrf", &token)]).await
}

/// A gateway in session mode for a client registered at `auth`, with
/// `extra` top-level config; its base URL and callback.
async fn session_gateway(auth: &Authserver, extra: &str) -> (Gateway, String, String) {
    let store = if extra.contains("redis_url") {
        "store = \"redis\""
    } else {
        ""
    };
    session_gateway_with(auth, extra, store).await
}

/// The same with `session_extra` keys in `[session]`.
pub(crate) async fn session_gateway_with(
    auth: &Authserver,
    extra: &str,
    session_extra: &str,
) -> (Gateway, String, String) {
    let upstream = echo_upstream().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let redirect = format!("{base}/_auth/callback");
    let client = format!("gateway-test-{port}");
    let secret = auth
        .add_web_client(&client, &redirect, &format!("{base}/"))
        .await;
    let gw = start_at(
        port,
        &format!(
            r#"
{extra}

[session]
issuer = "{issuer}"
client_id = "{client}"
client_secret = "{secret}"
redirect_uri = "{redirect}"
scopes = ["openid", "profile", "email", "groups", "offline_access"]
cookie_secret = "test-cookie-secret-0123456789abcdef0123"
refresh_before_secs = 600
post_logout_redirect_uri = "{base}/"
{session_extra}

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/app"
upstream = "app"
auth = "session"
"#,
            issuer = auth.url,
        ),
    );
    (gw, base, redirect)
}

fn count(events: &[Value], action: &str) -> usize {
    events.iter().filter(|e| e["action"] == action).count()
}

async fn all_at_once<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// With `store = "redis"` the cookie only names the session: every replica
/// sharing the Redis sees it, and a logout on one ends it on all.
#[tokio::test(flavor = "multi_thread")]
async fn redis_sessions_are_shared_by_replicas_and_end_everywhere() {
    if let Some(redis) = redis_url().await {
        shared_sessions_end_everywhere(&redis).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redis_cluster_sessions_are_shared_by_replicas_and_end_everywhere() {
    if let Some(cluster) = testkit::RedisCluster::shared() {
        shared_sessions_end_everywhere(&cluster.url()).await;
    }
}

async fn shared_sessions_end_everywhere(redis: &str) {
    let auth = Authserver::start(&[]);
    let prefix = format!("gw_test:{}:{}:", std::process::id(), tokens::testing::now());
    let extra = format!("redis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"");
    let (one, base, _) = session_gateway(&auth, &extra).await;
    let mut browser = Browser::new();
    let first = browser.page(&format!("{base}/app/page")).await;
    assert_eq!(first.status, 302);
    let callback = auth.sign_in(&mut browser, &first.location()).await;
    assert_eq!(browser.page(&callback).await.status, 302);
    let cookie = browser.cookies["portcullis_session"].clone();
    assert!(
        cookie.starts_with("r."),
        "a pointer, not the tokens: {cookie}"
    );
    assert!(cookie.len() < 200, "{cookie}");
    assert_eq!(browser.page(&format!("{base}/app/page")).await.status, 200);

    // A second replica, same Redis and cookie secret: the same session.
    let (two, _, _) = session_gateway(&auth, &extra).await;
    let replica = format!("http://{}", two.addr);
    let api = |b: &Browser, url: String| {
        b.http
            .get(url)
            .header(COOKIE, format!("portcullis_session={cookie}"))
            .header(ACCEPT, "application/json")
            .send()
    };
    assert_eq!(
        api(&browser, format!("{replica}/app/x"))
            .await
            .unwrap()
            .status(),
        200
    );
    // KEYS goes to every master of a cluster.
    let mut conn = bootstrap::redis::Redis::new(redis, Duration::from_secs(2))
        .unwrap()
        .connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}session:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");

    // Logout on the first: the second no longer honours the cookie.
    assert_eq!(sign_out(&mut browser, &base).await.status, 302);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}session:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
    // The second replica looks again within seconds.
    until_refused(&browser.http, &replica, &cookie, Duration::from_secs(10)).await;
    drop((one, two));
}

/// Polls `base/app/x` with the session cookie until it is refused.
pub(crate) async fn until_refused(
    http: &reqwest::Client,
    base: &str,
    cookie: &str,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = http
            .get(format!("{base}/app/x"))
            .header(COOKIE, format!("portcullis_session={cookie}"))
            .header(ACCEPT, "application/json")
            .send()
            .await
            .unwrap()
            .status();
        if status == 401 {
            return started.elapsed();
        }
        assert_eq!(status, 200, "{base}");
        assert!(
            started.elapsed() < limit,
            "{base} still honours the session"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `store = "auto"`: a session too large for a cookie (a user in many
/// groups) goes to Redis and the cookie only points to it, while a small
/// one stays in the cookie; without Redis such a sign-in is refused with a
/// message naming the fix.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_too_large_for_a_cookie_spill_to_redis() {
    let Some(redis) = redis_url().await else {
        return;
    };
    let auth = Authserver::start(&[]);
    let groups: Vec<String> = (0..80)
        .map(|i| format!("department-of-things-{i:03}"))
        .collect();
    let created = reqwest::Client::new()
        .post(format!("{}/admin/v1/users", auth.url))
        .bearer_auth(auth.creds["admin_token"].as_str().unwrap())
        .json(&serde_json::json!({
            "username": "big",
            "password": "big-password-0123456789",
            "groups": groups,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let prefix = format!(
        "gw_test_auto:{}:{}:",
        std::process::id(),
        tokens::testing::now()
    );
    let extra = format!("redis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"");
    let (_gw, base, _) = session_gateway_with(&auth, &extra, "store = \"auto\"").await;

    let sign_in = |user: &'static str, password: String, base: String| {
        let auth = &auth;
        async move {
            let mut browser = Browser::new();
            let first = browser.page(&format!("{base}/app/page")).await;
            assert_eq!(first.status, 302, "{}", first.body);
            let callback = through_the_authserver_as(
                &mut browser,
                &auth.url,
                &first.location(),
                user,
                &password,
            )
            .await;
            let landed = browser.page(&callback).await;
            (browser, landed)
        }
    };
    let (mut big, landed) = sign_in("big", "big-password-0123456789".into(), base.clone()).await;
    assert_eq!(landed.status, 302, "{}", landed.body);
    let cookie = big.cookies["portcullis_session"].clone();
    assert!(cookie.starts_with("r.") && cookie.len() < 200, "{cookie}");
    let page = big.page(&format!("{base}/app/page")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let seen = page.json()["headers"]["x-auth-groups"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(seen.contains("department-of-things-079"), "{seen}");

    let demo_password = auth.creds["user"]["password"].as_str().unwrap().to_owned();
    let (small, _) = sign_in("demo", demo_password, base.clone()).await;
    let cookie = &small.cookies["portcullis_session"];
    assert!(
        !cookie.starts_with("r.") && cookie.len() > 200,
        "inline: {cookie}"
    );

    // No Redis: the big session has nowhere to go.
    let (_plain, plain_base, _) = session_gateway_with(&auth, "", "store = \"auto\"").await;
    let (_, refused) = sign_in("big", "big-password-0123456789".into(), plain_base).await;
    assert_eq!(refused.status, 503, "{}", refused.body);
    assert!(refused.body.contains("redis_url"), "{}", refused.body);
}

/// The same sign-in in headless Chromium (playwright-core, installed with
/// the relying-party test's package by scripts/install-deps.sh).
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_with_headless_chromium() {
    let rp = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../authserver/tests/rp/node_modules/playwright-core");
    let chromium = std::path::Path::new("/usr/bin/chromium");
    if !rp.exists() || !chromium.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs node, playwright-core and chromium (scripts/install-deps.sh)"
        );
        eprintln!("SKIPPED: headless Chromium or playwright-core is not installed");
        return;
    }
    let auth = Authserver::start(&[]);
    let (_gw, base, _) = session_gateway(&auth, "").await;
    let password = auth.creds["user"]["password"].as_str().unwrap().to_owned();
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/session.mjs");
    let args = [base.clone(), "demo".to_owned(), password];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("node")
            .arg(script)
            .args(args)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        seen["login_url"].as_str().unwrap().starts_with(&auth.url),
        "{seen}"
    );
    assert_eq!(seen["landed"], format!("{base}/app/page?x=1"), "{seen}");
    assert_eq!(seen["subject"], seen["userinfo"]["sub"], "{seen}");
    assert_eq!(seen["userinfo"]["preferred_username"], "demo");
    let session = seen["cookies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "portcullis_session")
        .unwrap_or_else(|| panic!("{seen}"));
    assert_eq!(session["httpOnly"], true);
    assert_eq!(session["sameSite"], "Lax");
    assert!(
        !seen["upstream_cookie"]
            .as_str()
            .unwrap_or("")
            .contains("portcullis_session"),
        "{seen}"
    );
    assert!(
        seen["cross_site_logout"]
            .as_str()
            .unwrap()
            .contains("this site only"),
        "{seen}"
    );
    assert_eq!(
        seen["after_cross_site_logout"], seen["userinfo"]["sub"],
        "still signed in after another site's form: {seen}"
    );
    assert!(
        seen["after_logout"]
            .as_str()
            .unwrap()
            .starts_with(&auth.url),
        "signed out: back to the login: {seen}"
    );
}
