//! Bearer tokens at the edge: every hostile token of the shared table is a
//! 401 that never reaches the upstream, counted by reason; a key rotation
//! at the issuer fails no request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer, hostile_tokens};

use crate::support::{echo_upstream, jwt_app, start};

/// GET `url` with `token` as the bearer and a spoofed `x-auth-subject`:
/// the status, the `WWW-Authenticate` challenge (or "") and the JSON body
/// (Null when there is none).
async fn with_bearer(http: &reqwest::Client, url: String, token: &str) -> (u16, String, Value) {
    let resp = http
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-auth-subject", "admin")
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tokens_are_refused_and_counted() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let other = SigningKey::es256("k2");
    let issuer = TestIssuer::start(&[&key]).await;
    let stranger = TestIssuer::start(&[&other]).await;
    // The stranger is trusted too: its key must still not sign for ours.
    // Every case fails from this one address: the failure budget is wide.
    let gw = start(&format!(
        r#"
[failed_auth_limit]
burst = 1000

[[issuers]]
issuer = "{}"
audiences = ["api"]
subject_prefix = "ours:"

[[issuers]]
issuer = "{}"
audiences = ["api"]
subject_prefix = "stranger:"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
"#,
        issuer.url, stranger.url
    ));
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    let cases = hostile_tokens(&issuer, &key, &stranger, &other);
    for case in &cases {
        let (status, challenge, body) =
            with_bearer(&http, format!("http://{}/api/orders", gw.addr), &case.token).await;
        let ok = if case.reason == "ok" {
            status == 200 && body["headers"]["x-auth-subject"] == "ours:alice"
        } else if case.token.is_empty() {
            // `Bearer ` with nothing after it is no credentials at all.
            status == 401 && challenge.starts_with("Bearer") && body.get("headers").is_none()
        } else {
            status == 401
                && challenge.contains("invalid_token")
                && challenge.contains(case.reason)
                && body.get("headers").is_none()
        };
        if !ok {
            failures.push(format!(
                "{}: expected {}, got {status} {challenge} {body}",
                case.name, case.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    let refused = cases.iter().filter(|c| c.reason != "ok").count();
    let mut needles: Vec<String> = [
        "disallowed_alg",
        "forbidden_header",
        "unknown_key",
        "expired",
        "malformed",
    ]
    .iter()
    .map(|r| format!("gateway_auth_failures_total{{reason=\"{r}\"}}"))
    .collect();
    needles.push(format!(
        "gateway_requests_total{{route=\"/api\",status=\"401\"}} {refused}"
    ));
    gw.metrics_with(&needles.iter().map(String::as_str).collect::<Vec<_>>())
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_rotation_fails_no_request() {
    let upstream = echo_upstream().await;
    let old = Arc::new(SigningKey::es256("old"));
    let new = Arc::new(SigningKey::es256("new"));
    let issuer = TestIssuer::start(&[&old]).await;
    let gw = start(&jwt_app(&issuer.url, upstream));
    let signer = Arc::new(Mutex::new(old.clone()));
    let claims = issuer.claims("alice");

    // Traffic all through the rotation, signed by whichever key is current;
    // each phase lasts a number of requests, not a time.
    let sent = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (signer, sent, done) = (signer.clone(), sent.clone(), done.clone());
        let url = format!("http://{}/api/x", gw.addr);
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut statuses = Vec::new();
            while !done.load(Ordering::SeqCst) {
                let mut c = claims.clone();
                c["jti"] = json!(statuses.len());
                let key = signer.lock().unwrap().clone();
                let resp = http.get(&url).bearer_auth(key.sign(&c)).send().await;
                statuses.push(resp.unwrap().status().as_u16());
                sent.fetch_add(1, Ordering::SeqCst);
            }
            statuses
        })
    };
    let after = |n: usize| {
        let sent = sent.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while sent.load(Ordering::SeqCst) < n {
                assert!(
                    Instant::now() < deadline,
                    "traffic stalled before {n} requests"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    };
    // Publish the new key next to the old, sign with it, then retire the old.
    after(20).await;
    issuer.publish(&[&old, &new]);
    after(40).await;
    *signer.lock().unwrap() = new.clone();
    after(60).await;
    issuer.publish(&[&new]);
    after(80).await;
    done.store(true, Ordering::SeqCst);
    let statuses = traffic.await.unwrap();
    assert!(
        statuses.len() > 50,
        "too little traffic: {}",
        statuses.len()
    );
    let failed: Vec<_> = statuses.iter().filter(|s| **s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {failed:?}",
        failed.len(),
        statuses.len()
    );
    assert!(issuer.fetches() >= 2, "the new kid was fetched");
}

/// Opaque access tokens from the real authserver (`access_format =
/// "opaque"`), introspected by the gateway: accepted with the issuer's
/// claims as identity; the refresh token shown as a bearer refused; a
/// revocation effective after `cache_seconds`; the issuer down → 503.
#[tokio::test(flavor = "multi_thread")]
async fn opaque_tokens_are_introspected_at_the_authserver() {
    use base64::Engine as _;

    use crate::signin::{Browser, query_param};
    use crate::support::Authserver;

    let mut auth = Authserver::start(&[("PORTCULLIS_AUTHSERVER__TOKENS__ACCESS_FORMAT", "opaque")]);
    let redirect = "http://127.0.0.1:9/callback";
    let secret = auth
        .add_resource_server("resource", redirect, "http://127.0.0.1:9/")
        .await;
    let upstream = echo_upstream().await;
    let gw = start(&format!(
        r#"
[[issuers]]
issuer = "{issuer}"
audiences = ["portcullis"]

[issuers.introspection]
client_id = "resource"
client_secret = "{secret}"
cache_seconds = 1

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
"#,
        issuer = auth.url
    ));

    // The code flow for the client, as its own backend would do it.
    let verifier = "v".repeat(50);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(gateway::sha256(verifier.as_bytes()));
    let authorize = format!(
        "{}/authorize?response_type=code&client_id=resource&redirect_uri={redirect}\
         &scope=openid%20profile%20groups%20offline_access&state=s1234567&code_challenge={challenge}\
         &code_challenge_method=S256",
        auth.url
    );
    let mut browser = Browser::new();
    let back = auth.sign_in(&mut browser, &authorize).await;
    let code = query_param(&back, "code").expect("a code");
    let tokens: Value = reqwest::Client::new()
        .post(format!("{}/token", auth.url))
        .basic_auth("resource", Some(&secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert!(!access.contains('.'), "an opaque token: {access}");

    let http = reqwest::Client::new();
    let call = |token: String| {
        let (http, url) = (http.clone(), format!("http://{}/api/me", gw.addr));
        async move { with_bearer(&http, url, &token).await }
    };
    // The authserver's own view of the token (userinfo reads opaque ones).
    let userinfo: Value = http
        .get(format!("{}/userinfo", auth.url))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let user_id = userinfo["sub"].as_str().expect("userinfo sub").to_owned();
    let (status, _, body) = call(access.clone()).await;
    assert_eq!(status, 200, "{body}");
    let seen = &body["headers"];
    assert_eq!(seen["x-auth-subject"], user_id.as_str(), "{body}");
    assert_eq!(seen["x-auth-client-id"], "resource");
    assert!(seen["x-auth-scopes"].as_str().unwrap().contains("profile"));
    assert!(seen.get("authorization").is_none(), "{body}");

    // A refresh token is not an access token, whatever the issuer says of it.
    let (status, challenge, body) = call(refresh).await;
    assert_eq!(status, 401, "{body}");
    assert!(challenge.contains("not_access_token"), "{challenge}");
    // Unknown opaque tokens are inactive.
    let (status, challenge, _) = call("no-such-token".into()).await;
    assert_eq!(status, 401);
    assert!(challenge.contains("inactive"), "{challenge}");

    // Revoked at the issuer: refused once the cached answer lapses.
    let revoked = reqwest::Client::new()
        .post(format!("{}/revoke", auth.url))
        .basic_auth("resource", Some(&secret))
        .form(&[("token", access.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, challenge, _) = call(access.clone()).await;
        if status == 401 {
            assert!(challenge.contains("inactive"), "{challenge}");
            break;
        }
        assert_eq!(status, 200);
        assert!(
            std::time::Instant::now() < deadline,
            "still accepted after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The issuer unreachable: no verdict, so 503, not a 401 blaming the token.
    let (svc, svc_secret) = (
        auth.creds["clients"]["service"]["client_id"]
            .as_str()
            .unwrap()
            .to_owned(),
        auth.creds["clients"]["service"]["client_secret"]
            .as_str()
            .unwrap()
            .to_owned(),
    );
    let fresh: Value = reqwest::Client::new()
        .post(format!("{}/token", auth.url))
        .basic_auth(&svc, Some(&svc_secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    auth.stop();
    let (status, _, body) = call(fresh["access_token"].as_str().unwrap().into()).await;
    assert_eq!(status, 503, "{body}");
    gw.metrics_with(&[
        r#"gateway_auth_failures_total{reason="not_access_token"} 1"#,
        r#"gateway_auth_failures_total{reason="introspection_unavailable"} 1"#,
    ])
    .await;
}
