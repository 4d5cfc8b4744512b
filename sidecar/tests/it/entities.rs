//! The entity admin API: validated, durable, visible to decisions at once.

use reqwest::Method;
use serde_json::json;

use crate::support::{ADMIN_TOKEN, Sidecar, copy_policies, demo_policies};

#[tokio::test]
async fn an_entity_write_is_used_at_once_and_survives_a_restart() {
    let dir = copy_policies(&demo_policies());
    let check = json!({"method": "GET", "path": "/api/reports/r-eng", "claims": {"sub": "frank"}});
    let sidecar = Sidecar::start(dir.path(), &[]);
    assert_eq!(
        sidecar.post("/v1/check", &check).await.1["decision"],
        "Deny"
    );

    let (status, body) = sidecar
        .admin(
            Method::PUT,
            "/v1/entities/App::User/frank",
            Some(&json!({"attrs": {"department": "engineering"}, "parents": [{"type": "App::Group", "id": "staff"}]})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = sidecar.post("/v1/check", &check).await;
    assert_eq!(body["decision"], "Allow", "{body}");
    assert_eq!(body["determiningPolicies"], json!(["department-reports"]));

    // Bulk upsert.
    let (status, body) = sidecar
        .admin(
            Method::PUT,
            "/v1/entities",
            Some(&json!([{"uid": {"type": "App::Order", "id": "o-900"}, "attrs": {"owner": {"__entity": {"type": "App::User", "id": "frank"}}, "department": "engineering"}, "parents": []}])),
        )
        .await;
    assert_eq!((status, body["written"].clone()), (200, json!(1)), "{body}");
    assert_eq!(sidecar.stop().code(), Some(0));

    let sidecar = Sidecar::start(dir.path(), &[]);
    let (status, body) = sidecar
        .admin(Method::GET, "/v1/entities/App::User/frank", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["attrs"]["department"], "engineering");
    assert_eq!(
        sidecar.post("/v1/check", &check).await.1["decision"],
        "Allow"
    );
    let own = json!({"method": "GET", "path": "/api/orders/o-900", "claims": {"sub": "frank"}});
    assert_eq!(sidecar.post("/v1/check", &own).await.1["decision"], "Allow");

    let (status, _) = sidecar
        .admin(Method::DELETE, "/v1/entities/App::User/frank", None)
        .await;
    assert_eq!(status, 204);
    let (status, _) = sidecar
        .admin(Method::DELETE, "/v1/entities/App::User/frank", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        sidecar.post("/v1/check", &check).await.1["decision"],
        "Deny"
    );
    let on_disk: Vec<serde_json::Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("entities.json")).unwrap())
            .unwrap();
    assert!(on_disk.iter().any(|e| e["uid"]["id"] == "o-900"));
    assert!(!on_disk.iter().any(|e| e["uid"]["id"] == "frank"));
}

#[tokio::test]
async fn invalid_entities_are_refused_and_nothing_changes() {
    let dir = copy_policies(&demo_policies());
    let before = std::fs::read_to_string(dir.path().join("entities.json")).unwrap();
    let sidecar = Sidecar::start(dir.path(), &[("PORTCULLIS_SIDECAR__WATCH", "false")]);
    let cases = [
        (
            "/v1/entities/App::Spaceship/x",
            json!({"attrs": {}}),
            "Spaceship",
        ),
        (
            "/v1/entities/App::User/x",
            json!({"attrs": {"department": 7}}),
            "department",
        ),
        (
            "/v1/entities/App::Order/x",
            json!({"attrs": {"department": "d"}}),
            "owner",
        ),
        (
            "/v1/entities/App::User/x",
            json!({"uid": {"type": "App::User", "id": "y"}}),
            "does not match",
        ),
        (
            "/v1/entities/App::User/x",
            json!({"parents": [{"type": "App::Order", "id": "o-100"}]}),
            "ancestor",
        ),
    ];
    for (path, body, needle) in cases {
        let (status, resp) = sidecar.admin(Method::PUT, path, Some(&body)).await;
        assert_eq!(status, 400, "{path} {body}: {resp}");
        let msg = resp["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{needle} not in {msg}");
    }
    assert_eq!(
        std::fs::read_to_string(dir.path().join("entities.json")).unwrap(),
        before
    );
}

#[tokio::test]
async fn the_admin_api_needs_the_token_and_is_off_without_one() {
    let sidecar = Sidecar::start(&demo_policies(), &[]);
    let r = sidecar
        .client
        .get(sidecar.url("/v1/entities/App::User/alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"portcullis\""
    );
    let r = sidecar
        .client
        .get(sidecar.url("/v1/entities/App::User/alice"))
        .bearer_auth(format!("{ADMIN_TOKEN}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let (status, body) = sidecar
        .admin(Method::GET, "/v1/entities/App::User/alice", None)
        .await;
    assert_eq!(
        (status, body["attrs"]["department"].clone()),
        (200, json!("engineering"))
    );
    drop(sidecar);

    let off = Sidecar::start(&demo_policies(), &[("PORTCULLIS_SIDECAR__ADMIN_TOKEN", "")]);
    let (status, body) = off.admin(Method::POST, "/v1/admin/reload", None).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "admin_disabled");
}
