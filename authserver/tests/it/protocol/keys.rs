//! Signing keys: rotation, restarts, every algorithm the verifier takes.

use super::*;

#[tokio::test]
async fn key_rotation_publishes_before_signing_and_keeps_old_tokens_valid() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("PORTCULLIS_AUTHSERVER__TOKENS__KEY_REFRESH_SECONDS", "1")];
    let server = Authserver::dev(dir.path(), &[], &env);
    let jwks = || async {
        let v: Value = server.get_json("/jwks").await;
        v["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let kid_of = |token: &str| {
        let header = token.split('.').next().unwrap();
        let bytes = base64_decode(header);
        serde_json::from_slice::<Value>(&bytes).unwrap()["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let before = jwks().await;
    assert_eq!(before.len(), 2, "active + next");
    let old_token = server.service_token(None).await;
    let old_kid = kid_of(&old_token);
    let next_kid = before.iter().find(|k| **k != old_kid).unwrap().clone();

    // Right after start, the next key is too new to sign: refused.
    let out = command(dir.path())
        .args(["--dev", "keys", "rotate"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verifiers may not have it yet"));
    let out = command(dir.path())
        .args(["--dev", "keys", "rotate", "--force"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("active: {next_kid}")),
        "{printed}"
    );

    // The running server picks the rotation up.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let new_token = loop {
        let t = server.service_token(None).await;
        if kid_of(&t) != old_kid {
            break t;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rotation not picked up"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        kid_of(&new_token),
        next_kid,
        "the key published before is the one that signs"
    );
    let after = jwks().await;
    assert_eq!(after.len(), 3, "retired + active + new next: {after:?}");
    assert!(after.contains(&old_kid));
    let verifier = verifier_for(&server);
    verifier.start().await;
    assert!(
        verifier.verify(&old_token).await.is_ok(),
        "old tokens still verify"
    );
    assert!(verifier.verify(&new_token).await.is_ok());

    // Private keys are sealed at rest: no PKCS#8 in the clear.
    let store = server.embedded_store().await;
    for key in store.keys().await.unwrap() {
        assert_eq!(key.sealed_private_key[0], 1, "sealed format");
        assert!(
            !key.sealed_private_key
                .windows(3)
                .any(|w| w == [0x30, 0x81, 0x87]),
            "PKCS#8 header in clear"
        );
    }
    store.close().await;
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn restart_keeps_keys_and_rotates_printed_credentials() {
    let dir = tempfile::tempdir().unwrap();
    // The port changes between runs; the issuer identifier must not.
    let env = [("PORTCULLIS_AUTHSERVER__ISSUER", "http://auth.test")];
    let first = Authserver::dev(dir.path(), &[], &env);
    let (svc, old_secret) = first.client("service");
    let token = first.service_token(None).await;
    let old_password = first.creds["user"]["password"].as_str().unwrap().to_owned();
    drop(first);
    let second = Authserver::dev(dir.path(), &[], &env);
    let (_, new_secret) = second.client("service");
    assert_ne!(new_secret, old_secret);
    assert_ne!(second.creds["user"]["password"], old_password);
    let (status, _, _) = second
        .form(
            "/token",
            Some((&svc, &old_secret)),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert_eq!(status, 401, "the old secret is gone");
    let (_, _, body) = second
        .form(
            "/introspect",
            Some((&svc, &new_secret)),
            &[("token", &token)],
        )
        .await;
    assert_eq!(body["active"], true, "the same keys after restart: {body}");
}

#[tokio::test]
async fn rs256_eddsa_and_ps256_keys_sign_verifiable_tokens() {
    for alg in ["RS256", "EdDSA", "PS256"] {
        let dir = tempfile::tempdir().unwrap();
        let server = Authserver::dev(
            dir.path(),
            &[],
            &[("PORTCULLIS_AUTHSERVER__SIGNING_ALG", alg)],
        );
        let token = server.service_token(None).await;
        let header: Value =
            serde_json::from_slice(&base64_decode(token.split('.').next().unwrap())).unwrap();
        assert_eq!(header["alg"], alg);
        let verifier = verifier_for(&server);
        verifier.start().await;
        assert!(verifier.verify(&token).await.is_ok(), "{alg}");
    }
}
