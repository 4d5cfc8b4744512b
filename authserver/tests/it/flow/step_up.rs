//! Asking for more than the session has: `max_age` with a configured
//! multi-factor `acr` forces a fresh sign-in with the factor, and the
//! account page's sensitive changes need a recent sign-in.

use super::mfa::{account, add_app, give, tokens_after};
use super::*;
use crate::support::{totp_code, unix_now};

const ACR: &str = "https://refeds.org/profile/mfa";

#[tokio::test]
async fn max_age_and_a_configured_acr_ask_for_a_fresh_sign_in_with_the_factor() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[("PORTCULLIS_AUTHSERVER__MFA__ACR", ACR)]);
    let meta: Value = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["acr_values_supported"],
        json!(["urn:portcullis:acr:pwd", ACR])
    );
    let mut browser = Browser::new(&server.url(""));
    let page = account(&mut browser, &server).await;
    let now = unix_now();
    let (secret, _) = add_app(&mut browser, &page, "phone", now).await;

    // The session is a second old at least: max_age=1 asks for the
    // password again, then the factor the acr names.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let asked = [("acr_values", ACR), ("max_age", "1")];
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &asked))
        .await;
    assert_eq!(login.status, 200, "{}", login.body);
    assert!(
        login.body.contains("action=\"/login\""),
        "a fresh sign-in: {}",
        login.body
    );
    let signed_in_at = unix_now();
    let step = log_in(&mut browser, &login, "demo", &password(&server)).await;
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    let resumed = give(&mut browser, &step, "totp", &totp_code(&secret, now + 30)).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    let tokens = tokens_after(&server, &mut browser, &resumed).await;
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["acr"], ACR);
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert!(id["auth_time"].as_i64().unwrap() >= signed_in_at, "{id}");
    let access = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(access["auth_time"], id["auth_time"]);

    // Within max_age, the same request needs nothing more.
    let again = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("acr_values", ACR), ("max_age", "300")],
        ))
        .await;
    assert!(
        again.redirect_param("code").is_some(),
        "{}",
        again.location()
    );
}

#[tokio::test]
async fn removing_a_factor_needs_a_recent_sign_in_and_renaming_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("PORTCULLIS_AUTHSERVER__MFA__RECENT_SECONDS", "3")];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let page = account(&mut browser, &server).await;
    let now = unix_now();
    let (secret, _) = add_app(&mut browser, &page, "phone", now).await;
    let page = browser.get("/account").await;
    let factor = page.hidden("factor");
    let csrf = page.hidden("csrf");
    // Whole seconds: a sign-in at 100.9 is at 100; four are past for sure.
    tokio::time::sleep(std::time::Duration::from_millis(4100)).await;

    let renamed = browser
        .post(
            "/account/rename",
            &[("csrf", &csrf), ("factor", &factor), ("label", "old phone")],
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert!(renamed.body.contains("The factor was renamed."));
    assert!(
        renamed.body.contains("value=\"old phone\""),
        "{}",
        renamed.body
    );

    // Removal with a stale sign-in: the sign-in page, and nothing removed.
    let asked = browser
        .post("/account/remove", &[("csrf", &csrf), ("factor", &factor)])
        .await;
    assert_eq!(asked.status, 200, "{}", asked.body);
    assert!(asked.body.contains("action=\"/login\""), "{}", asked.body);
    let page = browser.get("/account").await;
    assert!(page.body.contains("value=\"old phone\""), "not removed");

    // Signing in again (password, then the app) makes it recent enough.
    let step = log_in(&mut browser, &asked, "demo", &password(&server)).await;
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    let resumed = give(&mut browser, &step, "totp", &totp_code(&secret, now + 30)).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    let back = browser.get(resumed.location()).await;
    assert_eq!(back.location(), "/account", "{}", back.body);
    let page = browser.get("/account").await;
    let removed = browser
        .post(
            "/account/remove",
            &[("csrf", &page.hidden("csrf")), ("factor", &factor)],
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(
        removed.body.contains("The factor was removed."),
        "{}",
        removed.body
    );
    assert!(removed.body.contains("No second factor yet."));

    let store = server.embedded_store().await;
    let events = store.audit_events(100).await.unwrap();
    store.close().await;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(
        (count("mfa.factor.rename"), count("mfa.factor.remove")),
        (1, 1)
    );
}
