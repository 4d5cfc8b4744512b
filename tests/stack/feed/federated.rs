//! A group at an upstream identity provider deciding at the edge: a second
//! authserver is the upstream OpenID provider of the stack's authserver
//! (`[[federation.providers]]`, its `idp-staff` mapped to `staff`); a
//! person signs in through the login page's button and the upstream's own
//! pages, and the sidecar and the gateway allow what `staff` may do, from
//! the directory the change feed carries (the token asks for no groups).
//! Removed from the group upstream, the next sign-in takes the membership
//! away, and the same token is denied.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::{Process, free_port};

use super::stack::{A_SECOND, PASSWORD, Stack, USER};
use super::{ALLOWED, DENIED};
use crate::signin::{Browser, through_the_authserver_as};

/// The upstream provider: an authserver of its own on 127.0.0.2 (another
/// host, so a browser keeps its cookies apart from the stack's).
struct Upstream {
    _process: Process,
    _dir: tempfile::TempDir,
    issuer: String,
    admin_token: String,
    scim_token: String,
    http: reqwest::Client,
}

impl Upstream {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listen = SocketAddr::from(([127, 0, 0, 2], free_port()));
        let creds = dir.path().join("credentials.json");
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args([
            "authserver",
            "--dev",
            "serve",
            "--listen",
            &listen.to_string(),
        ])
        .arg("--dev-credentials")
        .arg(&creds)
        .env("PORTCULLIS_AUTHSERVER__DATA_DIR", dir.path().join("data"));
        let mut process = Process::start("upstream authserver", cmd);
        let value: Value = process
            .wait_until(Duration::from_secs(60), "dev credentials", |_| {
                serde_json::from_slice(&std::fs::read(&creds).ok()?).ok()
            })
            .unwrap_or_else(|e| panic!("{e}"));
        process
            .wait_for_port(listen, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        let text = |k: &str| value[k].as_str().unwrap().to_owned();
        Self {
            issuer: text("issuer"),
            admin_token: text("admin_token"),
            scim_token: value["service_tokens"]["scim"].as_str().unwrap().to_owned(),
            http: reqwest::Client::new(),
            _process: process,
            _dir: dir,
        }
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: &Value) -> Value {
        let url = format!("{}{path}", self.issuer);
        super::stack::send(&self.http, method, &url, token, body).await
    }

    async fn scim(&self, method: &str, path: &str, body: &Value) -> Value {
        self.call(method, &format!("/scim/v2{path}"), &self.scim_token, body)
            .await
    }
}

/// Through the stack's login page, the `corp` button and the upstream's
/// pages as `username`, back to the demo SPA: its access token. Each host
/// has its own cookies, as in a browser.
async fn federated_token(stack: &Stack, upstream: &Upstream, username: &str) -> String {
    let (mut ours, mut theirs) = (Browser::new(), Browser::new());
    let login = ours.page(&stack.spa_authorize()).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let end = login.body.find("\" id=\"federated-corp\"").unwrap();
    let start = login.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let button = login.body[start..end].replace("&amp;", "&");
    let to_upstream = ours.page(&format!("{}{button}", stack.issuer)).await;
    assert_eq!(to_upstream.status, 303, "{}", to_upstream.body);
    let callback = through_the_authserver_as(
        &mut theirs,
        &upstream.issuer,
        &to_upstream.location(),
        username,
        PASSWORD,
    )
    .await;
    let mut page = ours.page(&callback).await;
    while page.status == 303 && page.location().starts_with('/') {
        page = ours
            .page(&format!("{}{}", stack.issuer, page.location()))
            .await;
    }
    if page.status == 200 {
        page = ours
            .post(
                &format!("{}/consent", stack.issuer),
                &[
                    ("request", &page.hidden("request")),
                    ("csrf", &page.hidden("csrf")),
                    ("decision", "allow"),
                ],
            )
            .await;
    }
    assert_eq!(page.status, 303, "{}", page.body);
    stack.spa_token(&page.location()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_group_reaches_cedar_through_the_feed() {
    let upstream = tokio::task::block_in_place(Upstream::start);
    let auth = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // The stack's authserver as a client of the upstream.
    let client = upstream
        .call(
            "POST",
            "/admin/v1/clients",
            &upstream.admin_token,
            &json!({
                "client_id": "edge", "kind": "web",
                "redirect_uris": [format!("http://{auth}/login/federated/corp/callback")],
                "scopes": ["openid", "profile", "email", "groups"],
            }),
        )
        .await;
    let ursula = upstream
        .scim(
            "POST",
            "/Users",
            &json!({"schemas": [USER], "userName": "ursula", "password": PASSWORD, "active": true}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let group = upstream
        .scim(
            "POST",
            "/Groups",
            &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                "displayName": "idp-staff", "members": [{"value": ursula}]}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authserver.toml");
    std::fs::write(
        &config,
        format!(
            "[[federation.providers]]\nid = \"corp\"\nname = \"Corp\"\nissuer = {}\n\
             client_id = \"edge\"\nclient_secret = {}\nscopes = [\"email\", \"profile\", \"groups\"]\n\
             jit = true\ngroup_map = {{ \"idp-staff\" = \"staff\" }}\n",
            json!(upstream.issuer),
            client["client_secret"],
        ),
    )
    .unwrap();
    let stack = tokio::task::block_in_place(|| {
        Stack::start_on(auth, &["--config", config.to_str().unwrap()])
    });

    let token = federated_token(&stack, &upstream, "ursula").await;
    let took = stack.until(&token, ALLOWED, A_SECOND).await;
    eprintln!("federated sign-in → staff at the edge: {took:?}");

    // Out of the group upstream: the next sign-in takes `staff` away here,
    // and the token from before is denied within a second.
    let remove = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "remove", "path": format!("members[value eq \"{ursula}\"]")}]});
    upstream
        .scim("PATCH", &format!("/Groups/{group}"), &remove)
        .await;
    let _second = federated_token(&stack, &upstream, "ursula").await;
    let took = stack.until(&token, DENIED, A_SECOND).await;
    eprintln!("upstream group removed → denied after the next sign-in: {took:?}");
}
