//! Who is asking: the failed-authentication budget before introspection,
//! and subjects of several issuers kept apart.

use super::*;

/// Random opaque tokens cost an introspection call each: past the failure
/// budget a client gets 429 before any more are looked up; other clients
/// are not affected.
#[tokio::test(flavor = "multi_thread")]
async fn failed_authentications_are_limited_before_introspection() {
    let upstream = echo_upstream().await;
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let (client, secret) = tokens::testing::INTROSPECTION_CLIENT;
    let gw = start(&format!(
        r#"
trusted_proxies = ["127.0.0.1"]
failed_auth_limit = {{ requests_per_second = 0.001, burst = 3 }}

[[issuers]]
issuer = "{}"
audiences = ["api"]

[issuers.introspection]
client_id = "{client}"
client_secret = "{secret}"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
"#,
        issuer.url
    ));
    let random = |i: usize| format!("authorization: Bearer opaque-random-{i}\r\n");
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(get(gw.addr, "/api/x", &random(i)).await.status);
    }
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429, 429, 429]);
    assert_eq!(issuer.introspections(), 3, "no lookups past the budget");
    // Another client (behind the trusted proxy) has its own budget; a JWT,
    // checked locally, is always checked; a good opaque token costs the
    // budget nothing.
    let other = get(
        gw.addr,
        "/api/x",
        &format!("{}x-forwarded-for: 203.0.113.7\r\n", random(99)),
    )
    .await;
    assert_eq!(other.status, 401);
    let token = key.sign(&issuer.claims("alice"));
    let jwt = get(
        gw.addr,
        "/api/x",
        &format!("authorization: Bearer {token}\r\n"),
    )
    .await;
    assert_eq!(jwt.status, 200, "a JWT costs no lookup: {jwt:?}");
    let fresh = "x-forwarded-for: 198.51.100.9\r\n";
    for i in 0..5 {
        let good = format!("opaque-good-{i}");
        issuer.answer(&good, issuer.active("alice"));
        let resp = get(
            gw.addr,
            "/api/x",
            &format!("authorization: Bearer {good}\r\n{fresh}"),
        )
        .await;
        assert_eq!(resp.status, 200, "{resp:?}");
    }
    let bad = get(gw.addr, "/api/x", &format!("{}{fresh}", random(100))).await;
    assert_eq!(bad.status, 401, "the good ones were refunded");
    gw.metrics_with(&[r#"gateway_auth_failures_total{reason="too_many_failures"} 7"#])
        .await;
}

/// Two issuers' `bob` are two principals: each issuer's subjects carry its
/// `subject_prefix`, in the policy's principal and in `x-auth-subject`, and
/// a stored entity applies to the issuer it names only.
#[tokio::test(flavor = "multi_thread")]
async fn two_issuers_subjects_are_different_principals() {
    let upstream = echo_upstream().await;
    let (key_a, key_b) = (SigningKey::es256("a1"), SigningKey::es256("b1"));
    let (a, b) = (
        TestIssuer::start(&[&key_a]).await,
        TestIssuer::start(&[&key_b]).await,
    );
    let policies = policy_dir(
        r#"permit (principal in App::Role::"admin", action, resource);"#,
        r#"
[principal]
user = "App::User"
client = "App::Client"

[defaults]
namespace = "App"

[[route]]
method = "*"
path = "/api/{*rest}"
action = "ReadPublic"
resource = { type = "App::Page", id = "{rest}" }
"#,
        r#"[
  {"uid": {"type": "App::Role", "id": "admin"}, "attrs": {}, "parents": []},
  {"uid": {"type": "App::User", "id": "a:bob"}, "attrs": {}, "parents": [{"type": "App::Role", "id": "admin"}]}
]"#,
    );
    let gw = start(&format!(
        r#"
policies = "{dir}"

[[issuers]]
issuer = "{a}"
audiences = ["api"]
subject_prefix = "a:"

[[issuers]]
issuer = "{b}"
audiences = ["api"]
subject_prefix = "b:"

[[upstreams]]
name = "app"
addresses = ["{upstream}"]

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
policy = true

[[routes]]
path_prefix = "/who"
upstream = "app"
auth = "jwt"
"#,
        dir = policies.path().display(),
        a = a.url,
        b = b.url,
    ));
    let bearer = |token: String| format!("authorization: Bearer {token}\r\n");
    let (from_a, from_b) = (
        bearer(key_a.sign(&a.claims("bob"))),
        bearer(key_b.sign(&b.claims("bob"))),
    );
    assert_eq!(
        get(gw.addr, "/api/x", &from_a).await.status,
        200,
        "a:bob is an admin"
    );
    assert_eq!(
        get(gw.addr, "/api/x", &from_b).await.status,
        403,
        "b:bob is not"
    );
    // Nor does b's word make anyone an admin: its roles are its own names.
    let mut claims = b.claims("bob");
    claims["roles"] = json!(["admin"]);
    let b_admin = bearer(key_b.sign(&claims));
    assert_eq!(
        get(gw.addr, "/api/x", &b_admin).await.status,
        403,
        "b:admin is not admin"
    );
    let who = |auth: String| async move {
        get(gw.addr, "/who", &auth).await.json()["headers"]["x-auth-subject"].clone()
    };
    assert_eq!(who(from_a).await, "a:bob");
    assert_eq!(who(from_b).await, "b:bob");
}
