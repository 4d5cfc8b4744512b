//! The admin API against the real binary.

use serde_json::{Value, json};

use crate::server::Authserver;

struct Admin<'a> {
    server: &'a Authserver,
    token: String,
}

impl Admin<'_> {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .server
            .http
            .request(method.parse().unwrap(), self.server.url(path))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

fn admin(server: &Authserver) -> Admin<'_> {
    Admin {
        server,
        token: server.creds["admin_token"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn users_clients_keys_and_audit_through_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let api = admin(&server);

    // Without, or with a wrong, token: 401 with a challenge.
    for token in [None, Some("wrong-token-0123456789abcdefghij")] {
        let mut req = server.http.get(server.url("/admin/v1/users"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert!(resp.headers().contains_key("www-authenticate"));
    }

    let (status, user) = api
        .call("POST", "/admin/v1/users", Some(json!({"username": "erin", "password": "long enough pw", "groups": ["staff"], "email": "erin@example.com"})))
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["groups"], json!(["staff"]));
    assert!(
        user.get("password_hash").is_none(),
        "hashes never leave the server"
    );
    let id = user["id"].as_str().unwrap().to_owned();
    for (body, status, says) in [
        (
            json!({"username": "Erin", "password": "long enough pw"}),
            409,
            "already exists",
        ),
        (
            json!({"username": "x y", "password": "long enough pw"}),
            400,
            "username",
        ),
        (
            json!({"username": "frank", "password": "short"}),
            400,
            "at least 8",
        ),
        (json!({"username": "frank"}), 400, "password"),
        (
            json!({"username": "frank", "password": "long enough pw", "admin": true}),
            400,
            "admin",
        ),
        (
            json!({"username": 7, "password": "long enough pw"}),
            400,
            "username",
        ),
    ] {
        let (got, err) = api
            .call("POST", "/admin/v1/users", Some(body.clone()))
            .await;
        assert_eq!(got, status, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(says),
            "{body}: {err}"
        );
    }
    let resp = server
        .http
        .post(server.url("/admin/v1/users"))
        .bearer_auth(&api.token)
        .body("username=x")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);

    let (_, page) = api
        .call("GET", "/admin/v1/users?limit=1&offset=1", None)
        .await;
    assert_eq!(
        page["users"][0]["username"], "erin",
        "demo, erin by name: {page}"
    );
    let (status, _) = api.call("GET", "/admin/v1/users?limit=5000", None).await;
    assert_eq!(status, 400);

    // A bad password fails the whole patch: the user is not disabled.
    let (status, _) = api
        .call(
            "PATCH",
            &format!("/admin/v1/users/{id}"),
            Some(json!({"disabled": true, "password": "short"})),
        )
        .await;
    assert_eq!(status, 400);
    let (_, still) = api
        .call("GET", &format!("/admin/v1/users/{id}"), None)
        .await;
    assert_eq!(still["disabled"], false, "no partial write");
    let (status, patched) = api
        .call(
            "PATCH",
            &format!("/admin/v1/users/{id}"),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!((status, &patched["disabled"]), (200, &json!(true)));
    let (status, _) = api
        .call("DELETE", &format!("/admin/v1/users/{id}"), None)
        .await;
    assert_eq!(status, 204);
    let (status, err) = api
        .call("GET", &format!("/admin/v1/users/{id}"), None)
        .await;
    assert_eq!(status, 404, "{err}");

    // Clients: the secret is shown once and works; a new one replaces it.
    let (status, issued) = api
        .call(
            "POST",
            "/admin/v1/clients",
            Some(json!({"client_id": "batch", "kind": "service", "scopes": ["orders:read"]})),
        )
        .await;
    assert_eq!(status, 201, "{issued}");
    let secret = issued["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 43, "256 bits, base64url");
    let (_, client) = api.call("GET", "/admin/v1/clients/batch", None).await;
    assert!(client.get("secret_digest").is_none());
    assert_eq!(client["grant_types"], json!(["client_credentials"]));
    let token = |secret: String| {
        let server = &server;
        async move {
            server
                .form(
                    "/token",
                    Some(("batch", &secret)),
                    &[("grant_type", "client_credentials")],
                )
                .await
                .0
        }
    };
    assert_eq!(token(secret.clone()).await, 200);
    let (_, renewed) = api
        .call("POST", "/admin/v1/clients/batch/secret", None)
        .await;
    assert_eq!(token(secret).await, 401);
    assert_eq!(
        token(renewed["client_secret"].as_str().unwrap().to_owned()).await,
        200
    );
    for (body, says) in [
        (
            json!({"client_id": "w", "kind": "web", "redirect_uris": ["http://evil.example/cb"]}),
            "plain http",
        ),
        (json!({"client_id": "w", "kind": "web"}), "redirect URI"),
        (json!({"client_id": "w", "kind": "robot"}), "kind"),
        (
            json!({"client_id": "p", "kind": "public", "redirect_uris": ["https://a.example/cb"], "jwks": {"keys": []}}),
            "public client",
        ),
    ] {
        let (status, err) = api
            .call("POST", "/admin/v1/clients", Some(body.clone()))
            .await;
        assert_eq!(status, 400, "{body}: {err}");
        assert!(
            err["message"].as_str().unwrap().contains(says),
            "{body}: {err}"
        );
    }
    let (status, _) = api.call("DELETE", "/admin/v1/clients/batch", None).await;
    assert_eq!(status, 204);

    let (_, keys) = api.call("GET", "/admin/v1/keys", None).await;
    assert_eq!(keys["keys"].as_array().unwrap().len(), 2);
    assert!(keys["keys"][0].get("private_key").is_none());
    let (status, refused) = api.call("POST", "/admin/v1/keys/rotate", None).await;
    assert_eq!(status, 409, "the next key is minutes-young: {refused}");
    let (status, rotation) = api
        .call("POST", "/admin/v1/keys/rotate?force=1", None)
        .await;
    assert_eq!(status, 200, "{rotation}");

    let (_, audit) = api.call("GET", "/admin/v1/audit?limit=50", None).await;
    let by_admin: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "admin")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for action in [
        "user.create",
        "user.disable",
        "user.delete",
        "client.create",
        "client.secret",
        "client.delete",
        "keys.rotate",
    ] {
        assert!(by_admin.contains(&action), "{action} in {by_admin:?}");
    }
}

#[tokio::test]
async fn the_openapi_document_matches_the_routes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let api = admin(&server);
    let (status, doc) = api.call("GET", "/admin/v1/openapi.json", None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, ops) in paths {
        for method in ops.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            let concrete = path.replace("{id}", "does-not-exist");
            let resp = server
                .http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    server.url(&concrete),
                )
                .bearer_auth(&api.token)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            assert_ne!(status, 405, "{method} {path} is not routed");
            // A 404 must be ours (a JSON error), not a missing route.
            assert!(
                status != 404 || body.contains("\"error\""),
                "{method} {path}: {status} {body}"
            );
        }
    }
    assert_eq!(documented.len(), 17, "{documented:?}");
}

#[tokio::test]
async fn the_admin_api_is_off_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let (_, master) = authserver::crypto::MasterKey::generate().unwrap();
    let server = Authserver::production(
        dir.path(),
        &[
            ("PORTCULLIS_AUTHSERVER__ISSUER", "https://auth.example.com"),
            ("PORTCULLIS_AUTHSERVER__MASTER_KEY", &master),
        ],
    );
    let resp = server
        .http
        .get(server.url("/admin/v1/users"))
        .bearer_auth("anything-at-all-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("admin API is off")
    );
    // Production mode: `__Host-` cookies, Secure.
    let env = [
        ("PORTCULLIS_AUTHSERVER__ISSUER", "https://auth.example.com"),
        ("PORTCULLIS_AUTHSERVER__MASTER_KEY", master.as_str()),
    ];
    let mut add = crate::server::command(dir.path());
    add.args([
        "client",
        "add",
        "app",
        "--kind",
        "web",
        "--redirect-uri",
        "https://app.example.com/cb",
        "--scope",
        "openid",
    ]);
    for (k, v) in env {
        add.env(k, v);
    }
    let out = add.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = server
        .http
        .get(server.url("/authorize?client_id=app&response_type=code&scope=openid"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-portcullis-csrf="), "{cookie}");
    assert!(
        cookie.contains("; Secure")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
}

#[tokio::test]
async fn admin_changes_record_who_and_from_where() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let api = admin(&server);
    let (status, _) = api
        .call(
            "POST",
            "/admin/v1/users",
            Some(json!({"username": "gina", "password": "long enough pw"})),
        )
        .await;
    assert_eq!(status, 201);
    let (_, audit) = api.call("GET", "/admin/v1/audit?limit=5", None).await;
    let created = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "user.create")
        .unwrap();
    assert_eq!(created["actor"], "admin");
    assert_eq!(created["source_ip"], "127.0.0.1");
}
