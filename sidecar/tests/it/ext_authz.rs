//! The ext_authz gRPC surface as Envoy (and the gateway) use it.

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::json;

use crate::support::{Sidecar, check_request, demo_policies, summarize};

fn claims(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[tokio::test]
async fn allow_sets_identity_headers_and_removes_spoofed_ones() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let c = claims(
        json!({"sub": "zoe", "groups": ["staff"], "scope": "openid orders:read", "client_id": "web"}),
    );
    let resp = client
        .check(check_request("GET", "/api/orders", None, Some(&c)))
        .await
        .unwrap()
        .into_inner();
    let crate::support::Verdict {
        allowed,
        headers,
        removed,
        ..
    } = summarize(&resp);
    assert!(allowed, "{resp:?}");
    assert!(
        headers.contains(&("x-auth-subject".into(), "zoe".into())),
        "{headers:?}"
    );
    assert!(headers.contains(&("x-auth-client-id".into(), "web".into())));
    assert!(headers.contains(&("x-auth-scopes".into(), "openid orders:read".into())));
    assert!(headers.contains(&("x-auth-groups".into(), "staff".into())));
    // Every owned header is either overwritten or removed, never both:
    // Envoy applies removals after additions (seen with the real Envoy in
    // `envoy.rs`), so a set header listed for removal would vanish.
    for h in [
        "x-auth-subject",
        "x-auth-client-id",
        "x-auth-scopes",
        "x-auth-groups",
        "x-auth-roles",
    ] {
        let set = headers.iter().any(|(k, _)| k == h);
        let dropped = removed.iter().any(|r| r == h);
        assert!(set != dropped, "{h}: set {set}, removed {dropped}");
    }
    assert_eq!(removed, ["x-auth-roles"]);

    // Headers an app would read as owned ones (`_` for `-`, any case) are
    // named for removal too.
    let mut req = check_request("GET", "/api/orders", None, Some(&c));
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        for name in [
            "x_auth_subject",
            "x_auth-roles",
            "x-auth_tenant",
            "x.auth.groups",
        ] {
            http.headers.insert(name.into(), "admin".into());
        }
    }
    let resp = client.check(req).await.unwrap().into_inner();
    let mut removed = summarize(&resp).removed;
    removed.sort_unstable();
    assert_eq!(
        removed,
        [
            "x-auth-roles",
            "x-auth_tenant",
            "x.auth.groups",
            "x_auth-roles",
            "x_auth_subject"
        ]
    );
}

#[tokio::test]
async fn deny_is_403_without_internals_and_no_identity_is_401() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let c = claims(json!({"sub": "carol"}));
    let resp = client
        .check(check_request("GET", "/api/orders", None, Some(&c)))
        .await
        .unwrap()
        .into_inner();
    let crate::support::Verdict {
        allowed, status, ..
    } = summarize(&resp);
    assert!(!allowed);
    assert_eq!(status, Some(403));
    let Some(envoy_types::ext_authz::v3::pb::HttpResponse::DeniedResponse(d)) = &resp.http_response
    else {
        panic!("{resp:?}")
    };
    assert_eq!(
        d.body,
        r#"{"error":"forbidden","message":"denied by policy"}"#
    );
    assert!(!d.body.contains("suspended"));

    let resp = client
        .check(check_request("GET", "/api/orders", None, None))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summarize(&resp).status, Some(401));
    assert_eq!(resp.status.unwrap().code, 16);
}

#[tokio::test]
async fn source_address_reaches_the_policies() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let c = claims(json!({"sub": "dave", "amr": ["pwd", "mfa"]}));
    let inside = client
        .check(check_request("GET", "/admin/x", Some("10.0.0.7"), Some(&c)))
        .await
        .unwrap()
        .into_inner();
    let outside = client
        .check(check_request(
            "GET",
            "/admin/x",
            Some("198.51.100.1"),
            Some(&c),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(summarize(&inside).allowed);
    assert!(!summarize(&outside).allowed);
}

/// RFC 9470: a deny that only a second factor stands behind is a 401 that
/// names the `acr` to come back with; the same over the HTTP API.
#[tokio::test]
async fn a_write_without_mfa_is_a_step_up_challenge() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let pwd = claims(json!({"sub": "erin", "amr": ["pwd"]}));
    let resp = client
        .check(check_request("PUT", "/api/orders/o-300", None, Some(&pwd)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(summarize(&resp).status, Some(401));
    let Some(envoy_types::ext_authz::v3::pb::HttpResponse::DeniedResponse(d)) = &resp.http_response
    else {
        panic!("{resp:?}")
    };
    let challenge = d
        .headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key.eq_ignore_ascii_case("www-authenticate"))
        .map(|h| h.value.clone())
        .unwrap();
    assert_eq!(
        challenge,
        r#"Bearer realm="portcullis", error="insufficient_user_authentication", error_description="a stronger sign-in is required", acr_values="urn:portcullis:acr:mfa""#
    );
    assert!(
        d.body.contains("insufficient_user_authentication"),
        "{}",
        d.body
    );
    // With the factor the same write is allowed; a plain forbid stays 403.
    let mfa = claims(json!({"sub": "erin", "amr": ["pwd", "otp", "mfa"]}));
    let resp = client
        .check(check_request("PUT", "/api/orders/o-300", None, Some(&mfa)))
        .await
        .unwrap()
        .into_inner();
    assert!(summarize(&resp).allowed);
    let other = claims(json!({"sub": "erin", "amr": ["pwd"]}));
    let resp = client
        .check(check_request(
            "PUT",
            "/api/orders/o-200",
            None,
            Some(&other),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        summarize(&resp).status,
        Some(403),
        "not her order: a factor would not help, so no step-up"
    );
    let http = reqwest::Client::new()
        .post(sidecar.url("/v1/check"))
        .json(&json!({"method": "PUT", "path": "/api/orders/o-300", "claims": {"sub": "erin", "amr": ["pwd"]}}))
        .send()
        .await
        .unwrap();
    let status = http.status().as_u16();
    let body: serde_json::Value = http.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["stepUp"]["acrValues"], "urn:portcullis:acr:mfa",
        "{body}"
    );
}

/// The `www-authenticate` of a denied check.
fn challenge_of(resp: &envoy_types::ext_authz::v3::pb::CheckResponse) -> Option<String> {
    let Some(envoy_types::ext_authz::v3::pb::HttpResponse::DeniedResponse(d)) = &resp.http_response
    else {
        return None;
    };
    d.headers
        .iter()
        .filter_map(|h| h.header.as_ref())
        .find(|h| h.key.eq_ignore_ascii_case("www-authenticate"))
        .map(|h| h.value.clone())
}

/// dave's order delete, signed in with a factor at `auth_time`.
async fn delete_signed_in_at(
    client: &mut AuthorizationClient<tonic::transport::Channel>,
    auth_time: i64,
) -> envoy_types::ext_authz::v3::pb::CheckResponse {
    let c = claims(json!({"sub": "dave", "amr": ["pwd", "otp", "mfa"], "auth_time": auth_time}));
    let req = check_request("DELETE", "/api/orders/o-200", None, Some(&c));
    client.check(req).await.unwrap().into_inner()
}

#[tokio::test]
async fn a_delete_long_after_sign_in_asks_for_a_fresh_one_with_max_age() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let now = testkit::unix_now();
    // Signed in with a factor an hour ago: a fresh sign-in is asked for.
    let old = delete_signed_in_at(&mut client, now - 3600).await;
    assert_eq!(summarize(&old).status, Some(401));
    assert_eq!(
        challenge_of(&old).unwrap(),
        r#"Bearer realm="portcullis", error="insufficient_user_authentication", error_description="a stronger sign-in is required", acr_values="urn:portcullis:acr:mfa", max_age=900"#
    );
    // Five minutes ago: allowed. The cache keys on the sign-in time, so the
    // old token's answer is not reused for the fresh one.
    let fresh = delete_signed_in_at(&mut client, now - 300).await;
    assert!(summarize(&fresh).allowed, "{fresh:?}");
    let old_again = delete_signed_in_at(&mut client, now - 3600).await;
    assert_eq!(summarize(&old_again).status, Some(401));
}

#[tokio::test]
async fn malformed_check_requests_get_invalid_argument() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let err = client
        .check(envoy_types::ext_authz::v3::pb::CheckRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("attributes"), "{}", err.message());

    let bad = claims(json!({"sub": 42}));
    let err = client
        .check(check_request("GET", "/api/orders", None, Some(&bad)))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("sub"), "{}", err.message());

    let err = client
        .check(check_request("", "/api/orders", None, None))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    // Still serving.
    let c = claims(json!({"sub": "bob"}));
    let ok = client
        .check(check_request("GET", "/api/orders", None, Some(&c)))
        .await
        .unwrap()
        .into_inner();
    assert!(summarize(&ok).allowed);
}

#[tokio::test]
async fn tokens_never_reach_the_decision_log() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let c = claims(json!({"sub": "bob"}));
    client
        .check(check_request("GET", "/api/orders", None, Some(&c)))
        .await
        .unwrap();
    crate::support::eventually("a decision log line", || async {
        !sidecar.stdout().is_empty()
    })
    .await;
    let all = format!("{:?}{:?}", sidecar.stdout(), sidecar.stderr());
    assert!(!all.contains("secret-token-never-logged"));
    assert!(all.contains("req-1"));
}

/// Every response names the policy set that decided, so a caching proxy can
/// flush when it changes, including after an entity write.
#[tokio::test]
async fn responses_carry_the_policy_version() {
    let dir = crate::support::copy_policies(&demo_policies());
    let sidecar = Sidecar::start(dir.path(), &[]);
    let mut client = sidecar.grpc_client().await;
    let version = |resp: &envoy_types::ext_authz::v3::pb::CheckResponse| {
        let field = resp
            .dynamic_metadata
            .as_ref()
            .and_then(|m| m.fields.get(decision::envoy::POLICY_VERSION))
            .and_then(|v| v.kind.clone());
        match field {
            Some(envoy_types::pb::google::protobuf::value::Kind::StringValue(s)) => s,
            other => panic!("no policy version: {other:?}"),
        }
    };
    let c = claims(json!({"sub": "carol"}));
    let denied = client
        .check(check_request("GET", "/api/orders", None, Some(&c)))
        .await
        .unwrap()
        .into_inner();
    let (_, status) = sidecar.get("/v1/status").await;
    let before = version(&denied);
    assert_eq!(status["version"], before.as_str(), "{status}");

    let (code, body) = sidecar
        .admin(
            reqwest::Method::PUT,
            "/v1/entities/App::User/frank",
            Some(&json!({"attrs": {"department": "engineering"}, "parents": []})),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    let c = claims(json!({"sub": "zoe", "groups": ["staff"]}));
    let allowed = client
        .check(check_request("GET", "/api/orders", None, Some(&c)))
        .await
        .unwrap()
        .into_inner();
    assert!(summarize(&allowed).allowed);
    assert_ne!(version(&allowed), before);
}

/// Envoy's HTTP mode, asked directly: the original method and path under
/// `/ext_authz`, the bearer token verified by the sidecar.
#[tokio::test]
async fn http_mode_answers_with_headers_envoy_understands() {
    use tokens::testing::{SigningKey, TestIssuer};
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let (sidecar, _config) = crate::support::trusting(&issuer.url);
    let mut claims = issuer.claims("zoe");
    claims["groups"] = json!(["staff"]);
    let token = key.sign(&claims);
    let http = reqwest::Client::new();
    let base = format!("http://{}/ext_authz", sidecar.http);

    let resp = http
        .get(format!("{base}/api/orders/o-1?fields=all"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-auth-subject"], "zoe");
    assert_eq!(resp.headers()["x-auth-groups"], "staff");
    // The owned headers not set are the ones Envoy must remove.
    let mut removed: Vec<&str> = resp.headers()["x-envoy-auth-headers-to-remove"]
        .to_str()
        .unwrap()
        .split(',')
        .collect();
    removed.sort_unstable();
    assert_eq!(
        removed,
        ["x-auth-client-id", "x-auth-roles", "x-auth-scopes"]
    );

    // The original method counts: staff may read, not delete.
    let resp = http
        .delete(format!("{base}/api/orders/o-1"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.headers().get("x-auth-subject").is_none());
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "forbidden");

    // No token: 401 asking for one; a bad one: 401 naming the problem.
    let resp = http.get(format!("{base}/api/orders")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );
    let resp = http
        .get(format!("{base}/api/orders"))
        .bearer_auth("a.b.c")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\"")
    );

    // Only paths under the prefix are questions.
    let resp = http.get(format!("{base}x/api")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
}
