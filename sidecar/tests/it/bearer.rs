//! The sidecar verifying bearer tokens itself, against a real issuer's
//! discovery and JWKS over HTTP: the path Envoy users take without
//! jwt_authn, and `/v1/check` with `authorization`.

use serde_json::{Value, json};
use tokens::testing::{SigningKey, TestIssuer, now};

use crate::support::{Sidecar, check_request, demo_policies, summarize, trusting as start};

type Client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
    tonic::transport::Channel,
>;

/// `GET /api/orders` through ext_authz with `authorization: Bearer <bearer>`
/// (no header when `None`) and, optionally, jwt_authn metadata claims.
async fn ask(
    client: &mut Client,
    bearer: Option<&str>,
    metadata: Option<&serde_json::Map<String, Value>>,
) -> envoy_types::ext_authz::v3::pb::CheckResponse {
    let mut req = check_request("GET", "/api/orders", None, metadata);
    let headers = &mut req
        .attributes
        .as_mut()
        .unwrap()
        .request
        .as_mut()
        .unwrap()
        .http
        .as_mut()
        .unwrap()
        .headers;
    match bearer {
        Some(token) => headers.insert("authorization".into(), format!("Bearer {token}")),
        None => headers.remove("authorization"),
    };
    client.check(req).await.unwrap().into_inner()
}

fn denial(resp: &envoy_types::ext_authz::v3::pb::CheckResponse) -> (i32, Option<String>, String) {
    use envoy_types::ext_authz::v3::pb::HttpResponse;
    match &resp.http_response {
        Some(HttpResponse::DeniedResponse(d)) => (
            d.status.as_ref().unwrap().code,
            d.headers
                .iter()
                .filter_map(|h| h.header.as_ref())
                .find(|h| h.key == "www-authenticate")
                .map(|h| h.value.clone()),
            d.body.clone(),
        ),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_bearer_tokens_over_grpc() {
    let key = SigningKey::es256("k1");
    let issuer = TestIssuer::start(&[&key]).await;
    let (sidecar, _config) = start(&issuer.url);
    let mut client = sidecar.grpc_client().await;
    let mut claims = issuer.claims("zoe");
    claims["groups"] = json!(["staff"]);
    claims["scope"] = json!("openid orders:read");
    let good = key.sign(&claims);

    let resp = ask(&mut client, Some(&good), None).await;
    let verdict = summarize(&resp);
    assert!(verdict.allowed, "{resp:?}");
    assert!(
        verdict
            .headers
            .contains(&("x-auth-subject".into(), "zoe".into()))
    );
    assert!(
        verdict
            .headers
            .contains(&("x-auth-groups".into(), "staff".into()))
    );

    // Refused tokens: 401 with an RFC 6750 challenge naming the reason.
    let stranger = SigningKey::es256("k-unknown");
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 600);
    let mut other_aud = claims.clone();
    other_aud["aud"] = json!("someone-else");
    for (name, token, says) in [
        ("expired", key.sign(&expired), "expired"),
        ("unknown key", stranger.sign(&claims), "no key"),
        ("other audience", key.sign(&other_aud), "audience"),
        (
            "alg none",
            format!(
                "{}.{}.",
                tokens::testing::b64(&json!({"alg": "none"})),
                tokens::testing::b64(&claims)
            ),
            "malformed",
        ),
        ("garbage", "not-a-jwt".to_owned(), "malformed"),
    ] {
        let resp = ask(&mut client, Some(&token), None).await;
        assert!(!summarize(&resp).allowed, "{name}");
        let (status, challenge, body) = denial(&resp);
        assert_eq!(status, 401, "{name}");
        let challenge = challenge.unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"portcullis\", error=\"invalid_token\""),
            "{name}: {challenge}"
        );
        assert!(challenge.contains(says), "{name}: {challenge}");
        assert!(
            !body.contains(&token[..token.len().min(20)]) || token.len() < 20,
            "{name}: token echoed"
        );
    }

    // A bearer that is not a JWT is refused, not ignored; no header at all is
    // anonymous, and the policies deny it as before.
    let resp = ask(&mut client, Some("secret-token-never-logged"), None).await;
    let resp_no_auth = ask(&mut client, None, None).await;
    assert_eq!(denial(&resp).0, 401);
    let (status, challenge, _) = denial(&resp_no_auth);
    assert_eq!(
        (status, challenge.as_deref()),
        (401, Some("Bearer realm=\"portcullis\""))
    );

    // Claims verified by Envoy's jwt_authn win over the header.
    let metadata = claims.as_object().unwrap().clone();
    let resp = ask(&mut client, Some("not-a-jwt"), Some(&metadata)).await;
    assert!(summarize(&resp).allowed, "{resp:?}");

    // Refusals are counted by reason.
    let metrics = sidecar.text("/metrics").await;
    for reason in ["expired", "unknown_key", "wrong_audience", "malformed"] {
        assert!(
            metrics.contains(&format!(
                "token_verification_failures_total{{reason=\"{reason}\"}}"
            )),
            "{reason} not counted:\n{metrics}"
        );
    }
    let (code, status) = sidecar.get("/v1/status").await;
    assert_eq!(code, 200);
    assert_eq!(status["issuers"][0]["issuer"], issuer.url.as_str());
    assert_eq!(status["issuers"][0]["keys"], 1);
    assert_eq!(sidecar.get("/readyz").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifies_authorization_in_http_check_and_picks_up_rotated_keys() {
    let old = SigningKey::es256("old");
    let issuer = TestIssuer::start(&[&old]).await;
    let (sidecar, _config) = start(&issuer.url);
    let mut claims = issuer.claims("zoe");
    claims["groups"] = json!(["staff"]);
    claims["scope"] = json!("openid orders:read");
    let check = |authorization: String| json!({"method": "GET", "path": "/api/orders", "authorization": authorization});

    let (code, body) = sidecar
        .post("/v1/check", &check(format!("Bearer {}", old.sign(&claims))))
        .await;
    assert_eq!(
        (code, body["decision"].as_str()),
        (200, Some("Allow")),
        "{body}"
    );
    assert_eq!(body["headers"]["x-auth-subject"], "zoe");

    // The issuer rotates to a new key: the first token with its kid makes
    // the sidecar refetch, and it is accepted.
    let new = SigningKey::ed25519("new");
    issuer.publish(&[&old, &new]);
    let (code, body) = sidecar
        .post("/v1/check", &check(format!("Bearer {}", new.sign(&claims))))
        .await;
    assert_eq!(
        (code, body["decision"].as_str()),
        (200, Some("Allow")),
        "{body}"
    );

    // A refused token is a 401 with the challenge, not a decision.
    let mut expired = claims.clone();
    expired["exp"] = json!(now() - 600);
    let resp = sidecar
        .client
        .post(sidecar.url("/v1/check"))
        .json(&check(format!("Bearer {}", old.sign(&expired))))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.contains("invalid_token") && challenge.contains("expired"),
        "{challenge}"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token");

    // `claims` and `authorization` together is ambiguous.
    let mut both = check(format!("Bearer {}", old.sign(&claims)));
    both["claims"] = json!({"sub": "zoe"});
    let (code, body) = sidecar.post("/v1/check", &both).await;
    assert_eq!(code, 400, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_keeps_the_sidecar_unready_and_closed() {
    // Nothing listens on the discard port.
    let (sidecar, _config) = start("http://127.0.0.1:9");
    let (code, body) = sidecar.get("/readyz").await;
    assert_eq!(code, 503, "{body}");
    let key = SigningKey::es256("k");
    let token = key
        .sign(&json!({"iss": "http://127.0.0.1:9", "aud": "api", "sub": "zoe", "exp": now() + 60}));
    let mut client = sidecar.grpc_client().await;
    let resp = ask(&mut client, Some(&token), None).await;
    let (status, challenge, _) = denial(&resp);
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains("not available"));
}

#[test]
fn issuer_config_errors_exit_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        "[[issuers]]\nissuer = \"https://id.example\"\naudiences = []\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sidecar"))
        .args([
            "serve",
            "--check",
            "--config",
            config.to_str().unwrap(),
            "--policies",
        ])
        .arg(demo_policies())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("issuers[0].audiences"), "{stderr}");
}

/// The shared hostile-token table over ext_authz: every refused token is a
/// 401 `invalid_token` counted under its reason; none reaches the policies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_the_hostile_token_table() {
    let key = SigningKey::es256("k1");
    let other = SigningKey::es256("k2");
    let issuer = TestIssuer::start(&[&key]).await;
    let stranger = TestIssuer::start(&[&other]).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sidecar.toml");
    std::fs::write(
        &config,
        format!(
            "[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\nsubject_prefix = \"ours:\"\n\n[[issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\nsubject_prefix = \"stranger:\"\n",
            issuer.url, stranger.url
        ),
    )
    .unwrap();
    let sidecar = Sidecar::start_with(
        &demo_policies(),
        &[],
        &["--config", config.to_str().unwrap()],
    );
    let mut client = sidecar.grpc_client().await;
    let cases = tokens::testing::hostile_tokens(&issuer, &key, &stranger, &other);
    let mut expected: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut failures = Vec::new();
    for case in &cases {
        let resp = ask(&mut client, Some(&case.token), None).await;
        let verdict = summarize(&resp);
        let ok = match (case.reason, verdict.allowed) {
            // A valid token: decided by the policies, never refused as a token.
            ("ok", true) => true,
            ("ok", false) => denial(&resp).0 != 401,
            (_, true) => false,
            (reason, false) => {
                *expected.entry(reason).or_default() += 1;
                let (status, challenge, _) = denial(&resp);
                status == 401 && challenge.is_some_and(|c| c.contains("invalid_token"))
            }
        };
        if !ok {
            failures.push(format!(
                "{}: expected {}, got {resp:?}",
                case.name, case.reason
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let metrics = sidecar.text("/metrics").await;
    for (reason, n) in expected {
        let line = format!("token_verification_failures_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}
