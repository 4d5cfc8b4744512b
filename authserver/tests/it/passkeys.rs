//! Passkeys in headless Chromium with its virtual authenticator
//! (`authserver/tests/rp/webauthn.mjs`): registration, second factor,
//! passwordless, a cloned key's counter regression and a removed key.

use std::process::Command;

use serde_json::{Value, json};

use crate::flow::{VERIFIER, WEB_REDIRECT, authorize_url, exchange, password};
use crate::server::Authserver;

#[tokio::test]
async fn passkeys_register_sign_in_and_refuse_clones_and_removed_keys() {
    if !crate::rp::available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let base = format!("http://localhost:{}", server.addr.port());
    let out = Command::new("node")
        .arg(crate::rp::rp_dir().join("webauthn.mjs"))
        .args([
            base.as_str(),
            "demo",
            &password(&server),
            &authorize_url("demo-web", WEB_REDIRECT, &[]),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert!(seen.get("error").is_none(), "{seen:#}\n{}", server.logs());
    assert_eq!(
        seen["csp_violations"],
        json!([]),
        "the pages work under their CSP"
    );
    assert_eq!(
        seen["recovery_codes"], 10,
        "a first factor comes with recovery codes"
    );
    assert!(seen["factors_listed"].as_str().unwrap().contains("laptop"));

    for (code, amr) in [
        ("second_factor_code", json!(["pwd", "hwk", "user", "mfa"])),
        ("passwordless_code", json!(["hwk", "user", "mfa"])),
    ] {
        let (status, tokens) = exchange(&server, seen[code].as_str().unwrap(), VERIFIER).await;
        assert_eq!(status, 200, "{tokens}");
        let id = crate::flow::claims_of(tokens["id_token"].as_str().unwrap());
        assert_eq!(id["amr"], amr, "{code}");
        assert_eq!(id["acr"], "urn:portcullis:acr:mfa");
    }
    assert!(seen["sign_count"].as_u64().unwrap() >= 2, "{seen}");
    for refused in ["clone_refused", "removed_refused"] {
        assert!(
            seen[refused]
                .as_str()
                .unwrap()
                .contains("That passkey was not accepted"),
            "{refused}: {seen:#}"
        );
    }
    assert!(seen["removed_notice"].as_str().unwrap().contains("removed"));

    let store = server.embedded_store().await;
    let events = store.audit_events(200).await.unwrap();
    store.close().await;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("mfa.webauthn.register"), 1);
    assert_eq!(count("login.mfa.success"), 1);
    assert_eq!(count("login.passkey.success"), 1);
    assert_eq!(count("login.passkey.failure"), 2);
    assert_eq!(count("mfa.factor.remove"), 1);
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("auth_mfa_verifications_total{method=\"webauthn\",status=\"replay\"} 1"),
        "the clone counts as a replay:\n{metrics}"
    );
}
