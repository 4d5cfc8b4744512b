//! Bad input gets a clear 4xx with a message naming the problem; the
//! process keeps serving and nothing is allowed.

use serde_json::{Value, json};

use crate::support::{Sidecar, demo_policies};

async fn raw(sidecar: &Sidecar, path: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let r = sidecar
        .client
        .post(sidecar.url(path))
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn http_api_rejects_bad_input_with_named_errors() {
    let sidecar = Sidecar::start(
        &demo_policies(),
        &[("PORTCULLIS_SIDECAR__MAX_BODY_BYTES", "4096")],
    );
    let ctx = json!({"scopes": [], "amr": [], "time": 0});
    let direct = |p: Value, a: Value, r: Value, c: Value| json!({"principal": p, "action": a, "resource": r, "context": c});
    let user = json!({"type": "App::User", "id": "alice"});
    let read = json!({"type": "App::Action", "id": "ReadOrder"});
    let order = json!({"type": "App::Order", "id": "o-100"});

    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("/v1/check", json!({"path": "/api/orders"}), 400, "method"),
        (
            "/v1/check",
            json!({"method": "get", "path": "/api/orders"}),
            400,
            "method",
        ),
        (
            "/v1/check",
            json!({"method": "GET", "path": "/x", "claims": {"sub": ["a"]}}),
            400,
            "sub",
        ),
        (
            "/v1/check",
            json!({"method": "GET", "path": "/x", "source": "not-an-ip"}),
            400,
            "source",
        ),
        (
            "/v1/check",
            json!({"method": "GET", "path": "/x", "surprise": 1}),
            400,
            "surprise",
        ),
        (
            "/v1/is_authorized",
            direct(
                json!({"type": "App::Spaceship", "id": "x"}),
                read.clone(),
                order.clone(),
                ctx.clone(),
            ),
            400,
            "Spaceship",
        ),
        (
            "/v1/is_authorized",
            direct(
                user.clone(),
                json!({"type": "App::Action", "id": "Fly"}),
                order.clone(),
                ctx.clone(),
            ),
            400,
            "Fly",
        ),
        (
            "/v1/is_authorized",
            direct(
                user.clone(),
                read.clone(),
                order.clone(),
                json!({"scopes": "x", "amr": [], "time": 0}),
            ),
            400,
            "context",
        ),
        (
            "/v1/is_authorized",
            direct(
                user.clone(),
                read.clone(),
                order.clone(),
                json!({"amr": [], "time": 0}),
            ),
            400,
            "scopes",
        ),
        (
            "/v1/is_authorized",
            direct(
                user.clone(),
                read.clone(),
                order.clone(),
                json!({"scopes": [], "amr": [], "time": 0, "surprise": 1}),
            ),
            400,
            "surprise",
        ),
        (
            "/v1/is_authorized",
            direct(
                user.clone(),
                read.clone(),
                order.clone(),
                json!({"scopes": [], "amr": [], "time": "noon"}),
            ),
            400,
            "time",
        ),
        (
            "/v1/is_authorized",
            direct(
                user.clone(),
                read.clone(),
                order.clone(),
                json!({"scopes": [], "amr": [1], "time": 0}),
            ),
            400,
            "amr",
        ),
        (
            "/v1/is_authorized",
            direct(
                json!("App::User::\"alice\""),
                read.clone(),
                order.clone(),
                ctx.clone(),
            ),
            400,
            "principal",
        ),
        (
            "/v1/is_authorized",
            json!({"principal": user, "action": read}),
            400,
            "resource",
        ),
        (
            "/v1/is_authorized",
            {
                let mut d = direct(user.clone(), read.clone(), order.clone(), ctx.clone());
                d["entities"] = json!([{"uid": {"type": "App::User", "id": "alice"}, "attrs": {"department": 1}, "parents": []}]);
                d
            },
            400,
            "entities",
        ),
    ];
    for (path, body, want, needle) in cases {
        let (status, resp) = sidecar.post(path, &body).await;
        assert_eq!(status, want, "{path} {body}: {resp}");
        let msg = resp["message"].as_str().unwrap_or_default();
        assert!(
            msg.contains(needle),
            "`{needle}` not named in `{msg}` for {body}"
        );
        assert!(resp["error"].is_string());
    }

    let (status, resp) = raw(
        &sidecar,
        "/v1/check",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{resp}");
    assert!(resp["message"].as_str().unwrap().contains("invalid JSON"));
    // A second document after the body is not silently ignored.
    let (status, resp) = raw(
        &sidecar,
        "/v1/check",
        "application/json",
        br#"{"method":"GET","path":"/x"} {"method":"DELETE"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{resp}");
    assert!(
        resp["message"].as_str().unwrap().contains("trailing"),
        "{resp}"
    );
    // A value of the wrong type is named by where it is.
    let (status, resp) = raw(
        &sidecar,
        "/v1/check",
        "application/json",
        br#"{"method":5,"path":"/x"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 400, "{resp}");
    assert!(
        resp["message"].as_str().unwrap().contains("at `method`"),
        "{resp}"
    );
    let (status, _) = raw(&sidecar, "/v1/check", "text/plain", b"{}".to_vec()).await;
    assert_eq!(status, 415);
    let big = format!(r#"{{"method":"GET","path":"/{}"}}"#, "a".repeat(5000));
    let (status, resp) = raw(&sidecar, "/v1/check", "application/json", big.into_bytes()).await;
    assert_eq!(status, 413, "{resp}");
    assert_eq!(resp["error"], "payload_too_large");

    let (status, resp) = sidecar.get("/v1/nope").await;
    assert_eq!((status, resp["error"].as_str()), (404, Some("not_found")));
    let (status, _) = sidecar.get("/v1/check").await;
    assert_eq!(status, 405);

    // Hostile paths and unknown routes are decisions: deny, with a reason.
    for path in [
        "/api/../admin/x",
        "/api/orders/%2e%2e/x",
        "/a%00b",
        "/api/orders/o%2D1",
        "relative",
    ] {
        let (status, resp) = sidecar
            .post(
                "/v1/check",
                &json!({"method": "GET", "path": path, "claims": {"sub": "dave"}}),
            )
            .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(resp["decision"], "Deny", "{path}: {resp}");
        assert!(resp["reason"].is_string(), "{path}: {resp}");
    }

    // Still alive and deciding.
    let (status, resp) = sidecar
        .post(
            "/v1/check",
            &json!({"method": "GET", "path": "/api/orders", "claims": {"sub": "bob"}}),
        )
        .await;
    assert_eq!((status, resp["decision"].as_str()), (200, Some("Allow")));
    let (status, _) = sidecar.get("/healthz").await;
    assert_eq!(status, 200);
    let (status, body) = sidecar.get("/readyz").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));
}

#[tokio::test]
async fn read_only_views() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let (status, body) = sidecar.get("/v1/policies").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"writes-require-mfa"), "{ids:?}");
    let schema = sidecar.text("/v1/schema").await;
    assert!(schema.contains("namespace App"));
    let (_, status) = sidecar.get("/v1/status").await;
    assert_eq!(status["policies"], json!(ids.len()));
    assert_eq!(status["entities"], 20);
    assert!(status["version"].as_str().unwrap().len() == 16);
}
