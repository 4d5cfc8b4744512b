//! GitHub through the real provider code path, against a stand-in that
//! answers as GitHub's documentation says it does: the token as JSON with
//! comma-separated scopes (and errors as a 200), `/user` without an
//! address, the address only in `/user/emails`, organisations and teams.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};

use super::{pairs, param, serve, through, to_callback};
use crate::browser::Browser;
use crate::flow::{WEB_REDIRECT, authorize_url};
use crate::server::Authserver;

const CLIENT: (&str, &str) = ("gh-client", "gh-secret");
const TOKEN: &str = "gho_standin";

#[derive(Clone, Default)]
struct StandIn {
    /// code → the PKCE challenge it was issued with.
    codes: Arc<Mutex<Vec<(String, String)>>>,
    login: Arc<Mutex<String>>,
}

async fn authorize(State(s): State<StandIn>, uri: axum::http::Uri) -> Response {
    let q = pairs(uri.query().unwrap_or(""));
    let get = |k: &str| param(&q, k);
    if get("client_id") != CLIENT.0 || get("code_challenge_method") != "S256" {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let code = format!("code-{}", s.codes.lock().unwrap().len());
    s.codes
        .lock()
        .unwrap()
        .push((code.clone(), get("code_challenge")));
    let target = format!("{}?code={code}&state={}", get("redirect_uri"), get("state"));
    Redirect::to(&target).into_response()
}

async fn access_token(State(s): State<StandIn>, body: String) -> Json<Value> {
    let f = pairs(&body);
    let get = |k: &str| param(&f, k);
    let verifier = get("code_verifier");
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(bootstrap::digest::sha256(verifier.as_bytes()));
    let known = s
        .codes
        .lock()
        .unwrap()
        .iter()
        .any(|(c, ch)| *c == get("code") && *ch == challenge);
    if get("client_id") != CLIENT.0 || get("client_secret") != CLIENT.1 || !known {
        // GitHub's way: a 200 that says so.
        return Json(json!({"error": "bad_verification_code",
            "error_description": "The code passed is incorrect or expired."}));
    }
    Json(
        json!({"access_token": TOKEN, "token_type": "bearer", "scope": "read:org,read:user,user:email"}),
    )
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn api(State(s): State<StandIn>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body = match uri.path() {
        "/user" => {
            json!({"login": *s.login.lock().unwrap(), "id": 583_231, "name": "The Octocat", "email": null})
        }
        "/user/emails" => json!([
            {"email": "octocat@users.noreply.example", "primary": false, "verified": true, "visibility": null},
            {"email": "unverified@example.com", "primary": false, "verified": false, "visibility": null},
            {"email": "octo@example.com", "primary": true, "verified": true, "visibility": "private"}
        ]),
        "/user/orgs" => json!([{"login": "octo-org", "id": 1}]),
        "/user/teams" => {
            json!([{"slug": "admins", "name": "Admins", "organization": {"login": "octo-org"}}])
        }
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    Json(body).into_response()
}

async fn stand_in() -> (String, StandIn) {
    let state = StandIn::default();
    *state.login.lock().unwrap() = "octocat".into();
    let app = Router::new()
        .route("/login/oauth/authorize", get(authorize))
        .route("/login/oauth/access_token", post(access_token))
        .route("/user", get(api))
        .route("/user/emails", get(api))
        .route("/user/orgs", get(api))
        .route("/user/teams", get(api))
        .with_state(state.clone());
    (serve(app).await, state)
}

/// Through the login page's GitHub button, the stand-in and back: the
/// ID token's claims (and the browser, signed in).
async fn sign_in(server: &Authserver) -> (Value, Browser) {
    let mut browser = Browser::new(&server.url(""));
    let claims = through(server, &mut browser, "github").await;
    (claims.unwrap_or_else(|page| panic!("{page}")), browser)
}

#[tokio::test]
async fn github_accounts_are_named_by_id_with_the_primary_verified_address() {
    let (github, standin) = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authserver.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[federation.providers]]
id = "github"
name = "GitHub"
kind = "github"
issuer = "{github}"
api_url = "{github}"
client_id = "{}"
client_secret = "{}"
jit = true
group_map = {{ "octo-org/admins" = "staff" }}
"#,
            CLIENT.0, CLIENT.1
        ),
    )
    .unwrap();
    let server = Authserver::dev(dir.path(), &["--config", config.to_str().unwrap()], &[]);
    // A local account already has GitHub's login as its name: the new one
    // takes the next free name (the verified address), and is not it.
    let local = json!({"username": "octocat", "password": "a local password 123"});
    let (status, _) = server.admin("POST", "/admin/v1/users", &local).await;
    assert_eq!(status, 201);
    let (first, mut browser) = sign_in(&server).await;
    assert_eq!(first["preferred_username"], "octo@example.com", "{first}");
    assert_eq!(
        first["groups"],
        json!(["staff"]),
        "team octo-org/admins maps to staff"
    );
    assert!(first["amr"].as_array().unwrap().contains(&json!("fed")));
    let (_, users) = server.admin("GET", "/admin/v1/users", &Value::Null).await;
    let octocat = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "octo@example.com")
        .unwrap_or_else(|| panic!("{users}"));
    assert_eq!(
        octocat["email"], "octo@example.com",
        "the primary, verified one"
    );

    // Its only way in (it has no password here) cannot be removed.
    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.body);
    let kept = super::unlink(&mut browser, &page).await;
    assert!(
        kept.body.contains("only way you sign in here"),
        "{}",
        kept.body
    );

    // Renamed at GitHub: the same account here (the id names it).
    *standin.login.lock().unwrap() = "octocat-renamed".into();
    let (again, _) = sign_in(&server).await;
    assert_eq!(again["sub"], first["sub"], "{again}");

    // A federated sign-in is the password level here: a request for the
    // second factor asks for one on top of it (this account has none yet,
    // so it enrols one), it is not taken from the provider's word.
    let mfa = [("acr_values", "urn:portcullis:acr:mfa")];
    let step_up = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &mfa))
        .await;
    assert_eq!(step_up.status, 200, "{}", step_up.location());
    assert!(step_up.redirect_param("code").is_none());
    assert!(step_up.body.contains("/login/enrol"), "{}", step_up.body);

    // With a factor of its own, a GitHub sign-in asks for it too.
    let page = browser.get("/account").await;
    assert_eq!(page.status, 200, "{}", page.body);
    crate::flow::mfa::add_app(&mut browser, &page, "phone", testkit::unix_now()).await;
    let mut fresh = Browser::new(&server.url(""));
    let asked = to_callback(&mut fresh, "github").await;
    assert_eq!(asked.status, 200, "{}", asked.location());
    assert!(asked.body.contains("/login/factor"), "{}", asked.body);
}
