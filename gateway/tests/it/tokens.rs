//! Bearer tokens at the edge: every hostile token of the shared table is a
//! 401 that never reaches the upstream, counted by reason; a key rotation
//! at the issuer fails no request.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer, hostile_tokens};

use crate::support::{echo_upstream, jwt_app, start};

#[tokio::test(flavor = "multi_thread")]
async fn hostile_tokens_are_refused_and_counted() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let other = SigningKey::es256("k2");
    let issuer = TestIssuer::start(&[&key]).await;
    let stranger = TestIssuer::start(&[&other]).await;
    // The stranger is trusted too: its key must still not sign for ours.
    let gw = start(&format!(
        "{}\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n",
        jwt_app(&issuer.url, upstream),
        stranger.url
    ));
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    let cases = hostile_tokens(&issuer, &key, &stranger, &other);
    for case in &cases {
        let resp = http
            .get(format!("http://{}/api/orders", gw.addr))
            .header("authorization", format!("Bearer {}", case.token))
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
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let ok = if case.reason == "ok" {
            status == 200 && body["headers"]["x-auth-subject"] == "alice"
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
