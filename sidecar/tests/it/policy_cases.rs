//! The policy test files in `policies/tests` through the HTTP API and the
//! ext_authz gRPC API: the library's verdicts must hold on every surface.

use decision::Outcome;
use serde_json::{Value, json};
use sidecar::policy_test::load_cases;

use crate::support::{Sidecar, check_request, demo_policies};

fn outcome(body: &Value) -> Outcome {
    Outcome {
        allowed: body["decision"] == "Allow",
        policies: body["determiningPolicies"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
        errors: body["errors"]
            .as_array()
            .map(|a| a.iter().map(|p| p.as_str().unwrap().to_owned()).collect())
            .unwrap_or_default(),
        reason: body["reason"].as_str().map(str::to_owned),
        step_up: body["stepUp"]["acrValues"]
            .as_str()
            .map(|acr| decision::StepUp {
                acr_values: acr.to_owned(),
                max_age: body["stepUp"]["maxAge"].as_u64(),
            }),
    }
}

#[tokio::test]
async fn policy_tests_hold_over_http() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let cases = load_cases(&demo_policies()).unwrap();
    assert!(cases.len() >= 20, "the demo model has at least 20 cases");
    let mut failures = Vec::new();
    for named in &cases {
        let case = &named.case;
        let (status, body) = if let Some(http) = &case.http {
            let mut req = json!({"method": http.method, "path": http.path});
            if let Some(c) = &http.claims {
                req["claims"] = Value::Object(c.clone());
            }
            if let Some(s) = http.source {
                req["source"] = json!(s.to_string());
            }
            if let Some(t) = http.time {
                req["time"] = json!(t);
            }
            sidecar.post("/v1/check", &req).await
        } else {
            let cedar = case.cedar.as_ref().unwrap();
            let mut req = json!({
                "principal": cedar.principal, "action": cedar.action,
                "resource": cedar.resource, "context": cedar.context,
            });
            if let Some(e) = &cedar.entities {
                req["entities"] = e.clone();
            }
            sidecar.post("/v1/is_authorized", &req).await
        };
        assert_eq!(status, 200, "{}: {body}", case.name);
        if let Err(why) = case.verify(&outcome(&body)) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test]
async fn policy_tests_hold_over_grpc() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let mut client = sidecar.grpc_client().await;
    let mut checked = 0;
    for named in load_cases(&demo_policies()).unwrap() {
        let case = named.case;
        // Direct Cedar requests have no ext_authz form; cases with a fixed
        // time are compared on the decision (gRPC requests use the clock).
        let Some(http) = &case.http else { continue };
        let source = http.source.map(|s| s.to_string());
        // A sign-in time keeps its age relative to the case's time.
        let mut claims = http.claims.clone();
        if let (Some(c), Some(time)) = (claims.as_mut(), http.time)
            && let Some(at) = c.get("auth_time").and_then(Value::as_i64)
        {
            c.insert("auth_time".into(), json!(at + testkit::unix_now() - time));
        }
        let req = check_request(&http.method, &http.path, source.as_deref(), claims.as_ref());
        let resp = client.check(req).await.unwrap().into_inner();
        let allowed = resp.status.as_ref().map(|s| s.code) == Some(0);
        assert_eq!(
            allowed,
            case.expect == sidecar::policy_test::Expected::Allow,
            "{}: {resp:?}",
            case.name
        );
        checked += 1;
    }
    assert!(checked >= 20);
}

#[tokio::test]
async fn batch_answers_in_order_and_names_the_bad_item() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let ctx = json!({"scopes": [], "amr": [], "time": 0});
    let req = |user: &str| {
        json!({"principal": {"type": "App::User", "id": user}, "action": {"type": "App::Action", "id": "ListOrders"},
               "resource": {"type": "App::Collection", "id": "orders"}, "context": ctx})
    };
    let (status, body) = sidecar
        .post(
            "/v1/is_authorized/batch",
            &json!({"requests": [req("bob"), req("nobody"), req("carol")]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let decisions: Vec<&str> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["Allow", "Deny", "Deny"]);
    assert_eq!(
        body["results"][2]["determiningPolicies"],
        json!(["suspended-users"])
    );

    let mut bad = req("bob");
    bad["context"]["time"] = json!("noon");
    let (status, body) = sidecar
        .post(
            "/v1/is_authorized/batch",
            &json!({"requests": [req("bob"), bad]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["message"].as_str().unwrap().contains("requests[1]"),
        "{body}"
    );

    let many: Vec<Value> = (0..101).map(|_| req("bob")).collect();
    let (status, _) = sidecar
        .post("/v1/is_authorized/batch", &json!({"requests": many}))
        .await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn cached_decisions_are_counted_and_the_log_has_one_line_per_decision() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let req = json!({"method": "GET", "path": "/api/orders", "claims": {"sub": "bob"}, "request_id": "r-42"});
    for _ in 0..3 {
        let (status, body) = sidecar.post("/v1/check", &req).await;
        assert_eq!((status, body["decision"].as_str()), (200, Some("Allow")));
    }
    let metrics = sidecar.text("/metrics").await;
    assert!(metrics.contains("policy_cache_hits_total 2"), "{metrics}");
    assert!(metrics.contains("policy_cache_misses_total 1"), "{metrics}");
    assert!(
        metrics.contains(r#"policy_evaluations_total{decision="allow",policy="viewer-read"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("policy_evaluation_duration_seconds_bucket"),
        "{metrics}"
    );

    crate::support::eventually("three decision log lines", || async {
        sidecar
            .stdout()
            .iter()
            .filter(|l| l.contains("r-42"))
            .count()
            == 3
    })
    .await;
    let lines = sidecar.stdout();
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["principal"], r#"App::User::"bob""#);
    assert_eq!(first["action"], r#"App::Action::"ListOrders""#);
    assert_eq!(first["decision"], "Allow");
    assert_eq!(first["determining_policies"], json!(["viewer-read"]));
    assert_eq!(first["cache_hit"], false);
    let last: Value = serde_json::from_str(&lines[2]).unwrap();
    assert_eq!(last["cache_hit"], true);
}

#[tokio::test]
async fn repeated_direct_requests_are_cached_logged_alike_and_still_validated() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let req = json!({
        "principal": {"type": "App::User", "id": "bob"},
        "action": {"type": "App::Action", "id": "ReadReport"},
        "resource": {"type": "App::Report", "id": "r-sales"},
        "context": {"scopes": [], "amr": [], "time": 0}
    });
    let mut decisions = Vec::new();
    for _ in 0..3 {
        let resp = sidecar
            .client
            .post(sidecar.url("/v1/is_authorized"))
            .header("x-request-id", "direct-7")
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        decisions.push(resp.json::<Value>().await.unwrap());
    }
    assert!(decisions.windows(2).all(|w| w[0] == w[1]), "{decisions:?}");
    let metrics = sidecar.text("/metrics").await;
    assert!(metrics.contains("policy_cache_hits_total 2"), "{metrics}");

    // A context that breaks the schema is refused every time, cached or not.
    let mut bad = req.clone();
    bad["context"]["time"] = json!("noon");
    for _ in 0..2 {
        let (status, body) = sidecar.post("/v1/is_authorized", &bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("context"),
            "{body}"
        );
    }

    crate::support::eventually("three direct decision log lines", || async {
        sidecar
            .stdout()
            .iter()
            .filter(|l| l.contains("direct-7"))
            .count()
            == 3
    })
    .await;
    let lines: Vec<Value> = sidecar
        .stdout()
        .iter()
        .filter(|l| l.contains("direct-7"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for line in &lines {
        assert_eq!(line["principal"], r#"App::User::"bob""#, "{line}");
        assert_eq!(line["action"], r#"App::Action::"ReadReport""#, "{line}");
        assert_eq!(line["resource"], r#"App::Report::"r-sales""#, "{line}");
    }
    assert_eq!(lines[0]["cache_hit"], false);
    assert_eq!(lines[2]["cache_hit"], true);
}
