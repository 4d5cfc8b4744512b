//! Second factors through the real pages: an authenticator app enrolled on
//! the account page (codes computed by pyotp), the second step of sign-in
//! with replay and window edges, recovery codes, enrolment forced by
//! `mfa = required`, lockout, the administrator's reset, and `amr`/`acr`
//! in the tokens.

use super::*;
use crate::support::{totp_code, unix_now};

const SECRET_START: &str = "id=\"secret\">";

fn secret_of(page: &Page) -> String {
    let start = page
        .body
        .find(SECRET_START)
        .unwrap_or_else(|| panic!("no secret in {}", page.body))
        + SECRET_START.len();
    let end = page.body[start..].find('<').unwrap() + start;
    page.body[start..end].to_owned()
}

fn recovery_codes_of(page: &Page) -> Vec<String> {
    let start = page.body.find("id=\"recovery-codes\">").unwrap();
    let end = page.body[start..].find("</ol>").unwrap() + start;
    page.body[start..end]
        .split("<li>")
        .skip(1)
        .map(|li| li.trim_end_matches("</li>").to_owned())
        .collect()
}

/// Signs in on the account page (it sends the browser through sign-in
/// first) and returns the page.
pub(crate) async fn account(browser: &mut Browser, server: &Authserver) -> Page {
    let login = browser.get("/account").await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("your account"), "{}", login.body);
    let resumed = log_in(browser, &login, "demo", &password(server)).await;
    assert_eq!(resumed.location(), "/account", "{}", resumed.body);
    browser.get("/account").await
}

/// Adds an authenticator app named `label`; returns its secret and the
/// recovery codes shown (a first factor comes with them).
pub(crate) async fn add_app(
    browser: &mut Browser,
    page: &Page,
    label: &str,
    now: i64,
) -> (String, Page) {
    let csrf = page.hidden("csrf");
    let enrol = browser
        .post("/account/totp", &[("csrf", &csrf), ("label", label)])
        .await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(enrol.body.contains("<svg"), "a QR code inline");
    let secret = secret_of(&enrol);
    let enrolment = enrol.hidden("enrolment");
    // A wrong code shows the same secret again: the app already set up works.
    let stale = totp_code(&secret, now - 300);
    let wrong = browser
        .post(
            "/account/totp-confirm",
            &[("csrf", &csrf), ("enrolment", &enrolment), ("code", &stale)],
        )
        .await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert_eq!(secret_of(&wrong), secret);
    let code = totp_code(&secret, now);
    let done = browser
        .post(
            "/account/totp-confirm",
            &[("csrf", &csrf), ("enrolment", &enrolment), ("code", &code)],
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    (secret, done)
}

/// From a page that resumes the authorization request to the tokens.
pub(crate) async fn tokens_after(
    server: &Authserver,
    browser: &mut Browser,
    resumed: &Page,
) -> Value {
    let mut page = browser.get(resumed.location()).await;
    if page.status == 200 {
        page = consent(browser, &page, "allow").await;
    }
    let code = page
        .redirect_param("code")
        .unwrap_or_else(|| panic!("no code: {} {}", page.location(), page.body));
    let (status, tokens) = exchange(server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    tokens
}

async fn second_step(browser: &mut Browser, server: &Authserver) -> Page {
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let step = log_in(browser, &login, "demo", &password(server)).await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    step
}

pub(crate) async fn give(browser: &mut Browser, step: &Page, method: &str, code: &str) -> Page {
    let csrf = step.hidden("csrf");
    browser
        .post(
            "/login/factor",
            &[("csrf", &csrf), ("method", method), ("code", code)],
        )
        .await
}

#[tokio::test]
async fn an_app_added_on_the_account_page_guards_the_next_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let page = account(&mut browser, &server).await;
    assert!(page.body.contains("No second factor yet."), "{}", page.body);
    let now = unix_now();
    let (secret, shown) = add_app(&mut browser, &page, "phone", now).await;
    let codes = recovery_codes_of(&shown);
    assert_eq!(codes.len(), 10, "{}", shown.body);
    let page = browser.get("/account").await;
    assert!(page.body.contains("phone") && page.body.contains("10 unused."));

    // A new browser: password, then the app's code.
    let mut other = Browser::new(&server.url(""));
    let step = second_step(&mut other, &server).await;
    assert_eq!(step.hidden("method"), "totp");
    assert!(step.body.contains("/login/factor?method=recovery"));
    // The code that confirmed the app is spent (RFC 6238 §5.2), and codes
    // two steps away are outside the window.
    for code in [
        totp_code(&secret, now),
        totp_code(&secret, now + 90),
        totp_code(&secret, now - 90),
    ] {
        let refused = give(&mut other, &step, "totp", &code).await;
        assert_eq!(refused.status, 401, "{code}: {}", refused.body);
        assert!(refused.body.contains("That code is not valid."));
    }
    let next = totp_code(&secret, now + 30);
    let resumed = give(&mut other, &step, "totp", &next).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    assert!(resumed.location().starts_with("/authorize/resume?"));
    let tokens = tokens_after(&server, &mut other, &resumed).await;
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "urn:portcullis:acr:mfa");
    let access = claims_of(tokens["access_token"].as_str().unwrap());
    assert_eq!(
        (access["amr"].clone(), access["acr"].clone()),
        (id["amr"].clone(), id["acr"].clone())
    );
    // A resource server introspects (RFC 7662 §4).
    let (client, secret_of_client) = server.client("service");
    let (_, _, introspection) = server
        .form(
            "/introspect",
            Some((&client, &secret_of_client)),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(
        introspection["amr"],
        json!(["pwd", "otp", "mfa"]),
        "{introspection}"
    );
    assert_eq!(introspection["acr"], "urn:portcullis:acr:mfa");

    // The same code again in a third browser: replay.
    let mut third = Browser::new(&server.url(""));
    let step = second_step(&mut third, &server).await;
    let replay = give(&mut third, &step, "totp", &next).await;
    assert_eq!(replay.status, 401);

    let store = server.embedded_store().await;
    let events = store.audit_events(200).await.unwrap();
    store.close().await;
    let count = |action: &str| events.iter().filter(|e| e.action == action).count();
    assert_eq!(count("login.mfa.success"), 1);
    assert_eq!(
        count("login.mfa.replay"),
        2,
        "the enrolment's code and the reused one"
    );
    assert_eq!(count("login.mfa.failure"), 2);
    assert_eq!(count("mfa.totp.enrol"), 1);
    let failure = events
        .iter()
        .find(|e| e.action == "login.mfa.failure")
        .unwrap();
    assert_eq!(failure.detail["username"], "d***o");
    assert_eq!(failure.outcome, "failure");
    let metrics = reqwest::get(server.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        "auth_mfa_verifications_total{method=\"totp\",status=\"success\"} 2",
        "auth_mfa_verifications_total{method=\"totp\",status=\"replay\"} 2",
        "auth_mfa_verifications_total{method=\"totp\",status=\"failure\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    // The account page lists the sign-ins.
    let page = browser.get("/account").await;
    assert!(page.body.contains("login.mfa.success"), "{}", page.body);
    assert!(
        !server.logs().contains(&secret),
        "the secret is never logged"
    );
}

#[tokio::test]
async fn recovery_codes_work_once_and_die_when_renewed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let page = account(&mut browser, &server).await;
    let (_, shown) = add_app(&mut browser, &page, "phone", unix_now()).await;
    let codes = recovery_codes_of(&shown);

    let mut other = Browser::new(&server.url(""));
    let step = second_step(&mut other, &server).await;
    let recovery = other.get("/login/factor?method=recovery").await;
    assert_eq!(recovery.hidden("method"), "recovery");
    // Typed loosely: upper case, spaces for the dash.
    let typed = codes[0].to_uppercase().replace('-', " ");
    let resumed = give(&mut other, &step, "recovery", &typed).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    let tokens = tokens_after(&server, &mut other, &resumed).await;
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));

    let mut third = Browser::new(&server.url(""));
    let step = second_step(&mut third, &server).await;
    let again = give(&mut third, &step, "recovery", &codes[0]).await;
    assert_eq!(again.status, 401, "a code works once");

    // New codes from the account page: the old ones stop working.
    let page = browser.get("/account").await;
    assert!(page.body.contains("9 unused."), "{}", page.body);
    let renewed = browser
        .post("/account/recovery", &[("csrf", &page.hidden("csrf"))])
        .await;
    assert_eq!(recovery_codes_of(&renewed).len(), 10);
    let old = give(&mut third, &step, "recovery", &codes[1]).await;
    assert_eq!(old.status, 401);
    let fresh = recovery_codes_of(&renewed);
    let resumed = give(&mut third, &step, "recovery", &fresh[0]).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);

    let store = server.embedded_store().await;
    let events = store.audit_events(200).await.unwrap();
    store.close().await;
    let uses: Vec<_> = events
        .iter()
        .filter(|e| e.action == "mfa.recovery.use")
        .collect();
    assert_eq!(uses.len(), 2, "each use audited");
    assert_eq!(uses[0].detail["left"], 9);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.action == "mfa.recovery.generate")
            .count(),
        2
    );
}

#[tokio::test]
async fn required_mfa_forces_enrolment_and_wrong_codes_lock_the_account() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ACCOUNT",
        "3",
    )];
    let server = Authserver::dev(dir.path(), &[], &env);
    let admin = server.creds["admin_token"].as_str().unwrap().to_owned();
    let http = reqwest::Client::new();
    let users: Value = http
        .get(server.url("/admin/v1/users"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let demo = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "demo")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let patched = http
        .patch(server.url(&format!("/admin/v1/users/{demo}")))
        .bearer_auth(&admin)
        .json(&json!({"mfa": "required"}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let bad = http
        .patch(server.url(&format!("/admin/v1/users/{demo}")))
        .bearer_auth(&admin)
        .json(&json!({"mfa": "sometimes"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400, "an unknown policy is refused");

    // The next sign-in enrols an app before it completes.
    let mut browser = Browser::new(&server.url(""));
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let enrol = log_in(&mut browser, &login, "demo", &password(&server)).await;
    assert_eq!(enrol.status, 200, "{}", enrol.body);
    assert!(enrol.body.contains("Set up two-step verification"));
    let secret = secret_of(&enrol);
    let now = unix_now();
    let csrf = enrol.hidden("csrf");
    let enrolment = enrol.hidden("enrolment");
    let codes = browser
        .post(
            "/login/enrol",
            &[
                ("csrf", &csrf),
                ("enrolment", &enrolment),
                ("code", &totp_code(&secret, now)),
            ],
        )
        .await;
    assert_eq!(codes.status, 200, "{}", codes.body);
    assert_eq!(recovery_codes_of(&codes).len(), 10);
    let next = codes.link("continue");
    let id = {
        let mut page = browser.get(&next).await;
        if page.status == 200 {
            page = consent(&mut browser, &page, "allow").await;
        }
        let (status, tokens) =
            exchange(&server, &page.redirect_param("code").unwrap(), VERIFIER).await;
        assert_eq!(status, 200);
        verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await
    };
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));

    // Wrong codes count toward the account's lockout: after three, even the
    // right code is refused.
    let mut other = Browser::new(&server.url(""));
    let step = second_step(&mut other, &server).await;
    for _ in 0..3 {
        let wrong = give(&mut other, &step, "totp", &totp_code(&secret, now - 600)).await;
        assert_eq!(wrong.status, 401);
    }
    let locked = give(&mut other, &step, "totp", &totp_code(&secret, now + 30)).await;
    assert_eq!(locked.status, 429, "{}", locked.body);

    // The administrator lists and resets the factors; the policy stays, so
    // the next sign-in enrols again.
    let listed: Value = http
        .get(server.url(&format!("/admin/v1/users/{demo}/factors")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["mfa"], "required");
    assert_eq!(listed["factors"][0]["kind"], "totp");
    assert!(listed["factors"][0].get("sealed_secret").is_none());
    assert_eq!(listed["recovery_codes_left"], 10);
    let reset: Value = http
        .delete(server.url(&format!("/admin/v1/users/{demo}/factors")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset["removed"], 1);
    let store = server.embedded_store().await;
    let events = store.audit_events(200).await.unwrap();
    store.close().await;
    assert!(
        events
            .iter()
            .any(|e| e.action == "mfa.reset" && e.actor == "admin")
    );
    assert!(events.iter().any(|e| e.action == "login.mfa.locked"));
}

#[tokio::test]
async fn acr_values_ask_a_signed_in_user_for_the_missing_factor() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let meta: Value = server.get_json("/.well-known/openid-configuration").await;
    assert_eq!(
        meta["acr_values_supported"],
        json!(["urn:portcullis:acr:pwd", "urn:portcullis:acr:mfa"])
    );
    let mfa = [("acr_values", "urn:portcullis:acr:mfa")];
    let mut browser = Browser::new(&server.url(""));
    let page = account(&mut browser, &server).await;
    // Signed in with a password only: prompt=none cannot add a factor.
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[mfa[0], ("prompt", "none")],
        ))
        .await;
    assert_eq!(
        silent.redirect_param("error").as_deref(),
        Some("interaction_required")
    );

    let now = unix_now();
    let (secret, _) = add_app(&mut browser, &page, "phone", now).await;
    // The session stays password-only; the request for MFA asks for the code
    // on top of it, not for the password again.
    let step = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &mfa))
        .await;
    assert_eq!(step.status, 200, "{}", step.body);
    assert!(step.body.contains("Two-step verification"), "{}", step.body);
    let resumed = give(&mut browser, &step, "totp", &totp_code(&secret, now + 30)).await;
    assert_eq!(resumed.status, 303, "{}", resumed.body);
    let tokens = tokens_after(&server, &mut browser, &resumed).await;
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["amr"], json!(["pwd", "otp", "mfa"]));
    assert_eq!(id["acr"], "urn:portcullis:acr:mfa");
    // Now the session has it: the same request returns a code at once.
    let again = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &mfa))
        .await;
    assert!(
        again.redirect_param("code").is_some(),
        "{}",
        again.location()
    );
    // A password-only request still gets what actually happened.
    let plain = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let (_, tokens) = exchange(&server, &plain.redirect_param("code").unwrap(), VERIFIER).await;
    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["acr"], "urn:portcullis:acr:mfa");
}

/// Now, at least three seconds from a TOTP step's edge, so codes computed
/// for it mean the same step to the server a moment later.
async fn away_from_a_step_edge() -> i64 {
    loop {
        let now = unix_now();
        if now % 30 < 27 {
            return now;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn the_window_is_one_step_each_way_as_pyotp_counts_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let page = account(&mut browser, &server).await;
    let csrf = page.hidden("csrf");
    let enrol = browser
        .post("/account/totp", &[("csrf", &csrf), ("label", "phone")])
        .await;
    let secret = secret_of(&enrol);
    let enrolment = enrol.hidden("enrolment");
    let now = away_from_a_step_edge().await;
    for (offset, accepted) in [(60, false), (-60, false), (-30, true)] {
        let code = totp_code(&secret, now + offset);
        let answer = browser
            .post(
                "/account/totp-confirm",
                &[("csrf", &csrf), ("enrolment", &enrolment), ("code", &code)],
            )
            .await;
        assert_eq!(
            answer.status == 200,
            accepted,
            "{offset:+} s: {} {}",
            answer.status,
            answer.body
        );
    }
}

/// `authserver --dev ARGS` on the server's data directory: its stdout.
fn cli(dir: &std::path::Path, args: &[&str]) -> String {
    let out = crate::server::command(dir)
        .arg("--dev")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_client_that_requires_mfa_and_the_cli_that_manages_factors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    // Before any request reads the client (it is cached a few seconds).
    assert!(cli(dir.path(), &["client", "mfa", "demo-web", "required"]).contains("required"));
    let report: Value =
        serde_json::from_str(&cli(dir.path(), &["user", "factors", "demo"])).unwrap();
    assert_eq!(
        (
            report["mfa"].as_str(),
            report["factors"].as_array().map(Vec::len)
        ),
        (Some("optional"), Some(0))
    );

    // The demo user has no factor of their own policy, but the client
    // requires one: the sign-in enrols an app before it completes.
    let mut browser = Browser::new(&server.url(""));
    let login = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let enrol = log_in(&mut browser, &login, "demo", &password(&server)).await;
    assert!(
        enrol.body.contains("Set up two-step verification"),
        "{}",
        enrol.body
    );
    let secret = secret_of(&enrol);
    let codes = browser
        .post(
            "/login/enrol",
            &[
                ("csrf", &enrol.hidden("csrf")),
                ("enrolment", &enrol.hidden("enrolment")),
                ("code", &totp_code(&secret, unix_now())),
            ],
        )
        .await;
    assert_eq!(codes.status, 200, "{}", codes.body);

    let report: Value =
        serde_json::from_str(&cli(dir.path(), &["user", "factors", "demo"])).unwrap();
    assert_eq!(report["factors"][0]["kind"], "totp", "{report}");
    assert_eq!(report["recovery_codes_left"], 10);
    assert!(
        report.to_string().find("sealed").is_none(),
        "no secret is shown"
    );
    assert!(cli(dir.path(), &["user", "mfa", "demo", "required"]).contains("required"));
    assert!(cli(dir.path(), &["user", "reset-factors", "demo"]).contains("removed 1 factor(s)"));
    let report: Value =
        serde_json::from_str(&cli(dir.path(), &["user", "factors", "demo"])).unwrap();
    assert_eq!(report["mfa"], "required");
    assert_eq!(report["factors"], json!([]));
    assert_eq!(report["recovery_codes_left"], 0);

    let store = server.embedded_store().await;
    let events = store.audit_events(200).await.unwrap();
    store.close().await;
    for action in ["client.mfa", "user.mfa", "mfa.reset"] {
        assert!(
            events
                .iter()
                .any(|e| e.action == action && e.actor == "cli"),
            "{action} by the cli"
        );
    }
}
