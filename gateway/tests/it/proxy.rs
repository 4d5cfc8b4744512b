use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer, now};

use crate::support::{
    Auth, GatewayConfig, Route, demo_policies, echo_upstream, free_port, jwt_app, start,
};

#[tokio::test(flavor = "multi_thread")]
async fn protects_routes_and_owns_the_identity_headers() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let iss = issuer.config();
    let config = GatewayConfig::new()
        .issuer(&iss.issuer, &["api"])
        .upstream("app", &[upstream])
        .route(Route::new("/public", "app", Auth::Public))
        .route(Route::new("/api", "app", Auth::Jwt).scopes(&["orders:read"]))
        .route(Route::new("/api/admin", "app", Auth::Jwt).scopes(&["admin"]))
        .to_toml();
    let gw = start(&config);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", gw.addr);

    // Public: proxied, with forged identity headers removed.
    let resp = http
        .get(url("/public/page"))
        .header("x-auth-subject", "root")
        .header("X-Auth-Groups", "admins")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["path"], "/public/page");
    assert!(seen["headers"].get("x-auth-subject").is_none(), "{seen}");
    assert!(seen["headers"].get("x-auth-groups").is_none(), "{seen}");

    // JWT routes: no token, a bad token, a good one.
    let resp = http.get(url("/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let resp = http
        .get(url("/api/orders"))
        .bearer_auth("not.a.jwt")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );

    let mut claims = issuer.claims("alice");
    claims["scope"] = json!("openid orders:read");
    claims["groups"] = json!(["staff", "editors"]);
    claims["client_id"] = json!("web");
    let token = key.sign(&claims);
    let resp = http
        .get(url("/api/orders"))
        .bearer_auth(&token)
        .header("x-auth-subject", "root")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen: Value = resp.json().await.unwrap();
    let h = &seen["headers"];
    assert_eq!(
        h["x-auth-subject"], "alice",
        "the verified subject, not the forged one: {seen}"
    );
    assert_eq!(h["x-auth-groups"], "staff,editors");
    assert_eq!(h["x-auth-client-id"], "web");
    assert_eq!(h["x-auth-scopes"], "openid orders:read");
    assert!(
        h.get("authorization").is_none(),
        "the token is not forwarded"
    );

    // Request ids: kept when plain, made when absent or odd; traceparent
    // passes through when well-formed.
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let resp = http
        .get(url("/public/x"))
        .header("x-request-id", "abc-123")
        .header("traceparent", tp)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"], "abc-123");
    assert_eq!(seen["headers"]["traceparent"], tp);
    let resp = http
        .get(url("/public/x"))
        .header("x-request-id", "bad id\twith spaces")
        .header("traceparent", "garbage")
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "a fresh id: {id}");
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"]["x-request-id"], id.as_str());
    assert!(seen["headers"].get("traceparent").is_none());

    // Longest prefix: /api/admin needs `admin`.
    let resp = http
        .get(url("/api/admin/users"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    // `/apiary` is not under `/api`; nothing else matches.
    let resp = http.get(url("/apiary")).send().await.unwrap();
    assert_eq!(resp.status(), 404);

    // One canonical path for routing, policy and upstream.
    let resp = http
        .get(url("/public//a/./b/../page"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["path"],
        "/public/a/page"
    );
    for sneaky in [
        "/public/../api/orders",
        "/public/%2e%2e/api/orders",
        "/PUBLIC/../api/orders",
    ] {
        let resp = http.get(url(sneaky)).send().await.unwrap();
        assert_ne!(
            resp.status(),
            200,
            "{sneaky} must not reach /api without a token"
        );
    }
    for (bad, says) in [
        ("/public/a%2fb", "encoded"),
        ("/public/%00", "NUL"),
        ("/public/%ff", "UTF-8"),
        ("/public/a%5cb", "encoded"),
    ] {
        let resp = http.get(url(bad)).send().await.unwrap();
        assert_eq!(resp.status(), 400, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains(says),
            "{bad}: {body}"
        );
    }

    // Oversized headers: refused before any work, never forwarded.
    let resp = http
        .get(url("/public/big"))
        .header("x-padding", "a".repeat(40 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let resp = http
        .get(url("/public/fine"))
        .header("x-padding", "a".repeat(8 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // An expired token.
    let mut old = issuer.claims("alice");
    old["exp"] = json!(now() - 3600);
    old["scope"] = json!("orders:read");
    let resp = http
        .get(url("/api/orders"))
        .bearer_auth(key.sign(&old))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The admin listener: health, readiness (issuer keys fetched), metrics.
    let admin = |p: &str| format!("http://{}{p}", gw.admin);
    assert_eq!(
        http.get(admin("/healthz")).send().await.unwrap().status(),
        200
    );
    assert_eq!(
        http.get(admin("/readyz")).send().await.unwrap().status(),
        200
    );
    let text = gw
        .metrics_with(&[
            r#"gateway_requests_total{route="/api",status="200"} 1"#,
            r#"gateway_requests_total{route="/api/admin",status="403"} 1"#,
            r#"gateway_auth_failures_total{reason="expired"} 1"#,
            r#"gateway_token_cache_total{result="hit"}"#,
        ])
        .await;
    assert!(!text.contains("apiary"), "raw paths never become labels");
    // Every token the cache did not hold was verified, and timed.
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    let misses = value(r#"gateway_token_cache_total{result="miss"}"#);
    assert!(misses >= 2.0, "{misses}");
    assert_eq!(
        value("gateway_token_verification_duration_seconds_count"),
        misses
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idempotent_requests_retry_on_connect_failure_only() {
    let live = echo_upstream().await;
    let dead = format!("127.0.0.1:{}", free_port());
    let config = format!(
        r#"
[[upstreams]]
name = "pair"
addresses = ["{dead}", "{live}"]
connect_timeout_ms = 500

[[upstreams]]
name = "down"
addresses = ["{dead}"]

[[routes]]
path_prefix = "/pair"
upstream = "pair"
auth = "public"

[[routes]]
path_prefix = "/down"
upstream = "down"
auth = "public"
"#
    );
    let gw = start(&config);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    for _ in 0..4 {
        let resp = http.get(url("/pair/x")).send().await.unwrap();
        assert_eq!(resp.status(), 200, "GET retried on the live address");
    }
    let mut posts = Vec::new();
    for _ in 0..4 {
        posts.push(
            http.post(url("/pair/x"))
                .body("x")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert!(
        posts.contains(&200) && posts.iter().any(|s| *s >= 500),
        "POST is never retried: {posts:?}"
    );
    let resp = http.get(url("/down/x")).send().await.unwrap();
    assert_eq!(resp.status(), 502, "nothing to retry on");
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_policy_decides_like_the_sidecar() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let policies = demo_policies();
    let config = format!(
        "policies = \"{}\"\n{}policy = true\n",
        policies.display(),
        jwt_app(&issuer.url, upstream)
    );
    let gw = start(&config);
    let http = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", gw.addr);
    let token = |sub: &str, client: &str, scope: &str| {
        let mut c = issuer.claims(sub);
        c["client_id"] = json!(client);
        c["scope"] = json!(scope);
        key.sign(&c)
    };
    // A client-credentials token (sub = client_id) is the client principal.
    let resp = http
        .get(url("/api/orders"))
        .bearer_auth(token("billing", "billing", "orders:read"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "service-read-orders");
    let resp = http
        .get(url("/api/orders"))
        .bearer_auth(token("billing", "billing", "profile"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["message"], "denied by policy", "no internals: {body}");
    // A user reads their own order.
    let resp = http
        .get(url("/api/orders/o-300"))
        .bearer_auth(token("erin", "web", "openid"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "owner-access");
    let seen: Value = resp.json().await.unwrap();
    assert_eq!(seen["headers"]["x-auth-subject"], "erin");

    // Deleting needs a sign-in with a factor in the last 15 minutes: an
    // hour-old one is asked to sign in again (RFC 9470, with max_age).
    let signed_in_at = |auth_time: u64| {
        let mut c = issuer.claims("dave");
        c["client_id"] = json!("web");
        c["amr"] = json!(["pwd", "otp", "mfa"]);
        c["auth_time"] = json!(auth_time);
        key.sign(&c)
    };
    let resp = http
        .delete(url("/api/orders/o-200"))
        .bearer_auth(signed_in_at(now() - 3600))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\", error=\"insufficient_user_authentication\", \
         error_description=\"a stronger sign-in is required\", \
         acr_values=\"urn:portcullis:acr:mfa\", max_age=900"
    );
    let resp = http
        .delete(url("/api/orders/o-200"))
        .bearer_auth(signed_in_at(now() - 60))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "a fresh sign-in deletes");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_access_log_records_requests_but_no_secrets() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let gw = start(&format!(
        "access_log = {{ path = \"{}\" }}\n{}",
        log.display(),
        jwt_app(&issuer.url, upstream)
    ));
    let http = reqwest::Client::new();
    let mut claims = issuer.claims("alice");
    claims["client_id"] = json!("web");
    let token = key.sign(&claims);
    let resp = http
        .get(format!(
            "http://{}/api/orders?access_token=query-secret",
            gw.addr
        ))
        .bearer_auth(&token)
        .header("cookie", "session=cookie-secret")
        .header("x-request-id", "log-me-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .get(format!("http://{}/api/orders", gw.addr))
        .bearer_auth("not-a-jwt")
        .header("x-request-id", "log-me-2")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "log: {text:?}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok = lines
        .iter()
        .find(|l| l["request_id"] == "log-me-1")
        .unwrap();
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["path"], "/api/orders");
    assert_eq!(ok["route"], "/api");
    assert_eq!(ok["subject"], "alice");
    assert_eq!(ok["client_id"], "web");
    assert_eq!(ok["upstream"], upstream.to_string());
    assert!(ok["duration_ms"].as_f64().unwrap() > 0.0);
    let refused = lines
        .iter()
        .find(|l| l["request_id"] == "log-me-2")
        .unwrap();
    assert_eq!(refused["status"], 401);
    assert!(refused["subject"].is_null());
    for secret in [token.as_str(), "query-secret", "cookie-secret", "not-a-jwt"] {
        assert!(!text.contains(secret), "the log holds a secret: {text}");
    }
}
