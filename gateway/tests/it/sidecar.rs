//! Decisions from the real sidecar binary over ext_authz gRPC: allow,
//! deny, the cache and its flush on a new policy version, fail-closed when
//! the sidecar dies, and recovery when it is back.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer};

use crate::support::{SIDECAR_ADMIN_TOKEN, Sidecar, demo_policies, echo_upstream, jwt_app, start};

fn copy_dir(from: &std::path::Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
    }
    dir
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sidecar_decides_and_a_dead_sidecar_fails_closed() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let policies = copy_dir(&demo_policies());
    let mut sidecar = Sidecar::start(policies.path());
    let config = format!(
        r#"
[sidecar]
address = "http://{}"
# Debug builds under a parallel test run are slow; production keeps a few ms.
deadline_ms = 2000

{}policy = true

[[routes]]
path_prefix = "/public"
upstream = "app"
auth = "public"
policy = true
policy_fail_open = true
"#,
        sidecar.grpc,
        jwt_app(&issuer.url, upstream)
    );
    let gw = start(&config);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    let token = |sub: &str, client: &str, scope: &str, groups: &[&str]| {
        let mut c = issuer.claims(sub);
        c["client_id"] = json!(client);
        c["scope"] = json!(scope);
        c["groups"] = json!(groups);
        key.sign(&c)
    };
    let get = |path: &str, token: &str| {
        http.get(url(path))
            .bearer_auth(token)
            .header("x-auth-subject", "forged")
            .send()
    };

    // Allowed: the identity the upstream sees is the verified one.
    let billing = token("billing", "billing", "orders:read", &[]);
    for _ in 0..3 {
        let resp = get("/api/orders", &billing).await.unwrap();
        assert_eq!(resp.status(), 200);
        let seen: Value = resp.json().await.unwrap();
        assert_eq!(seen["headers"]["x-auth-subject"], "billing", "{seen}");
        assert_eq!(seen["headers"]["x-auth-client-id"], "billing");
    }
    // Denied: the sidecar's 403, naming nothing internal.
    let frank = token("frank", "web", "openid", &[]);
    let resp = get("/api/reports/r-eng", &frank).await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden", "{body}");
    assert_eq!(
        body.as_object().unwrap().len(),
        2,
        "error and request id only: {body}"
    );
    // Public route without credentials: the anonymous principal may read.
    let resp = http.get(url("/public/home")).send().await.unwrap();
    assert_eq!(resp.status(), 200);

    // An entity write changes the policy version; the next answer carries
    // it, and frank's cached deny is not reused.
    let resp = http
        .put(format!("http://{}/v1/entities/App::User/frank", sidecar.http))
        .bearer_auth(SIDECAR_ADMIN_TOKEN)
        .json(&json!({"attrs": {"department": "engineering"}, "parents": [{"type": "App::Group", "id": "staff"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let resp = get("/api/orders/o-1", &billing).await.unwrap();
    assert!(resp.status().is_success() || resp.status() == 403);
    let resp = get("/api/reports/r-eng", &frank).await.unwrap();
    assert_eq!(resp.status(), 200, "decided by the new policy version");

    // Killed mid-run: a decision not yet cached fails closed; the fail-open
    // route lets requests through.
    sidecar.kill();
    let erin = token("erin", "web", "openid", &[]);
    let resp = get("/api/orders/o-300", &erin).await.unwrap();
    assert_eq!(resp.status(), 503);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unavailable");
    let resp = http.get(url("/public/other")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "fail-open route");

    // Back again: decisions resume without restarting the gateway.
    sidecar.restart();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = get("/api/orders/o-300", &erin).await.unwrap().status();
        if status == 200 {
            break;
        }
        assert_eq!(status, 503);
        assert!(Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    gw.metrics_with(&[
        r#"gateway_decision_cache_total{result="hit"} 2"#,
        r#"gateway_decision_failures_total{outcome="closed",reason="unavailable"}"#,
        r#"gateway_decision_failures_total{outcome="open",reason="unavailable"} 1"#,
        r#"gateway_decision_duration_seconds_count{mode="sidecar"}"#,
    ])
    .await;
}

/// Requests for one decision that arrive together (as when a cached
/// decision expires under load) are answered by a single check.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_misses_of_one_decision_share_one_check() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let sidecar = Sidecar::start(&demo_policies());
    let gw = start(&format!(
        "[sidecar]\naddress = \"http://{}\"\ndeadline_ms = 2000\n\n{}policy = true\n",
        sidecar.grpc,
        jwt_app(&issuer.url, upstream)
    ));
    let mut claims = issuer.claims("billing");
    claims["client_id"] = json!("billing");
    claims["scope"] = json!("orders:read");
    let request = format!(
        "GET /api/orders HTTP/1.1\r\nHost: app\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        key.sign(&claims)
    );
    // Connected first, then every request written at once: all of them
    // are in the gateway before any check can have come back.
    const N: usize = 32;
    let mut conns = Vec::new();
    for _ in 0..N {
        conns.push(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    }
    for conn in &mut conns {
        conn.write_all(request.as_bytes()).await.unwrap();
    }
    for mut conn in conns {
        let mut response = String::new();
        conn.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    let sidecar_metrics = reqwest::get(format!("http://{}/metrics", sidecar.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        sidecar_metrics.contains("policy_evaluation_duration_seconds_count 1\n"),
        "one check reached the sidecar:\n{sidecar_metrics}"
    );
    gw.metrics_with(&[
        r#"gateway_decision_cache_total{result="miss"} 1"#,
        &format!("gateway_decision_cache_total{{result=\"hit\"}} {}", N - 1),
    ])
    .await;
}
