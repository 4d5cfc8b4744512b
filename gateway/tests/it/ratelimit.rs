//! Rate limits: 429 with Retry-After, per client id or per source address,
//! in-process or shared through the real Redis by two gateways.

use serde_json::json;
use tokens::testing::{SigningKey, TestIssuer};

use crate::support::{echo_upstream, jwt_app, redis_url, start};

#[tokio::test(flavor = "multi_thread")]
async fn local_limits_per_client_and_per_address() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let gw = start(&format!(
        r#"{}rate_limit = {{ requests_per_second = 0.5, burst = 3, key = "client_id" }}

[[routes]]
path_prefix = "/public"
upstream = "app"
auth = "public"
rate_limit = {{ requests_per_second = 0.5, burst = 2 }}
"#,
        jwt_app(&issuer.url, upstream)
    ));
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    let token = |client: &str| {
        let mut c = issuer.claims("someone");
        c["client_id"] = json!(client);
        key.sign(&c)
    };
    let (a, b) = (token("client-a"), token("client-b"));
    for _ in 0..3 {
        let resp = http
            .get(url("/api/x"))
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = http
        .get(url("/api/x"))
        .bearer_auth(&a)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "one token every 2 s: {wait}");
    assert_eq!(
        resp.json::<serde_json::Value>().await.unwrap()["error"],
        "rate_limited"
    );
    // Another client has its own bucket.
    let resp = http
        .get(url("/api/x"))
        .bearer_auth(&b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // By address on the public route.
    for expected in [200, 200, 429] {
        let resp = http.get(url("/public/p")).send().await.unwrap();
        assert_eq!(resp.status(), expected);
    }
    gw.metrics_with(&[
        r#"gateway_rate_limited_total{route="/api"} 1"#,
        r#"gateway_requests_total{route="/public",status="429"} 1"#,
    ])
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn global_limits_are_shared_by_replicas_through_redis() {
    if let Some(redis) = redis_url().await {
        global_limits_are_shared(&redis).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn global_limits_are_shared_by_replicas_through_a_redis_cluster() {
    if let Some(cluster) = testkit::RedisCluster::shared() {
        global_limits_are_shared(&cluster.url()).await;
    }
}

async fn global_limits_are_shared(redis: &str) {
    let upstream = echo_upstream().await;
    let prefix = format!("gw_test:{}:{}:", std::process::id(), tokens::testing::now());
    let config = format!(
        r#"
redis_url = "{redis}"
redis_prefix = "{prefix}"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
rate_limit = {{ requests_per_second = 0.2, burst = 3, scope = "global" }}
"#
    );
    let (one, two) = (start(&config), start(&config));
    let http = reqwest::Client::new();
    for gw in [&one, &two, &one] {
        let resp = http
            .get(format!("http://{}/x", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let resp = http
        .get(format!("http://{}/x", two.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429, "the budget is shared");
    let wait: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
}

/// Redis down: a global limit admits (an outage of the limiter must not
/// become an outage of the route, as Envoy's `failure_mode_deny: false`),
/// and every such admission is counted.
#[tokio::test(flavor = "multi_thread")]
async fn a_global_limit_admits_and_counts_while_redis_is_unreachable() {
    let upstream = echo_upstream().await;
    let nothing_there = crate::support::free_port();
    let gw = start(&format!(
        r#"
redis_url = "redis://127.0.0.1:{nothing_there}"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/"
upstream = "app"
auth = "public"
rate_limit = {{ requests_per_second = 0.2, burst = 1, scope = "global" }}
"#
    ));
    let http = reqwest::Client::new();
    for _ in 0..4 {
        let resp = http
            .get(format!("http://{}/x", gw.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    let metrics = gw.metrics_with(&["rate_limit_store"]).await;
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("gateway_decision_failures_total") && l.contains("rate_limit_store")
        })
        .unwrap();
    assert!(
        line.contains(r#"outcome="open""#) && line.ends_with(" 4"),
        "{line}"
    );
}
