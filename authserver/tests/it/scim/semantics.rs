//! SCIM users are the users who sign in: their groups (nested ones too)
//! are the `groups` claim of new tokens; deactivated, they are signed out
//! at once (browser session, refresh token, introspection); deleted,
//! their factors and consents go too; every change reaches the change
//! feed in the same transaction.

use serde_json::{Value, json};

use super::*;
use crate::browser::Browser;
use crate::flow::{VERIFIER, WEB_REDIRECT, authorize_url, claims_of, consent, exchange, log_in};

const PASSWORD: &str = "correct horse battery staple";

/// Signs `username` in through the pages; the browser and its tokens.
async fn signed_in(scim: &Scim, username: &str) -> (Browser, Value) {
    let mut browser = Browser::new(&scim.server.url(""));
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let mut page = log_in(&mut browser, &login, username, PASSWORD).await;
    if page.status == 200 {
        page = consent(&mut browser, &page, "allow").await;
    }
    let code = page
        .redirect_param("code")
        .unwrap_or_else(|| panic!("no code: {} {}", page.location(), page.body));
    let (status, tokens) = exchange(&scim.server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    (browser, tokens)
}

async fn introspect(scim: &Scim, token: &str) -> Value {
    let (id, secret) = scim.server.client("service");
    let (_, _, answer) = scim
        .server
        .form("/introspect", Some((&id, &secret)), &[("token", token)])
        .await;
    answer
}

#[tokio::test]
async fn groups_reach_tokens_and_deactivation_signs_out_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let user = scim
        .user(json!({"schemas": [USER], "userName": "frank", "password": PASSWORD, "active": true}))
        .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let team = scim.group("team", &[&id]).await;
    scim.group("department", &[team["id"].as_str().unwrap()])
        .await;

    let (mut browser, tokens) = signed_in(&scim, "frank").await;
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let mut groups = claims_of(&access)["groups"].clone();
    groups
        .as_array_mut()
        .unwrap()
        .sort_by_key(|g| g.as_str().map(str::to_owned));
    assert_eq!(groups, json!(["department", "team"]), "direct and nested");
    assert_eq!(introspect(&scim, &access).await["active"], true);
    let account = browser.get("/account").await;
    assert!(account.body.contains("<h1>Your account</h1>"));

    // Deactivated over SCIM: every way in closes at once.
    let (status, _) = scim
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(introspect(&scim, &access).await, json!({"active": false}));
    let (web, web_secret) = scim.server.client("web");
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _, refused) = scim
        .server
        .form(
            "/token",
            Some((&web, &web_secret)),
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("invalid_grant")),
        "{refused}"
    );
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("action=\"/login\""),
        "the session ended"
    );
    let mut again = Browser::new(&scim.server.url(""));
    let login = again
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let refused = log_in(&mut again, &login, "frank", PASSWORD).await;
    assert_eq!(refused.status, 401, "a deactivated user cannot sign in");

    // The feed recorded the entity change and the revocation.
    let store = scim.server.embedded_store().await;
    let changes = store.changes_after(0, i64::MAX, &[], 1000).await.unwrap();
    store.close().await;
    let revoked = changes
        .iter()
        .find(|c| c.kind == "revocation" && c.body["sub"] == id.as_str())
        .unwrap_or_else(|| panic!("{changes:?}"));
    assert_eq!(revoked.body["revoked"], true);
    let last_entity = changes
        .iter()
        .rev()
        .find(|c| c.kind == "entity" && c.body["id"] == id.as_str())
        .unwrap();
    assert_eq!(last_entity.body["active"], false);
    assert_eq!(last_entity.body["groups"], json!(["team"]));
    let group_entity = changes
        .iter()
        .rev()
        .find(|c| c.kind == "entity" && c.body["id"] == "team")
        .unwrap();
    assert_eq!(group_entity.body["groups"], json!(["department"]));
}

#[tokio::test]
async fn deleting_a_user_removes_their_factors_and_consents() {
    let dir = tempfile::tempdir().unwrap();
    let scim = Scim::start(dir.path(), &[]);
    let user = scim
        .user(json!({"schemas": [USER], "userName": "gina", "password": PASSWORD}))
        .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let (mut browser, _) = signed_in(&scim, "gina").await;
    let page = browser.get("/account").await;
    crate::flow::mfa::add_app(&mut browser, &page, "phone", crate::support::unix_now()).await;
    let store = scim.server.embedded_store().await;
    assert_eq!(store.factors(&id).await.unwrap().len(), 1);
    assert!(!store.consent(&id, "demo-web").await.unwrap().is_empty());

    let (status, _, _) = scim
        .call("DELETE", &format!("/Users/{id}"), None, &[])
        .await;
    assert_eq!(status, 204);
    assert!(store.factors(&id).await.unwrap().is_empty());
    assert!(store.consent(&id, "demo-web").await.unwrap().is_empty());
    assert_eq!(store.recovery_codes_left(&id).await.unwrap(), 0);
    let account = browser.get("/account").await;
    assert!(account.body.contains("action=\"/login\""), "signed out");
    store.close().await;
}
