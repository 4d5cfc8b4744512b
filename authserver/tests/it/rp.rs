//! The honest test of the protocol: a certified relying party
//! (openid-client) signs the demo user in through the real pages in
//! headless Chromium, then exchanges the code, checks the ID token, calls
//! userinfo, refreshes, introspects and revokes
//! (`authserver/tests/rp/login.mjs`).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::server::Authserver;

pub(crate) fn rp_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rp")
}

/// Node, the npm packages and Chromium are there (`scripts/install-deps.sh`
/// installs them); outside CI a missing piece skips the test.
pub(crate) fn available() -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = [
        (!rp_dir().join("node_modules/openid-client").exists())
            .then_some("npm packages (npm ci in authserver/tests/rp)"),
        (!Path::new(&chromium).exists()).then_some("chromium"),
        Command::new("node")
            .arg("--version")
            .output()
            .is_err()
            .then_some("node"),
    ];
    let missing: Vec<&str> = missing.into_iter().flatten().collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs {missing:?} for the relying-party test"
    );
    eprintln!("SKIPPED the openid-client browser test: missing {missing:?}");
    false
}

#[tokio::test]
async fn openid_client_logs_in_through_the_pages_in_chromium() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let run = || {
        let out = Command::new("node")
            .arg(rp_dir().join("login.mjs"))
            .arg(server.issuer())
            .arg(dir.path().join("creds.json"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "relying party failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let line = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str::<Value>(line.trim()).unwrap()
    };
    let first = run();
    assert_eq!(first["preferred_username"], "demo");
    assert_eq!(first["userinfo_sub"], first["sub"]);
    assert_eq!(first["refreshed"], true);
    assert_eq!(first["consent_page"], true);
    assert_eq!(first["introspected_active"], true);
    assert_eq!(
        first["access_token_seen_by_the_client"],
        serde_json::json!({"active": false}),
        "RFC 7662 §4: not a resource server, not the audience"
    );
    assert_eq!(first["active_after_revocation"], false);
    assert_eq!(
        first["csp_violations"],
        serde_json::json!([]),
        "the pages work under their own CSP"
    );
    // Consent is remembered: the second login goes straight back.
    let second = run();
    assert_eq!(second["consent_page"], false);
    assert_eq!(second["sub"], first["sub"]);
}

/// The same relying party with MFA on: the demo user has an authenticator
/// app (enrolled on the account page), and the adapter in `login.mjs` gives
/// its code on the second-factor page; the ID token says so.
#[tokio::test]
async fn openid_client_signs_in_with_a_second_factor_through_an_adapter() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = crate::browser::Browser::new(&server.url(""));
    let page = crate::flow::mfa::account(&mut browser, &server).await;
    let (secret, _) =
        crate::flow::mfa::add_app(&mut browser, &page, "phone", crate::support::unix_now()).await;
    let out = Command::new("node")
        .arg(rp_dir().join("login.mjs"))
        .arg(server.issuer())
        .arg(dir.path().join("creds.json"))
        .arg(&secret)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "relying party failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    assert_eq!(seen["second_factor"], true, "{seen}");
    assert_eq!(
        seen["amr"],
        serde_json::json!(["pwd", "otp", "mfa"]),
        "{seen}"
    );
    assert_eq!(seen["acr"], "urn:portcullis:acr:mfa");
    assert_eq!(seen["csp_violations"], serde_json::json!([]));
}
