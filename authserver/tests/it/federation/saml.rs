//! SAML 2.0 against an identity provider nobody here wrote: pysaml2
//! (`authserver/tests/rp/saml_idp.py`), which reads our SP metadata, our
//! AuthnRequest, and signs its answers with xmlsec1. The sign-in a person
//! makes goes through Chromium; the tampered answers are the IdP's real
//! ones, changed on their way back by a scripted browser.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use testkit::Process;

use crate::browser::{Browser, Page};
use crate::flow::{WEB_REDIRECT, authorize_url};
use crate::rp::{available, rp_dir};
use crate::server::Authserver;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The browser pieces, pysaml2 and xmlsec1 are there
/// (`scripts/install-deps.sh`); outside CI a missing one skips the test.
fn idp_available() -> bool {
    let pysaml2 = Command::new("python3")
        .args(["-c", "import saml2"])
        .output()
        .is_ok_and(|o| o.status.success());
    let xmlsec1 = std::path::Path::new("/usr/bin/xmlsec1").exists();
    if pysaml2 && xmlsec1 {
        return available();
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI needs pysaml2 and xmlsec1 for the SAML tests"
    );
    eprintln!("SKIPPED the SAML test: pysaml2 or xmlsec1 missing");
    false
}

/// The IdP, reading our metadata at `sp_metadata`: its metadata URL.
fn idp(sp_metadata: &str, dir: &std::path::Path) -> (Process, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(rp_dir().join("saml_idp.py"))
        .arg(sp_metadata)
        .arg(dir);
    let mut process = Process::start("SAML IdP", cmd);
    let ready = process
        .wait_for_log("listening", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}"));
    let url = ready["metadata"].as_str().unwrap().to_owned();
    (process, url)
}

/// An authserver with the IdP as provider `corp`, its metadata read from
/// the IdP's URL (or, `from_file`, from a copy in a file).
async fn saml_server(dir: &std::path::Path, from_file: bool) -> (Authserver, Process) {
    let addr = SocketAddr::from(([127, 0, 0, 1], testkit::free_port()));
    let (process, metadata) = idp(&format!("http://{addr}/login/federated/corp/metadata"), dir);
    let source = if from_file {
        let text = reqwest::get(&metadata).await.unwrap().text().await.unwrap();
        let file = dir.join("idp-metadata.xml");
        std::fs::write(&file, text).unwrap();
        format!("metadata_file = {:?}", file.to_str().unwrap())
    } else {
        format!("metadata_url = \"{metadata}\"")
    };
    let config = dir.join("authserver.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[federation.providers]]
id = "corp"
name = "Corp SAML"
kind = "saml"
{source}
jit = true
allowed_domains = ["example.com"]
trust_email = true
groups_claim = "urn:oid:1.3.6.1.4.1.5923.1.5.1.1"
group_map = {{ "idp-staff" = "staff" }}
"#
        ),
    )
    .unwrap();
    let server = Authserver::dev_on(dir, addr, &["--config", config.to_str().unwrap()], &[]);
    (server, process)
}

/// A sign-in through the login page's button up to the IdP's answer, as
/// `login` (`extra`: the IdP's test fields): the `SAMLResponse` (decoded)
/// and `RelayState` it would post back.
async fn answer(browser: &mut Browser, login: &str, extra: &[(&str, &str)]) -> (String, String) {
    let page = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "login")],
        ))
        .await;
    let to_idp = browser.get(&page.link("federated-corp")).await;
    assert_eq!(to_idp.status, 303, "{}", to_idp.body);
    let location = to_idp.location().to_owned();
    assert!(location.contains("SAMLRequest="), "{location}");
    let form = browser.get(&location).await;
    assert_eq!(form.status, 200, "{}", form.body);
    // The client asked for `prompt=login`: the IdP is told to sign anew.
    assert_eq!(form.hidden("force_authn"), "true", "{}", form.body);
    let idp = location.split("/sso").next().unwrap();
    let request = form.hidden("request");
    let mut fields = vec![
        ("request", request.as_str()),
        ("login", login),
        ("password", "x"),
    ];
    fields.extend_from_slice(extra);
    let posted = browser.post(&format!("{idp}/login"), &fields).await;
    assert_eq!(posted.status, 200, "{}", posted.body);
    let xml = B64.decode(posted.hidden("SAMLResponse")).unwrap();
    (String::from_utf8(xml).unwrap(), posted.hidden("RelayState"))
}

/// Posts `xml` to our assertion consumer service, as the IdP's page would.
async fn post_back(browser: &mut Browser, xml: &str, relay_state: &str) -> Page {
    let encoded = B64.encode(xml);
    browser
        .post(
            "/login/federated/corp/callback",
            &[("SAMLResponse", &encoded), ("RelayState", relay_state)],
        )
        .await
}

/// The page a refused answer ends on, lowercased.
fn refused(page: &Page) -> String {
    assert!(
        (400..500).contains(&page.status),
        "{} {}",
        page.status,
        page.body
    );
    page.body.to_lowercase()
}

/// The element `<prefix:Assertion …>…</prefix:Assertion>` in `xml`.
fn assertion(xml: &str) -> &str {
    let start = xml.find(":Assertion ").unwrap();
    let start = xml[..start].rfind('<').unwrap();
    let close = xml.find(":Assertion>").unwrap() + ":Assertion>".len();
    &xml[start..close]
}

#[tokio::test]
async fn a_saml_idp_signs_people_in_through_the_login_page() {
    if !idp_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _idp) = saml_server(dir.path(), false).await;

    // Our metadata is what the IdP read: the entity id and the ACS.
    let metadata = reqwest::get(server.url("/login/federated/corp/metadata"))
        .await
        .unwrap();
    assert_eq!(metadata.status(), 200);
    let metadata = metadata.text().await.unwrap();
    assert!(
        metadata.contains(&server.url("/login/federated/corp/callback")),
        "{metadata}"
    );

    // In Chromium, as a person: the IdP's form, its Continue button, our
    // pages. A first sign-in makes the account (its address trusted and
    // in an allowed domain); the mapped IdP group is a local group in the
    // token; `amr` has the IdP's password and `fed`.
    let sam = super::sign_in(&server, "sam", "signin");
    assert_eq!(sam["preferred_username"], "sam@example.com", "{sam}");
    assert_eq!(super::strings(&sam["groups"]), ["staff"], "{sam}");
    assert_eq!(super::strings(&sam["amr"]), ["pwd", "fed"], "{sam}");
    assert_eq!(sam["csp_violations"], serde_json::json!([]));
    let again = super::sign_in(&server, "sam", "signin");
    assert_eq!(
        again["sub"], sam["sub"],
        "the NameID finds the same account"
    );
    // An IdP account claiming the demo user's address is asked to prove
    // the local account, never signed in as it.
    let claimed = super::sign_in(&server, "demo", "signin");
    assert!(claimed.get("sub").is_none(), "{claimed}");
    assert!(
        claimed["page_text"]
            .as_str()
            .unwrap()
            .contains("No account here is linked"),
        "{claimed}"
    );

    // A response signed only as a whole covers its assertion: accepted.
    let mut browser = Browser::new(&server.url(""));
    let (xml, relay) = answer(&mut browser, "sam", &[("sign", "response")]).await;
    let back = post_back(&mut browser, &xml, &relay).await;
    let claims = super::complete(&server, &mut browser, back).await.unwrap();
    assert_eq!(claims["sub"], sam["sub"]);
}

#[tokio::test]
async fn tampered_replayed_or_misdirected_saml_answers_are_refused() {
    if !idp_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (server, _idp) = saml_server(dir.path(), true).await;
    let mut browser = Browser::new(&server.url(""));

    // The untouched answer works once (metadata read from a file).
    let (good, relay) = answer(&mut browser, "sam", &[]).await;
    let first = post_back(&mut browser, &good, &relay).await;
    let sam = super::complete(&server, &mut browser, first).await.unwrap();
    assert_eq!(sam["preferred_username"], "sam@example.com", "{sam}");
    // Posted again, and again for a new sign-in of the same browser (whose
    // AuthnRequest it does not answer): refused.
    let again = post_back(&mut browser, &good, &relay).await;
    assert!(refused(&again).contains("expired"), "{}", again.body);
    let (_, fresh_relay) = answer(&mut browser, "sam", &[]).await;
    let replayed = post_back(&mut browser, &good, &fresh_relay).await;
    assert!(
        refused(&replayed).contains("inresponseto"),
        "{}",
        replayed.body
    );

    // A signed attribute changed: the signature no longer covers it.
    let (xml, relay) = answer(&mut browser, "sam", &[]).await;
    let changed = xml.replace("Sam Saml", "Sam Admin");
    assert_ne!(changed, xml);
    let page = post_back(&mut browser, &changed, &relay).await;
    assert!(refused(&page).contains("signed"), "{}", page.body);

    // Signature wrapping: a forged assertion for `demo` beside the signed
    // one for `sam` (the one a careless reader takes first).
    let (xml, relay) = answer(&mut browser, "sam", &[]).await;
    let signed = assertion(&xml);
    let sig_start = signed.find("<ns2:Signature").unwrap();
    let sig_end = signed.find("</ns2:Signature>").unwrap() + "</ns2:Signature>".len();
    let forged = format!("{}{}", &signed[..sig_start], &signed[sig_end..])
        .replace(">sam</", ">demo</")
        .replace("sam@example.com", "demo@example.com")
        .replacen("ID=\"", "ID=\"forged-", 1);
    let wrapped = xml.replace(signed, &format!("{forged}{signed}"));
    let page = post_back(&mut browser, &wrapped, &relay).await;
    assert!(refused(&page).contains("2 assertions"), "{}", page.body);

    // Not for us, unsigned, or signed with SHA-1: refused.
    let (xml, relay) = answer(&mut browser, "sam", &[("audience", "other")]).await;
    assert!(xml.contains("https://other.example/saml"));
    let page = post_back(&mut browser, &xml, &relay).await;
    assert!(refused(&page).contains("audience"), "{}", page.body);
    let (xml, relay) = answer(&mut browser, "sam", &[("sign", "none")]).await;
    let page = post_back(&mut browser, &xml, &relay).await;
    assert!(refused(&page).contains("signed"), "{}", page.body);
    let (xml, relay) = answer(&mut browser, "sam", &[("alg", "sha1")]).await;
    assert!(xml.contains("rsa-sha1"));
    let page = post_back(&mut browser, &xml, &relay).await;
    assert!(refused(&page).contains("signed"), "{}", page.body);

    // Comment injection: a comment splitting the signed NameID (comments
    // are outside the canonical form) is refused, never read as `s`.
    let (xml, relay) = answer(&mut browser, "sam", &[]).await;
    let split = xml.replace(">sam</", ">s<!---->am</");
    assert_ne!(split, xml);
    let page = post_back(&mut browser, &split, &relay).await;
    assert!(refused(&page).contains("signed"), "{}", page.body);

    // Another NameID format than the one configured, or an answer sent to
    // another address (its Recipient): refused.
    let (xml, relay) = answer(&mut browser, "sam", &[("nameid", "email")]).await;
    let page = post_back(&mut browser, &xml, &relay).await;
    assert!(refused(&page).contains("format"), "{}", page.body);
    let (xml, relay) = answer(&mut browser, "sam", &[("acs", "other")]).await;
    let page = post_back(&mut browser, &xml, &relay).await;
    assert!(refused(&page).contains("recipient"), "{}", page.body);

    // A signature whose reference points outside the response: refused
    // before xmlsec would fetch it (nothing reaches the address).
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    probe.set_nonblocking(true).unwrap();
    let (xml, relay) = answer(&mut browser, "sam", &[]).await;
    let start = xml.find("Reference URI=\"").unwrap() + "Reference URI=\"".len();
    let end = start + xml[start..].find('"').unwrap();
    let outside = format!(
        "{}http://{}/probe{}",
        &xml[..start],
        probe.local_addr().unwrap(),
        &xml[end..]
    );
    let page = post_back(&mut browser, &outside, &relay).await;
    assert!(
        refused(&page).contains("outside the response"),
        "{}",
        page.body
    );
    assert!(probe.accept().is_err(), "the reference was fetched");

    // The IdP answers by POST only.
    let get = browser
        .get("/login/federated/corp/callback?SAMLResponse=x&RelayState=y")
        .await;
    assert_eq!(get.status, 405, "{}", get.body);

    // The Lax session cookie does not come back with the IdP's cross-site
    // POST: the session the browser left with still ends.
    let old = browser.cookies.get("portcullis-session").cloned().unwrap();
    let (xml, relay) = answer(&mut browser, "sam", &[]).await;
    browser.cookies.remove("portcullis-session");
    let back = post_back(&mut browser, &xml, &relay).await;
    super::complete(&server, &mut browser, back).await.unwrap();
    let now = browser.get("/account").await;
    assert!(now.body.contains("sam@example.com"), "{}", now.body);
    let mut before = Browser::new(&server.url(""));
    before.cookies.insert("portcullis-session".into(), old);
    let ended = before.get("/account").await;
    assert!(!ended.body.contains("sam@example.com"), "{}", ended.body);

    // An answer from another browser (no binding cookie) is not taken.
    let (xml, relay) = answer(&mut browser, "sam", &[]).await;
    let mut other = Browser::new(&server.url(""));
    let page = post_back(&mut other, &xml, &relay).await;
    assert!(
        refused(&page).contains("not started in this browser"),
        "{}",
        page.body
    );
}
