//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): a
//! receiver nobody here wrote verifies each logout token against the JWKS
//! (`authserver/tests/rp/backchannel.mjs`, jose), while sessions end by
//! RP-initiated logout and by an administrator disabling the user.

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use testkit::Process;

use crate::browser::Browser;
use crate::flow::{
    VERIFIER, WEB_REDIRECT, authorize_url, claims_of, consent, exchange, log_in, password,
};
use crate::rp::{available, rp_dir};
use crate::server::Authserver;

/// The receiver, answering its first `failures` deliveries 503.
fn receiver(server: &Authserver, client_id: &str, failures: u32) -> (Process, u16) {
    let mut cmd = Command::new("node");
    cmd.arg(rp_dir().join("backchannel.mjs"))
        .arg(server.issuer())
        .arg(client_id)
        .arg(failures.to_string());
    let mut process = Process::start("back-channel receiver", cmd);
    let ready = process
        .wait_for_log("listening", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let port = u16::try_from(ready["port"].as_u64().unwrap()).unwrap();
    (process, port)
}

/// The claims of the `n`th verified logout token, once it has arrived.
fn verified(process: &mut Process, n: usize) -> Value {
    process
        .wait_until(Duration::from_secs(20), "a verified logout token", |p| {
            p.stdout()
                .iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .filter_map(|v| v.get("verified").cloned())
                .nth(n)
        })
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Signs in through the pages and redeems a code: the browser, the ID
/// token and its claims.
async fn id_token_of_a_new_session(server: &Authserver) -> (Browser, String, Value) {
    let mut browser = Browser::new(&server.url(""));
    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let mut page = log_in(&mut browser, &login_page, "demo", &password(server)).await;
    if page.status == 200 {
        page = consent(&mut browser, &page, "allow").await;
    }
    let code = page
        .redirect_param("code")
        .unwrap_or_else(|| panic!("no code: {} {}", page.location(), page.body));
    let (status, tokens) = exchange(server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let id_token = tokens["id_token"].as_str().unwrap().to_owned();
    let claims = claims_of(&id_token);
    (browser, id_token, claims)
}

#[tokio::test]
async fn ended_sessions_send_verified_logout_tokens_with_retries() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let (mut receiver, port) = receiver(&server, "demo-web", 1);
    let uri = format!("http://127.0.0.1:{port}/backchannel-logout");
    let (status, client) = server
        .admin(
            "PATCH",
            "/admin/v1/clients/demo-web",
            &json!({"backchannel_logout_uri": uri}),
        )
        .await;
    assert_eq!(status, 200, "{client}");
    assert_eq!(client["backchannel_logout_uri"], uri);

    // RP-initiated logout with the user's own ID token (no confirmation).
    let (mut browser, id_token, claims) = id_token_of_a_new_session(&server).await;
    let sid = claims["sid"].as_str().unwrap().to_owned();
    let out = browser
        .get(&format!("/logout?id_token_hint={id_token}"))
        .await;
    assert!(out.status < 400, "{} {}", out.status, out.body);
    let first = verified(&mut receiver, 0);
    assert_eq!(first["sid"], sid);
    assert_eq!(first["sub"], claims["sub"]);
    assert_eq!(first["typ"], "logout+jwt");
    assert!(
        receiver.printed("refused_on_purpose"),
        "the first delivery failed and was retried"
    );

    // An administrator disables the user: that session's clients hear too.
    let (_, _, claims) = id_token_of_a_new_session(&server).await;
    let user = claims["sub"].as_str().unwrap();
    let (status, _) = server
        .admin(
            "PATCH",
            &format!("/admin/v1/users/{user}"),
            &json!({"disabled": true}),
        )
        .await;
    assert_eq!(status, 200);
    let second = verified(&mut receiver, 1);
    assert_eq!(second["sid"], claims["sid"]);
    assert_ne!(second["jti"], first["jti"]);
    // Counted once the receiver's answer is back (just after it printed).
    server
        .until_metric("auth_backchannel_logouts_total{result=\"delivered\"} 2")
        .await;
}

#[tokio::test]
async fn only_https_or_loopback_logout_uris_are_registered() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    for bad in [
        "http://rp.example.com/logout",
        "ftp://127.0.0.1/logout",
        "https://rp.example.com/logout#frag",
        "/relative",
    ] {
        let (status, body) = server
            .admin(
                "PATCH",
                "/admin/v1/clients/demo-web",
                &json!({"backchannel_logout_uri": bad}),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = server
        .admin(
            "PATCH",
            "/admin/v1/clients/demo-web",
            &json!({"backchannel_logout_uri": 42}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, created) = server.admin(
        "POST",
        "/admin/v1/clients",
        &json!({"client_id": "rp2", "kind": "web", "redirect_uris": ["https://rp2.example.com/cb"],
                "backchannel_logout_uri": "https://rp2.example.com/logout"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, cleared) = server
        .admin(
            "PATCH",
            "/admin/v1/clients/rp2",
            &json!({"backchannel_logout_uri": null}),
        )
        .await;
    assert_eq!(
        (status, &cleared["backchannel_logout_uri"]),
        (200, &Value::Null)
    );
}
