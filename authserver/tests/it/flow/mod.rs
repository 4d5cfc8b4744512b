//! The authorization code flow through the real login and consent pages.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::server::Authserver;

mod account;
mod code;
mod login;
pub(crate) mod mfa;
mod refusals;
mod sms;
mod step_up;

pub(crate) const WEB_REDIRECT: &str = "http://127.0.0.1:8000/_auth/callback";

pub(crate) const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

pub(crate) fn authorize_url(client: &str, redirect: &str, extra: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    q.append_pair("client_id", client)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid profile groups orders:read")
        .append_pair("state", "state-123")
        .append_pair("nonce", "nonce-456")
        .append_pair("code_challenge", CHALLENGE)
        .append_pair("code_challenge_method", "S256");
    for (k, v) in extra {
        q.append_pair(k, v);
    }
    format!("/authorize?{}", q.finish())
}

pub(crate) fn password(server: &Authserver) -> String {
    server.creds["user"]["password"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Logs in on a login page; returns the page after following the 303.
pub(crate) async fn log_in(
    browser: &mut Browser,
    login_page: &Page,
    username: &str,
    password: &str,
) -> Page {
    let request = login_page.hidden("request");
    let csrf = login_page.hidden("csrf");
    let after = browser
        .post(
            "/login",
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("username", username),
                ("password", password),
            ],
        )
        .await;
    if after.status != 303 {
        return after;
    }
    browser.get(after.location()).await
}

pub(crate) async fn consent(browser: &mut Browser, page: &Page, decision: &str) -> Page {
    let (request, csrf) = (page.hidden("request"), page.hidden("csrf"));
    browser
        .post(
            "/consent",
            &[
                ("request", &request),
                ("csrf", &csrf),
                ("decision", decision),
            ],
        )
        .await
}

pub(crate) async fn exchange(server: &Authserver, code: &str, verifier: &str) -> (u16, Value) {
    let (id, secret) = server.client("web");
    let (status, _, body) = server
        .form(
            "/token",
            Some((&id, &secret)),
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", WEB_REDIRECT),
                ("code_verifier", verifier),
            ],
        )
        .await;
    (status, body)
}

pub(crate) async fn verify_id_token(server: &Authserver, token: &str) -> Value {
    let jwks: JwkSet = server.get_json("/jwks").await;
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let key = DecodingKey::from_jwk(jwks.find(header.kid.as_deref().unwrap()).unwrap()).unwrap();
    let mut v = Validation::new(header.alg);
    v.set_audience(&["demo-web"]);
    v.set_issuer(&[server.issuer()]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}

/// The claims of a JWT, unverified (signatures are checked elsewhere).
pub(crate) fn claims_of(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Signs in and consents once; later authorizations return codes directly.
async fn signed_in(server: &Authserver) -> Browser {
    let mut browser = Browser::new(&server.url(""));
    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    assert!(back.redirect_param("code").is_some());
    browser
}

async fn fresh_code(browser: &mut Browser, extra: &[(&str, &str)]) -> String {
    let back = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, extra))
        .await;
    back.redirect_param("code")
        .unwrap_or_else(|| panic!("no code: {}", back.location()))
}
