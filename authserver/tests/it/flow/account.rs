//! The account page's sessions: every browser the user is signed in with
//! is listed and can be ended from any other; a password change signs out
//! everywhere else unless the user says not to.

use super::mfa::account;
use super::*;

/// The handles of the sessions the page lists: this browser's, and the
/// others'.
fn sessions_of(page: &Page) -> (String, Vec<String>) {
    let start = page
        .body
        .find("id=\"sessions\"")
        .unwrap_or_else(|| panic!("no sessions table in {}", page.body));
    let end = page.body[start..].find("</table>").unwrap() + start;
    let (mut current, mut others) = (None, Vec::new());
    for row in page.body[start..end].split("<tr").skip(2) {
        let needle = "name=\"session\" value=\"";
        let at = row.find(needle).unwrap() + needle.len();
        let handle = row[at..at + row[at..].find('"').unwrap()].to_owned();
        if row.starts_with(" class=\"current\"") {
            assert!(current.replace(handle).is_none(), "two current sessions");
        } else {
            others.push(handle);
        }
    }
    (current.expect("this browser's session is listed"), others)
}

async fn end(browser: &mut Browser, page: &Page, handle: &str) -> Page {
    let csrf = page.hidden("csrf");
    browser
        .post(
            "/account/end-session",
            &[("csrf", &csrf), ("session", handle)],
        )
        .await
}

/// Whether the browser's session is still good: `/account` shows the page
/// rather than sending it to sign in.
async fn signed_in(browser: &mut Browser) -> bool {
    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.body);
    page.body.contains("<h1>Your account</h1>")
}

#[tokio::test]
async fn sessions_are_listed_and_ended_from_another_browser() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut laptop = Browser::with_user_agent(&server.url(""), "Laptop/1.0");
    let mut phone = Browser::with_user_agent(&server.url(""), "Phone/2.0");
    account(&mut laptop, &server).await;
    account(&mut phone, &server).await;

    let page = laptop.get("/account").await;
    let (mine, others) = sessions_of(&page);
    assert_eq!(others.len(), 1, "{}", page.body);
    assert!(page.body.contains("Laptop/1.0") && page.body.contains("Phone/2.0"));
    assert!(page.body.contains("127.0.0.1"), "the address it came from");
    assert!(page.body.contains("<td>password</td>"), "how it signed in");

    // A handle that names no session of this user ends nothing.
    let bogus = end(&mut laptop, &page, "not-a-session").await;
    assert_eq!(bogus.status, 400, "{}", bogus.body);
    assert!(bogus.body.contains("that session has already ended"));
    assert!(signed_in(&mut phone).await);

    let ended = end(&mut laptop, &page, &others[0]).await;
    assert_eq!(ended.status, 200, "{}", ended.body);
    assert!(ended.body.contains("The session was ended."));
    assert!(!signed_in(&mut phone).await, "the phone must sign in again");
    assert!(signed_in(&mut laptop).await);
    let page = laptop.get("/account").await;
    assert_eq!(sessions_of(&page), (mine.clone(), vec![]));

    // Ending this browser's own session signs it out.
    let out = end(&mut laptop, &page, &mine).await;
    assert_eq!((out.status, out.location()), (303, "/account"));
    assert!(!signed_in(&mut laptop).await);

    let store = server.embedded_store().await;
    let events = store.audit_events(100).await.unwrap();
    store.close().await;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("session.end"), 2);
    assert_eq!((count("login.password"), count("login.success")), (2, 2));
    let success = events.iter().find(|e| e.action == "login.success").unwrap();
    assert_eq!(success.detail["username"], "d***o");
    assert_eq!(success.detail["amr"], json!(["pwd"]));
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("auth_logins_total{outcome=\"success\"} 2"),
        "one per session begun: {metrics}"
    );
}

async fn change_password(
    browser: &mut Browser,
    page: &Page,
    current: &str,
    new: &str,
    sign_out_others: bool,
) -> Page {
    let csrf = page.hidden("csrf");
    let mut fields = vec![("csrf", csrf.as_str()), ("current", current), ("new", new)];
    if sign_out_others {
        fields.push(("sign_out_others", "on"));
    }
    browser.post("/account/password", &fields).await
}

#[tokio::test]
async fn a_password_change_signs_out_everywhere_else_unless_told_not_to() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut laptop = Browser::new(&server.url(""));
    let mut phone = Browser::new(&server.url(""));
    let page = account(&mut laptop, &server).await;
    account(&mut phone, &server).await;
    assert!(
        page.body.contains("name=\"sign_out_others\" checked"),
        "signing out elsewhere is the default"
    );

    let old = password(&server);
    let kept = change_password(&mut laptop, &page, &old, "a new long passphrase", false).await;
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert!(kept.body.contains("Your password was changed."));
    assert!(signed_in(&mut phone).await);

    let wrong = change_password(&mut laptop, &kept, "not it", "another passphrase", true).await;
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    assert!(signed_in(&mut phone).await, "a refused change ends nothing");

    let changed = change_password(
        &mut laptop,
        &wrong,
        "a new long passphrase",
        "another long passphrase",
        true,
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(!signed_in(&mut phone).await);
    assert!(signed_in(&mut laptop).await);
    let (_, others) = sessions_of(&laptop.get("/account").await);
    assert!(others.is_empty());
}
