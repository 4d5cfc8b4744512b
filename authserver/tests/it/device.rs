//! The device authorization grant (RFC 8628): openid-client's device
//! functions poll while a person in headless Chromium enters the code,
//! signs in and allows or denies (`authserver/tests/rp/device.mjs`); and
//! what a device or a browser gets wrong, with a scripted browser.

use std::process::Command;

use serde_json::{Value, json};

use crate::browser::Browser;
use crate::rp::{available, rp_dir};
use crate::server::Authserver;

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";

/// Runs `device.mjs` in `mode` against `server` as the demo TV.
fn device_rp(server: &Authserver, mode: &str) -> Value {
    let user = &server.creds["user"];
    let out = Command::new("node")
        .arg(rp_dir().join("device.mjs"))
        .arg(server.issuer())
        .arg(server.client("device").0)
        .arg(user["username"].as_str().unwrap())
        .arg(user["password"].as_str().unwrap())
        .arg(mode)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "device relying party failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn is_user_code(code: &str) -> bool {
    let alphabet = "BCDFGHJKLMNPQRSTVWXZ";
    code.len() == 9
        && code.char_indices().all(|(i, c)| {
            if i == 4 {
                c == '-'
            } else {
                alphabet.contains(c)
            }
        })
}

#[tokio::test]
async fn openid_client_signs_a_device_in_after_slowing_down() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let seen = device_rp(&server, "approve");
    let code = seen["user_code"].as_str().unwrap();
    assert!(is_user_code(code), "{seen}");
    assert_eq!(
        seen["shown_code"], code,
        "the link's code is shown to compare"
    );
    assert_eq!(seen["verification_uri"], server.url("/device"));
    assert_eq!(
        (seen["interval"].as_u64(), seen["expires_in"].as_u64()),
        (Some(5), Some(600))
    );
    assert_eq!(seen["final_page"], "Device connected");
    assert_eq!(seen["preferred_username"], "demo");
    assert_eq!(seen["has_refresh_token"], true);
    assert_eq!(seen["error"], Value::Null, "{seen}");
    let answers: Vec<&str> = seen["answers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(answers.first(), Some(&"authorization_pending"), "{seen}");
    assert!(answers.contains(&"slow_down"), "{seen}");
    assert_eq!(answers.last(), Some(&"tokens"), "{seen}");
    assert!(
        seen["reused_code_page"]
            .as_str()
            .unwrap()
            .contains("not valid"),
        "{seen}"
    );
    assert_eq!(seen["csp_violations"], json!([]));
}

#[tokio::test]
async fn a_denied_device_hears_access_denied() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let seen = device_rp(&server, "deny");
    assert_eq!(seen["final_page"], "Device refused");
    assert_eq!(seen["error"], "access_denied", "{seen}");
    assert_eq!(seen["sub"], Value::Null);
}

#[tokio::test]
async fn a_device_nobody_approves_hears_expired_token() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(
        dir.path(),
        &[],
        &[
            ("PORTCULLIS_AUTHSERVER__DEVICE__CODE_SECONDS", "3"),
            ("PORTCULLIS_AUTHSERVER__DEVICE__INTERVAL_SECONDS", "1"),
        ],
    );
    let seen = device_rp(&server, "expire");
    assert_eq!(seen["expires_in"], 3);
    assert_eq!(seen["error"], "expired_token", "{seen}");
    assert_eq!(seen["answers"][0], "authorization_pending", "{seen}");
}

/// `/device_authorization` as a device would call it.
async fn begin(server: &Authserver, client_id: &str) -> (u16, Value) {
    let (status, _, body) = server
        .form(
            "/device_authorization",
            None,
            &[("client_id", client_id), ("scope", "openid")],
        )
        .await;
    (status, body)
}

async fn poll(server: &Authserver, client_id: &str, device_code: &str) -> Value {
    let (_, _, body) = server
        .form(
            "/token",
            None,
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", client_id),
                ("device_code", device_code),
            ],
        )
        .await;
    body
}

#[tokio::test]
async fn devices_and_browsers_that_get_it_wrong_are_told_what() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(
        dir.path(),
        &[],
        &[(
            "PORTCULLIS_AUTHSERVER__DEVICE__MAX_FAILURES_PER_ADDRESS",
            "2",
        )],
    );
    let metadata: Value = server
        .http
        .get(server.url("/.well-known/openid-configuration"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        metadata["device_authorization_endpoint"],
        server.url("/device_authorization")
    );
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!(DEVICE_GRANT))
    );

    // A client not registered for the grant.
    let (spa, _) = server.client("spa");
    let (status, body) = begin(&server, &spa).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );

    let (tv, _) = server.client("device");
    let (status, started) = begin(&server, &tv).await;
    assert_eq!(status, 200, "{started}");
    let device_code = started["device_code"].as_str().unwrap();
    assert!(is_user_code(started["user_code"].as_str().unwrap()));
    assert_eq!(
        poll(&server, &tv, "no-such-code").await["error"],
        "invalid_grant"
    );
    // Another device client cannot poll for this device.
    let other = json!({"client_id": "other-tv", "kind": "device", "scopes": ["openid"]});
    let (status, _) = server.admin("POST", "/admin/v1/clients", &other).await;
    assert_eq!(status, 201);
    assert_eq!(
        poll(&server, "other-tv", device_code).await["error"],
        "invalid_grant"
    );
    assert_eq!(
        poll(&server, &tv, device_code).await["error"],
        "authorization_pending"
    );
    assert_eq!(poll(&server, &tv, device_code).await["error"], "slow_down");

    // The browser side: a code that is not one, then the limit per address.
    let mut browser = Browser::new(&server.url(""));
    let form = browser.get("/device?user_code=bcdf-ghjk").await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("value=\"BCDF-GHJK\""), "{}", form.body);
    let csrf = form.hidden("csrf");
    for typed in ["BCDF-GHJK", "not a code"] {
        let page = browser
            .post("/device", &[("csrf", &csrf), ("user_code", typed)])
            .await;
        assert_eq!(page.status, 400, "{}", page.body);
        assert!(page.body.contains("not valid"), "{}", page.body);
    }
    // Over the limit even the right code waits.
    let right = started["user_code"].as_str().unwrap();
    let page = browser
        .post("/device", &[("csrf", &csrf), ("user_code", right)])
        .await;
    assert_eq!(page.status, 429, "{}", page.body);
    // Without the CSRF token nothing is looked at.
    let page = browser.post("/device", &[("user_code", right)]).await;
    assert_eq!(page.status, 403);
}

/// A device approved in a browser session that then signs out gets no
/// tokens: they would carry the ended session.
#[tokio::test]
async fn a_sign_out_before_the_poll_refuses_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let (tv, _) = server.client("device");
    let (status, started) = begin(&server, &tv).await;
    assert_eq!(status, 200, "{started}");
    let code = started["user_code"].as_str().unwrap();
    let mut browser = Browser::new(&server.url(""));
    let form = browser.get(&format!("/device?user_code={code}")).await;
    let entered = browser
        .post(
            "/device",
            &[("csrf", &form.hidden("csrf")), ("user_code", code)],
        )
        .await;
    assert_eq!(entered.status, 303, "{}", entered.body);
    let login = browser.get(entered.location()).await;
    let asked = crate::flow::log_in(
        &mut browser,
        &login,
        "demo",
        &crate::flow::password(&server),
    )
    .await;
    let done = crate::flow::consent(&mut browser, &asked, "allow").await;
    assert!(done.body.contains("Device connected"), "{}", done.body);
    let confirm = browser.get("/logout").await;
    let out = browser
        .post("/logout", &[("csrf", &confirm.hidden("csrf"))])
        .await;
    assert!(out.status < 400, "{}", out.body);
    let device_code = started["device_code"].as_str().unwrap();
    let answer = poll(&server, &tv, device_code).await;
    assert_eq!(answer["error"], "access_denied", "{answer}");
}
