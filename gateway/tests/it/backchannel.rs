//! Back-channel logout at the gateway (OpenID Connect Back-Channel Logout
//! 1.0 as a relying party): the real authserver ends a session and tells
//! one replica, and two replicas sharing Redis both stop honouring the
//! session cookie; and logout tokens that must not end anything (forged,
//! replayed, another JWT of the same issuer) are refused.

use std::time::Duration;

use reqwest::header::COOKIE;
use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer};

use crate::session::{session_gateway_with, until_refused};
use crate::signin::Browser;
use crate::support::{Authserver, echo_upstream, free_port, redis_url, start_at};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
const PATH: &str = "/_auth/backchannel-logout";
/// How long a logout may take to reach every replica.
const LIMIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread")]
async fn a_logout_at_the_provider_ends_the_session_on_every_replica() {
    if let Some(redis) = redis_url().await {
        provider_logout_ends_every_replica(&redis).await;
    }
}

/// The marks of one sign-in (its `sid`, its `sub`) fall in different slots
/// of a cluster and are read together.
#[tokio::test(flavor = "multi_thread")]
async fn a_logout_at_the_provider_reaches_every_replica_through_a_redis_cluster() {
    if let Some(cluster) = testkit::RedisCluster::shared() {
        provider_logout_ends_every_replica(&cluster.url()).await;
    }
}

async fn provider_logout_ends_every_replica(redis: &str) {
    let auth = Authserver::start(&[]);
    let prefix = format!("gw_bcl:{}:{}:", std::process::id(), tokens::testing::now());
    // Sessions live in their cookies: only the logout marks are shared.
    let extra = format!("redis_url = \"{redis}\"\nredis_prefix = \"{prefix}\"");
    let (one, base, _) = session_gateway_with(&auth, &extra, "store = \"cookie\"").await;
    let (two, replica, _) = session_gateway_with(&auth, &extra, "store = \"cookie\"").await;
    let client = format!("gateway-test-{}", one.addr.port());
    let (status, body) = auth
        .admin(
            "PATCH",
            &format!("/admin/v1/clients/{client}"),
            &json!({"backchannel_logout_uri": format!("{base}{PATH}")}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let mut browser = Browser::new();
    let first = browser.page(&format!("{base}/app/page")).await;
    assert_eq!(first.status, 302);
    let callback = auth.sign_in(&mut browser, &first.location()).await;
    assert_eq!(browser.page(&callback).await.status, 302);
    let cookie = browser.cookies["portcullis_session"].clone();
    assert!(!cookie.starts_with("r."), "a cookie session: {cookie}");
    let http = reqwest::Client::new();
    for at in [&base, &replica] {
        let ok = http
            .get(format!("{at}/app/x"))
            .header(COOKIE, format!("portcullis_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status(), 200, "{at}");
    }

    // Signed out at the authserver itself (its confirmation page): no
    // gateway is asked, the provider tells the first by back-channel.
    let confirm = browser.page(&format!("{}/logout", auth.url)).await;
    assert_eq!(confirm.status, 200, "{}", confirm.body);
    let csrf = confirm.hidden("csrf");
    let done = browser
        .post(&format!("{}/logout", auth.url), &[("csrf", &csrf)])
        .await;
    assert!(done.status < 400, "{}", done.body);
    let here = until_refused(&http, &base, &cookie, LIMIT).await;
    let there = until_refused(&http, &replica, &cookie, LIMIT).await;
    // No change feed here: only the logout token can have ended it.
    eprintln!("back-channel logout: refused here after {here:?}, on the replica after {there:?}");
    drop((one, two));
}

/// With `redis_url` set, a session is checked against the logout marks of
/// every replica; while Redis cannot answer, the gateway cannot tell
/// whether another replica was told of a logout, so it refuses (503, not
/// a sign-in prompt that would come back to the same answer).
#[tokio::test(flavor = "multi_thread")]
async fn sessions_fail_closed_while_the_logout_marks_cannot_be_read() {
    let auth = Authserver::start(&[]);
    let nothing_there = free_port();
    let extra = format!("redis_url = \"redis://127.0.0.1:{nothing_there}\"");
    let (gw, base, _) = session_gateway_with(&auth, &extra, "store = \"cookie\"").await;
    let mut browser = Browser::new();
    let first = browser.page(&format!("{base}/app/page")).await;
    assert_eq!(first.status, 302);
    let callback = auth.sign_in(&mut browser, &first.location()).await;
    assert_eq!(browser.page(&callback).await.status, 302);
    let cookie = browser.cookies["portcullis_session"].clone();
    let resp = reqwest::Client::new()
        .get(format!("{base}/app/x"))
        .header(COOKIE, format!("portcullis_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(body.contains("session store"), "{body}");
    assert!(!body.contains("\"path\""), "the upstream answered: {body}");
    drop(gw);
}

/// A gateway in session mode whose provider is a test issuer that signs
/// whatever it is asked: the logout endpoint alone is exercised.
async fn gateway_of(issuer: &TestIssuer) -> (crate::support::Gateway, String) {
    let upstream = echo_upstream().await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let gw = start_at(
        port,
        &format!(
            r#"
[session]
issuer = "{issuer}"
client_id = "gw"
client_secret = "gw-secret"
redirect_uri = "{base}/_auth/callback"
cookie_secret = "test-cookie-secret-0123456789abcdef0123"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/app"
upstream = "app"
auth = "session"
"#,
            issuer = issuer.url,
        ),
    );
    (gw, base)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_fresh_signed_logout_token_for_this_client_is_taken() {
    let key = SigningKey::es256("k1");
    let stranger = SigningKey::es256("k2");
    let issuer = TestIssuer::start(&[&key]).await;
    let (_gw, base) = gateway_of(&issuer).await;
    let now = tokens::testing::now();
    let header = json!({"alg": "ES256", "kid": "k1", "typ": "logout+jwt"});
    let claims = |jti: &str| {
        json!({"iss": issuer.url, "aud": "gw", "iat": now, "exp": now + 120, "jti": jti,
               "sid": "upstream-session", "sub": "alice", "events": {EVENT: {}}})
    };
    let http = reqwest::Client::new();
    let post = |token: String| {
        let http = http.clone();
        let url = format!("{base}{PATH}");
        async move {
            let resp = http
                .post(url)
                .form(&[("logout_token", token)])
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.text().await.unwrap())
        }
    };
    let good = key.sign_raw(&header, &claims("j1"));
    assert_eq!(post(good.clone()).await.0, 200);
    let (status, body) = post(good).await;
    assert_eq!(status, 400, "a replay: {body}");
    assert!(body.contains("used before"), "{body}");

    let with = |name: &str, value: Value| {
        let mut c = claims(&format!("j-{name}"));
        c[name] = value;
        c
    };
    let without = |name: &str| {
        let mut c = claims(&format!("j-no-{name}"));
        c.as_object_mut().unwrap().remove(name);
        c
    };
    let id_token_header = json!({"alg": "ES256", "kid": "k1", "typ": "JWT"});
    let neither = {
        let mut c = without("sid");
        c.as_object_mut().unwrap().remove("sub");
        c
    };
    for (token, why) in [
        (key.sign_raw(&id_token_header, &claims("j-typ")), "`typ`"),
        (key.sign_raw(&header, &with("nonce", json!("n"))), "nonce"),
        (key.sign_raw(&header, &without("events")), "event"),
        (
            key.sign_raw(&header, &with("events", json!({"other": {}}))),
            "event",
        ),
        (
            key.sign_raw(&header, &with("aud", json!("someone-else"))),
            "",
        ),
        (key.sign_raw(&header, &neither), "neither"),
        (
            key.sign_raw(&header, &with("iat", json!(now - 3600))),
            "iat",
        ),
        (key.sign_raw(&header, &without("jti")), "jti"),
        (
            stranger.sign_raw(
                &json!({"alg": "ES256", "kid": "k2", "typ": "logout+jwt"}),
                &claims("j-key"),
            ),
            "",
        ),
        ("not.a.token".to_owned(), ""),
    ] {
        let (status, body) = post(token).await;
        assert_eq!(status, 400, "{why}: {body}");
        assert!(body.contains(why), "{why}: {body}");
    }
    let missing = http
        .post(format!("{base}{PATH}"))
        .form(&[("token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);
    let get = http.get(format!("{base}{PATH}")).send().await.unwrap();
    assert_eq!(get.status(), 405);
}
