//! The token, introspection and revocation endpoints, against the real
//! binary; tokens checked by the verifier the gateway and sidecar use.

use std::time::Duration;

use serde_json::{Value, json};
use tokens::testing::{SigningKey, b64};

use crate::server::{Authserver, command};

mod endpoints;
mod keys;
mod operation;

fn verifier_for(server: &Authserver) -> tokens::Verifier {
    let config: tokens::IssuerConfig = serde_json::from_value(json!({
        "issuer": server.issuer(),
        "jwks_uri": server.url("/jwks"),
        "audiences": ["portcullis"],
        "token_type": "at+jwt",
    }))
    .unwrap();
    tokens::Verifier::new(&[config]).unwrap()
}

#[tokio::test]
async fn client_credentials_tokens_pass_the_gateways_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let token = server.service_token(Some("orders:read")).await;
    let verifier = verifier_for(&server);
    verifier.start().await;
    let verified = verifier.verify(&token).await.expect("verifies");
    assert_eq!(verified.claims["sub"], "demo-service");
    assert_eq!(verified.claims["client_id"], "demo-service");
    assert_eq!(verified.claims["scope"], "orders:read");
    assert_eq!(verified.claims["iss"], server.issuer());
    let lifetime =
        verified.claims["exp"].as_i64().unwrap() - verified.claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600);
    assert!(verified.claims["jti"].as_str().unwrap().len() >= 20);

    // Without `scope`, the client's registered scopes; repeats collapse.
    let all = server.service_token(None).await;
    assert_eq!(
        verifier.verify(&all).await.unwrap().claims["scope"],
        "orders:read orders:write"
    );
    let twice = server.service_token(Some("orders:read orders:read")).await;
    assert_eq!(
        verifier.verify(&twice).await.unwrap().claims["scope"],
        "orders:read"
    );

    // Metadata lists what is implemented, at the issuer's address.
    let meta: Value = server
        .get_json("/.well-known/oauth-authorization-server")
        .await;
    assert_eq!(meta["issuer"], server.issuer());
    assert_eq!(meta["token_endpoint"], format!("{}/token", server.issuer()));
    assert_eq!(
        meta["grant_types_supported"],
        json!([
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code"
        ])
    );

    // Every issued token is in the audit log (read through the CLI's store).
    let events = audit_actions(&server).await;
    assert_eq!(
        events.iter().filter(|a| *a == "token.issue").count(),
        3,
        "{events:?}"
    );
}

async fn audit_actions(server: &Authserver) -> Vec<String> {
    let store = server.embedded_store().await;
    let events = store.audit_events(1000).await.unwrap();
    store.close().await;
    events.into_iter().map(|e| e.action).collect()
}
