//! Federation: signing in with an upstream OpenID provider nobody here
//! wrote (oidc-provider, `authserver/tests/rp/upstream.mjs`) through the
//! real login pages in headless Chromium, the relying party being
//! openid-client (`authserver/tests/rp/federated.mjs`).

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use testkit::Process;

use crate::rp::{available, rp_dir};
use crate::server::Authserver;

mod entra;
mod github;
mod saml;
mod store;

/// What a stand-in reads: the pairs of a query or form body.
fn pairs(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes())
        .into_owned()
        .collect()
}

/// A pair's value, empty when absent.
fn param(pairs: &[(String, String)], name: &str) -> String {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A stand-in provider on loopback: its base URL.
async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// From the login page's button for `provider` through its stand-in (which
/// answers at once): our callback's answer.
async fn to_callback(
    browser: &mut crate::browser::Browser,
    provider: &str,
) -> crate::browser::Page {
    let login = browser
        .get(&crate::flow::authorize_url(
            "demo-web",
            crate::flow::WEB_REDIRECT,
            &[("prompt", "login")],
        ))
        .await;
    let to_provider = browser
        .get(&login.link(&format!("federated-{provider}")))
        .await;
    assert_eq!(to_provider.status, 303, "{}", to_provider.body);
    let back = browser.get(to_provider.location()).await;
    browser.get(back.location()).await
}

/// A sign-in through `provider`'s stand-in to the end: the ID token's
/// claims, or the page where it stopped.
async fn through(
    server: &Authserver,
    browser: &mut crate::browser::Browser,
    provider: &str,
) -> Result<Value, String> {
    let callback = to_callback(browser, provider).await;
    complete(server, browser, callback).await
}

/// From our callback's answer to the end: the ID token's claims, or the
/// page where it stopped.
async fn complete(
    server: &Authserver,
    browser: &mut crate::browser::Browser,
    callback: crate::browser::Page,
) -> Result<Value, String> {
    if callback.status != 303 {
        return Err(callback.body);
    }
    let mut page = browser.get(callback.location()).await;
    if page.status == 200 && page.body.contains("decision") {
        page = crate::flow::consent(browser, &page, "allow").await;
    }
    let Some(code) = page.redirect_param("code") else {
        return Err(page.body);
    };
    let (status, tokens) = crate::flow::exchange(server, &code, crate::flow::VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    Ok(crate::flow::claims_of(tokens["id_token"].as_str().unwrap()))
}

/// The account page's button that removes its (first) linked account.
async fn unlink(
    browser: &mut crate::browser::Browser,
    account: &crate::browser::Page,
) -> crate::browser::Page {
    let field = |name: &str| account.hidden(name);
    let fields = [
        ("csrf", field("csrf")),
        ("provider", field("provider")),
        ("subject", field("subject")),
    ];
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    browser.post("/account/unlink", &fields).await
}

const UPSTREAM_CLIENT: (&str, &str) = ("portcullis", "upstream-secret-0123456789");

/// The upstream provider, its client being the authserver at `issuer`.
fn upstream(issuer: &str) -> (Process, String) {
    let mut cmd = Command::new("node");
    cmd.arg(rp_dir().join("upstream.mjs"))
        .arg(UPSTREAM_CLIENT.0)
        .arg(UPSTREAM_CLIENT.1)
        .arg(format!("{issuer}/login/federated/corp/callback"));
    let mut process = Process::start("upstream provider", cmd);
    let ready = process
        .wait_for_log("listening", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}"));
    let url = ready["issuer"].as_str().unwrap().to_owned();
    (process, url)
}

/// An authserver with the upstream as provider `corp`.
fn federated(dir: &std::path::Path) -> (Authserver, Process) {
    federated_as(dir, "oidc")
}

/// The same, the provider of `kind` (a preset with the upstream's issuer).
fn federated_as(dir: &std::path::Path, kind: &str) -> (Authserver, Process) {
    let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let (idp, idp_issuer) = upstream(&format!("http://{addr}"));
    let config = dir.join("authserver.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[federation.providers]]
id = "corp"
name = "Corp SSO"
kind = "{kind}"
issuer = "{idp_issuer}"
client_id = "{id}"
client_secret = "{secret}"
scopes = ["email", "profile", "groups"]
jit = true
allowed_domains = ["example.com"]
group_map = {{ "idp-staff" = "staff" }}
"#,
            id = UPSTREAM_CLIENT.0,
            secret = UPSTREAM_CLIENT.1,
        ),
    )
    .unwrap();
    let server = Authserver::dev_on(dir, addr, &["--config", config.to_str().unwrap()], &[]);
    (server, idp)
}

fn sign_in(server: &Authserver, login: &str, mode: &str) -> Value {
    let out = Command::new("node")
        .arg(rp_dir().join("federated.mjs"))
        .arg(server.issuer())
        .arg(server.dir.join("creds.json"))
        .arg("corp")
        .arg(login)
        .arg(mode)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "federated sign-in ({login}, {mode}) failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap()
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn an_upstream_oidc_provider_signs_people_in_without_guessing_accounts() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _idp) = federated(dir.path());

    // A first sign-in makes an account (named by its verified address, as
    // the provider sends no username), linked; the mapped upstream group is
    // a local group in the token; `amr` says how.
    let ursula = sign_in(&server, "ursula", "signin");
    assert_eq!(
        ursula["preferred_username"], "ursula@example.com",
        "{ursula}"
    );
    assert_eq!(strings(&ursula["groups"]), ["staff"], "{ursula}");
    assert!(strings(&ursula["amr"]).contains(&"fed"), "{ursula}");
    assert_eq!(ursula["csp_violations"], serde_json::json!([]));
    let again = sign_in(&server, "ursula", "signin");
    assert_eq!(
        again["sub"], ursula["sub"],
        "the link finds the same account"
    );

    // An upstream account claiming the demo user's address (unverified)
    // is not signed in as the demo user: the person is asked to prove a
    // local account instead.
    let mallory = sign_in(&server, "mallory", "signin");
    assert!(mallory.get("sub").is_none(), "{mallory}");
    assert!(
        mallory["page_text"]
            .as_str()
            .unwrap()
            .contains("No account here is linked"),
        "{mallory}"
    );
    // The page sent to someone else's browser links nothing there: the
    // held identity is bound to the browser that signed in upstream.
    let elsewhere = sign_in(&server, "mallory", "link-elsewhere");
    assert!(
        elsewhere["page_text"]
            .as_str()
            .unwrap()
            .contains("started in another browser"),
        "{elsewhere}"
    );
    // Proving the demo account (its password) links it.
    let linked = sign_in(&server, "mallory", "link");
    assert_eq!(linked["preferred_username"], "demo", "{linked}");
    assert!(
        linked["notice"].as_str().unwrap().contains("link"),
        "{linked}"
    );
    let after = sign_in(&server, "mallory", "signin");
    assert_eq!(after["sub"], linked["sub"], "{after}");
    assert_eq!(strings(&after["amr"]), ["fed"], "{after}");

    // The account page lists the link and removes it; then the upstream
    // account is a stranger again.
    let mut browser = crate::browser::Browser::new(&server.url(""));
    let page = crate::flow::mfa::account(&mut browser, &server).await;
    assert!(page.body.contains("Linked accounts"), "{}", page.body);
    assert!(page.body.contains("Corp SSO"), "{}", page.body);
    let removed = unlink(&mut browser, &page).await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert!(removed.body.contains("was removed"), "{}", removed.body);
    assert!(!removed.body.contains("Linked accounts"));
    let stranger = sign_in(&server, "mallory", "signin");
    assert!(stranger.get("sub").is_none(), "{stranger}");

    // Just-in-time creation only for the allowed domains.
    let outsider = sign_in(&server, "outsider", "signin");
    assert!(outsider.get("sub").is_none(), "{outsider}");
    assert!(
        outsider["page_text"]
            .as_str()
            .unwrap()
            .contains("example.com"),
        "{outsider}"
    );

    // Tampering on the way back is refused.
    let state = sign_in(&server, "ursula", "tamper-state");
    assert!(state["tampered"].is_string(), "{state}");
    assert!(state.get("sub").is_none(), "{state}");
    assert!(
        state["page_text"]
            .as_str()
            .unwrap()
            .contains("expired or was not started"),
        "{state}"
    );
    let nonce = sign_in(&server, "ursula", "tamper-nonce");
    assert!(nonce["tampered"].is_string(), "{nonce}");
    assert!(nonce.get("sub").is_none(), "{nonce}");
    assert!(
        nonce["page_text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("nonce"),
        "{nonce}"
    );
}

/// Google: any consumer account can have a verified address at a company's
/// domain; only a Workspace account of that domain (`hd`) is made one here.
#[tokio::test]
async fn google_makes_accounts_only_for_workspace_accounts_of_the_domain() {
    if !available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _idp) = federated_as(dir.path(), "google");
    let wanda = sign_in(&server, "wanda", "signin");
    assert_eq!(wanda["preferred_username"], "wanda@example.com", "{wanda}");
    let carl = sign_in(&server, "carl", "signin");
    assert!(carl.get("sub").is_none(), "{carl}");
    assert!(
        carl["page_text"]
            .as_str()
            .unwrap()
            .contains("only for verified addresses at example.com"),
        "{carl}"
    );
}
