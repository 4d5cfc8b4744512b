//! The authorization code flow through the real login and consent pages.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

use crate::browser::{Browser, Page};
use crate::server::Authserver;

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

async fn verify_id_token(server: &Authserver, token: &str) -> Value {
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

#[tokio::test]
async fn code_flow_with_pkce_consent_refresh_and_userinfo() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));

    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    assert_eq!(login_page.status, 200);
    let csp = login_page.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(!login_page.body.contains("<script"), "no script at all");
    assert!(login_page.body.contains("Demo web app"));

    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    assert_eq!(consent_page.status, 200, "{}", consent_page.body);
    assert!(consent_page.body.contains("orders:read"));
    let session_cookie = browser
        .cookies
        .keys()
        .find(|k| k.contains("session"))
        .cloned()
        .unwrap();
    assert_eq!(
        session_cookie, "portcullis-session",
        "plain-HTTP dev mode: no __Host- prefix"
    );

    let back = consent(&mut browser, &consent_page, "allow").await;
    assert_eq!(back.status, 303);
    assert!(
        back.location().starts_with(&format!("{WEB_REDIRECT}?")),
        "{}",
        back.location()
    );
    assert_eq!(back.redirect_param("state").as_deref(), Some("state-123"));
    assert_eq!(back.redirect_param("iss"), Some(server.issuer()));
    let code = back.redirect_param("code").unwrap();

    // A wrong verifier fails and burns the code.
    let (status, body) = exchange(&server, &code, &"x".repeat(43)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Again, consent is remembered: straight back with a code.
    let back = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    let code = back.redirect_param("code").unwrap();
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "openid profile groups orders:read");

    let id = verify_id_token(&server, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id["nonce"], "nonce-456");
    assert_eq!(id["azp"], "demo-web");
    assert_eq!(id["preferred_username"], "demo");
    assert_eq!(id["amr"], json!(["pwd"]));
    assert_eq!(id["groups"], json!(["editors", "staff"]));
    let now = i64::try_from(tokens::testing::now()).unwrap();
    assert!((now - id["auth_time"].as_i64().unwrap()).abs() < 60);
    // at_hash matches the access token.
    let access = tokens["access_token"].as_str().unwrap();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    use base64::Engine as _;
    let expect = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest.as_ref()[..16]);
    assert_eq!(id["at_hash"], expect);

    // The access token carries what the sidecar's policies read.
    let verifier: tokens::IssuerConfig = serde_json::from_value(json!({
        "issuer": server.issuer(), "audiences": ["portcullis"], "token_type": "at+jwt"
    }))
    .unwrap();
    let verifier = tokens::Verifier::new(&[verifier]).unwrap();
    verifier.start().await;
    let claims = &verifier
        .verify(access)
        .await
        .expect("discovery + JWKS")
        .claims;
    assert_eq!(claims["sub"], id["sub"]);
    assert_eq!(claims["groups"], json!(["editors", "staff"]));
    assert_eq!(claims["client_id"], "demo-web");

    let info: Value = server
        .http
        .get(server.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["sub"], id["sub"]);
    assert_eq!(info["name"], "Demo User");
    assert!(info.get("email").is_none(), "email scope not granted");

    // Refresh rotates; reusing the old refresh token ends the family.
    let (wid, wsecret) = server.client("web");
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let (server, wid, wsecret) = (&server, wid.clone(), wsecret.clone());
        async move {
            server
                .form(
                    "/token",
                    Some((&wid, &wsecret)),
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                )
                .await
        }
    };
    let (status, _, rotated) = refresh(first.clone()).await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(rotated["id_token"].is_string());
    // The holder may introspect its refresh token; another client learns nothing.
    let (_, _, info) = server
        .form("/introspect", Some((&wid, &wsecret)), &[("token", &second)])
        .await;
    assert_eq!(
        (info["active"].as_bool(), info["token_type"].as_str()),
        (Some(true), Some("refresh_token")),
        "{info}"
    );
    let (svc, ssecret) = server.client("service");
    let (_, _, info) = server
        .form("/introspect", Some((&svc, &ssecret)), &[("token", &second)])
        .await;
    assert_eq!(info, json!({"active": false}));
    let (status, _, body) = refresh(first).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "reuse detected"
    );
    let (_, _, info) = server
        .form("/introspect", Some((&wid, &wsecret)), &[("token", &second)])
        .await;
    assert_eq!(info, json!({"active": false}), "the family is revoked");
    let (status, _, body) = refresh(second).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "family revoked: {body}"
    );
}

#[tokio::test]
async fn a_replayed_code_revokes_what_it_issued() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let code = back.redirect_param("code").unwrap();
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200);
    let (status, body) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (svc, secret) = server.client("service");
    let (_, _, info) = server
        .form(
            "/introspect",
            Some((&svc, &secret)),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(
        info["active"], false,
        "the first exchange's access token is revoked"
    );
    let (wid, wsecret) = server.client("web");
    let (status, _, _) = server
        .form(
            "/token",
            Some((&wid, &wsecret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 400, "and its refresh token");
}

#[tokio::test]
async fn requests_that_cannot_be_trusted_are_refused_without_redirecting() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    // Unknown client, unregistered or missing redirect URI: our page, never a redirect.
    for (url, says) in [
        (authorize_url("nobody", WEB_REDIRECT, &[]), "unknown client"),
        (
            authorize_url("demo-web", "https://evil.example/cb", &[]),
            "not a registered redirect URI",
        ),
        (
            authorize_url("demo-web", "http://127.0.0.1:8000/_auth/callback/../x", &[]),
            "not a registered redirect URI",
        ),
    ] {
        let page = browser.get(&url).await;
        assert_eq!(page.status, 400, "{url}");
        assert!(page.headers.get("location").is_none());
        assert!(page.body.contains(says), "{url}: {}", page.body);
    }
    // With the redirect URI established, errors go back to it with the state.
    let spa = "http://127.0.0.1:5173/callback";
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=token&scope=openid&state=s",
                urlenc(WEB_REDIRECT)
            ),
            "unsupported_response_type",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("prompt", "none login")]),
            "invalid_request",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("max_age", "-1")]),
            "invalid_request",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("request", "eyJ")]),
            "request_not_supported",
        ),
        (
            authorize_url("demo-web", WEB_REDIRECT, &[("prompt", "none")]),
            "login_required",
        ),
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid+admin&state=s",
                urlenc(WEB_REDIRECT)
            ),
            "invalid_scope",
        ),
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid&code_challenge={CHALLENGE}&code_challenge_method=plain&state=s",
                urlenc(WEB_REDIRECT)
            ),
            "invalid_request",
        ),
        (
            format!(
                "/authorize?client_id=demo-spa&redirect_uri={}&response_type=code&scope=openid&state=s",
                urlenc(spa)
            ),
            "invalid_request",
        ),
        (
            format!(
                "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&response_type=code&scope=openid",
                urlenc(WEB_REDIRECT)
            ),
            "",
        ),
    ];
    for (url, error) in cases {
        let page = browser.get(&url).await;
        if error.is_empty() {
            assert_eq!(page.status, 400, "repeated parameter: our page: {url}");
            continue;
        }
        assert_eq!(page.status, 303, "{url}: {}", page.body);
        assert_eq!(
            page.redirect_param("error").as_deref(),
            Some(error),
            "{url} -> {}",
            page.location()
        );
        assert!(page.redirect_param("state").is_some());
        assert_eq!(page.redirect_param("iss"), Some(server.issuer()));
    }
}

fn urlenc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn failed_logins_back_off_lock_out_and_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ACCOUNT",
        "3",
    )];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    // Without the CSRF token the form is refused.
    let request = page.hidden("request");
    let refused = browser
        .post(
            "/login",
            &[
                ("request", &request),
                ("username", "demo"),
                ("password", "x"),
            ],
        )
        .await;
    assert_eq!(refused.status, 403);
    // Wrong password and unknown user read the same.
    let wrong = log_in(&mut browser, &page, "demo", "not-the-password").await;
    let unknown = log_in(&mut browser, &page, "nobody", "not-the-password").await;
    assert_eq!((wrong.status, unknown.status), (401, 401));
    assert!(wrong.body.contains("Wrong username or password."));
    assert!(unknown.body.contains("Wrong username or password."));
    assert!(
        wrong.body.contains("value=\"demo\""),
        "the username is kept"
    );
    let _ = log_in(&mut browser, &page, "DEMO", "again-wrong").await;
    let _ = log_in(&mut browser, &page, "demo", "not-the-password").await;
    // Three failures on the account: even the right password is refused now.
    let locked = log_in(&mut browser, &page, "demo", &password(&server)).await;
    assert_eq!(locked.status, 429, "{}", locked.body);
    assert!(locked.body.contains("Too many failed sign-in attempts"));
    let store = server.embedded_store().await;
    let events = store.audit_events(100).await.unwrap();
    store.close().await;
    let failures: Vec<_> = events
        .iter()
        .filter(|e| e.action == "login.failure")
        .collect();
    assert_eq!(failures.len(), 4);
    assert!(
        failures.iter().any(|f| f.detail["username"] == "D***O"),
        "usernames are masked"
    );
    assert_eq!(failures[0].source_ip.as_deref(), Some("127.0.0.1"));
    assert!(events.iter().any(|e| e.action == "login.locked"));
    let logs = server.stderr.lock().unwrap().join("\n");
    assert!(!logs.contains("not-the-password") && !logs.contains(&password(&server)));
}

#[tokio::test]
async fn prompt_max_age_and_logout() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let login_page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let (_, tokens) = exchange(&server, &back.redirect_param("code").unwrap(), VERIFIER).await;

    // Signed in: prompt=none works; prompt=login and max_age=0 ask again.
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "none")],
        ))
        .await;
    assert!(
        silent.redirect_param("code").is_some(),
        "{}",
        silent.location()
    );
    for extra in [("prompt", "login"), ("max_age", "0")] {
        let page = browser
            .get(&authorize_url("demo-web", WEB_REDIRECT, &[extra]))
            .await;
        assert_eq!(page.status, 200, "{extra:?}");
        assert!(page.body.contains("Sign in"), "{extra:?}");
        let after = log_in(&mut browser, &page, "demo", &password(&server)).await;
        assert!(
            after.redirect_param("code").is_some(),
            "{extra:?}: {}",
            after.location()
        );
    }
    let again = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "consent")],
        ))
        .await;
    assert!(again.body.contains("Allow access"));
    let denied = consent(&mut browser, &again, "deny").await;
    assert_eq!(
        denied.redirect_param("error").as_deref(),
        Some("access_denied")
    );

    // Logout without a hint asks first; a foreign redirect is refused.
    let asked = browser.get("/logout").await;
    assert_eq!(asked.status, 200);
    assert!(asked.body.contains("Sign out?"));
    let foreign = browser
        .get(&format!(
            "/logout?client_id=demo-web&post_logout_redirect_uri={}",
            urlenc("https://evil.example/")
        ))
        .await;
    assert_eq!(foreign.status, 400);
    // With the ID token as hint: at once, back to the registered URI.
    let hint = tokens["id_token"].as_str().unwrap();
    let out = browser
        .get(&format!(
            "/logout?id_token_hint={hint}&post_logout_redirect_uri={}&state=bye",
            urlenc("http://127.0.0.1:8000/")
        ))
        .await;
    assert_eq!(out.status, 303, "{}", out.body);
    assert_eq!(out.location(), "http://127.0.0.1:8000/?state=bye");
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(
        silent.redirect_param("error").as_deref(),
        Some("login_required"),
        "session ended"
    );
}

#[tokio::test]
async fn discovery_describes_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let doc: Value = server.get_json("/.well-known/openid-configuration").await;
    let issuer = server.issuer();
    assert_eq!(doc["issuer"], issuer);
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(doc[key], format!("{issuer}{path}"));
        let status = server
            .http
            .get(doc[key].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        assert_ne!(status, 404, "{key} exists");
    }
    assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(doc["response_types_supported"], json!(["code"]));
}

#[tokio::test]
async fn a_public_client_uses_pkce_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let spa = "http://127.0.0.1:5173/callback";
    let mut browser = Browser::new(&server.url(""));
    let url = format!(
        "/authorize?client_id=demo-spa&redirect_uri={}&response_type=code&scope=openid+orders%3Aread&state=s&code_challenge={CHALLENGE}&code_challenge_method=S256",
        urlenc(spa)
    );
    let login_page = browser.get(&url).await;
    let consent_page = log_in(&mut browser, &login_page, "demo", &password(&server)).await;
    let back = consent(&mut browser, &consent_page, "allow").await;
    let code = back.redirect_param("code").unwrap();
    let exchange = |fields: Vec<(&'static str, String)>| {
        let server = &server;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server.form("/token", None, &fields).await
        }
    };
    // Without the verifier the code is refused (and spent).
    let base = |code: &str| {
        vec![
            ("grant_type", "authorization_code".to_owned()),
            ("client_id", "demo-spa".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", spa.to_owned()),
        ]
    };
    let (status, _, body) = exchange(base(&code)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let again = browser.get(&url).await;
    let code = again.redirect_param("code").unwrap();
    let mut fields = base(&code);
    fields.push(("code_verifier", VERIFIER.to_owned()));
    let (status, _, tokens) = exchange(fields).await;
    assert_eq!(status, 200, "{tokens}");
    // Public clients rotate refresh tokens like everyone else.
    let (status, _, rotated) = exchange(vec![
        ("grant_type", "refresh_token".to_owned()),
        ("client_id", "demo-spa".to_owned()),
        (
            "refresh_token",
            tokens["refresh_token"].as_str().unwrap().to_owned(),
        ),
    ])
    .await;
    assert_eq!(status, 200, "{rotated}");
    // A browser app may call the token endpoint from its own origin.
    let preflight = server
        .http
        .request(reqwest::Method::OPTIONS, server.url("/token"))
        .header("origin", "http://127.0.0.1:5173")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let jwks = server.http.get(server.url("/jwks")).send().await.unwrap();
    assert_eq!(jwks.headers()["access-control-allow-origin"], "*");
    // The login pages are not readable cross-origin.
    let page = server
        .http
        .get(server.url("/authorize?client_id=nobody"))
        .send()
        .await
        .unwrap();
    assert!(page.headers().get("access-control-allow-origin").is_none());
    // But it cannot pose as a confidential client.
    let (status, _, body) = exchange(vec![
        ("grant_type", "client_credentials".to_owned()),
        ("client_id", "demo-spa".to_owned()),
    ])
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
}

#[tokio::test]
async fn one_address_trying_many_accounts_is_locked_out() {
    let dir = tempfile::tempdir().unwrap();
    let env = [(
        "PORTCULLIS_AUTHSERVER__LOGIN__MAX_FAILURES_PER_ADDRESS",
        "3",
    )];
    let server = Authserver::dev(dir.path(), &[], &env);
    let mut browser = Browser::new(&server.url(""));
    let page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    for user in ["amy", "ben", "cat"] {
        assert_eq!(
            log_in(&mut browser, &page, user, "guess-guess")
                .await
                .status,
            401
        );
    }
    let locked = log_in(&mut browser, &page, "demo", &password(&server)).await;
    assert_eq!(
        locked.status, 429,
        "credential stuffing from one address stops it"
    );
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

#[tokio::test]
async fn codes_are_bound_to_client_redirect_and_verifier() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    let (wid, wsecret) = server.client("web");
    let token = |fields: Vec<(&'static str, String)>, basic: bool| {
        let (server, wid, wsecret) = (&server, wid.clone(), wsecret.clone());
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let auth = basic.then_some((wid.as_str(), wsecret.as_str()));
            server.form("/token", auth, &fields).await
        }
    };
    let exchange_fields = |code: &str, redirect: &str, verifier: Option<&str>| {
        let mut f = vec![
            ("grant_type", "authorization_code".to_owned()),
            ("code", code.to_owned()),
            ("redirect_uri", redirect.to_owned()),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v.to_owned()));
        }
        f
    };
    // A wrong verifier is refused without using the code up (whoever
    // intercepted it cannot void it): the right one still works, once.
    let code = fresh_code(&mut browser, &[]).await;
    let (status, _, body) = token(
        exchange_fields(&code, WEB_REDIRECT, Some(&"x".repeat(43))),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, _, body) = token(exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER)), true).await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = token(exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER)), true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "used"
    );
    // Another redirect URI than the request's.
    let code = fresh_code(&mut browser, &[]).await;
    let (status, _, body) = token(
        exchange_fields(&code, "http://127.0.0.1:8000/other", Some(VERIFIER)),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Another client (the public SPA) presenting the web client's code.
    let code = fresh_code(&mut browser, &[]).await;
    let mut f = exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER));
    f.push(("client_id", "demo-spa".to_owned()));
    let (status, _, body) = token(f, false).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    // A verifier where no challenge was made (a PKCE downgrade probe).
    let back = browser
        .get(&format!(
            "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid+profile+groups+orders%3Aread",
            urlenc(WEB_REDIRECT)
        ))
        .await;
    let code = back.redirect_param("code").unwrap();
    let (status, _, body) = token(exchange_fields(&code, WEB_REDIRECT, Some(VERIFIER)), true).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// A code or refresh token is used up only by the client it was issued
/// to, once that client has authenticated: another client presenting a
/// leaked one gets `invalid_grant`, and the rightful client can still use
/// it; another client's replay of a used one revokes nothing.
#[tokio::test]
async fn another_clients_code_or_refresh_token_neither_works_nor_voids_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    let (svc, ssecret) = server.client("service");
    let (wid, wsecret) = server.client("web");
    // Another web app of the same provider, registered for the same grants.
    let other: Value = server
        .http
        .post(server.url("/admin/v1/clients"))
        .bearer_auth(server.creds["admin_token"].as_str().unwrap())
        .json(&json!({"client_id": "other-web", "kind": "web", "redirect_uris": ["http://127.0.0.1:9/cb"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let other_secret = other["client_secret"].as_str().unwrap().to_owned();
    let as_other = |fields: Vec<(&'static str, String)>| {
        let (server, secret) = (&server, other_secret.clone());
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            server
                .form("/token", Some(("other-web", &secret)), &fields)
                .await
        }
    };
    let active = |token: String| {
        let (server, svc, ssecret) = (&server, svc.clone(), ssecret.clone());
        async move {
            let (_, _, info) = server
                .form("/introspect", Some((&svc, &ssecret)), &[("token", &token)])
                .await;
            info["active"].as_bool().unwrap_or(false)
        }
    };
    let code_fields = |code: &str| {
        vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", VERIFIER),
        ]
        .into_iter()
        .map(|(k, v)| (k, v.to_owned()))
        .collect::<Vec<_>>()
    };

    // A leaked code, presented by another (authenticated) client first.
    let code = fresh_code(&mut browser, &[]).await;
    let (status, _, body) = as_other(code_fields(&code)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let (status, tokens) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 200, "the code still works for its client: {tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    // Presented again by the other client: no replay revocation.
    let (status, _, _) = as_other(code_fields(&code)).await;
    assert_eq!(status, 400);
    assert!(
        active(access.clone()).await,
        "another client's replay voids nothing"
    );
    // Its own client's replay does revoke (RFC 6749 §4.1.2).
    let (status, _) = exchange(&server, &code, VERIFIER).await;
    assert_eq!(status, 400);
    assert!(
        !active(access).await,
        "the rightful client's replay revokes"
    );

    // A refresh token, the same way.
    let code = fresh_code(&mut browser, &[]).await;
    let (_, tokens) = exchange(&server, &code, VERIFIER).await;
    let first = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh_fields = |token: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", token.to_owned()),
        ]
    };
    let (status, _, body) = as_other(refresh_fields(&first)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let web_refresh = |token: String| {
        let (server, wid, wsecret) = (&server, wid.clone(), wsecret.clone());
        async move {
            server
                .form(
                    "/token",
                    Some((&wid, &wsecret)),
                    &[("grant_type", "refresh_token"), ("refresh_token", &token)],
                )
                .await
        }
    };
    let (status, _, rotated) = web_refresh(first.clone()).await;
    assert_eq!(status, 200, "still usable by its client: {rotated}");
    let second = rotated["refresh_token"].as_str().unwrap().to_owned();
    // The rotated-out token from another client: the family lives on.
    let (status, _, _) = as_other(refresh_fields(&first)).await;
    assert_eq!(status, 400);
    let (status, _, body) = web_refresh(second).await;
    assert_eq!(status, 200, "another client's reuse ends no family: {body}");
}

#[tokio::test]
async fn concurrent_replays_of_a_code_leave_no_working_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    for round in 0..5 {
        let code = fresh_code(&mut browser, &[]).await;
        let ex = || exchange(&server, &code, VERIFIER);
        let (a, b, c, d, e, f) = tokio::join!(ex(), ex(), ex(), ex(), ex(), ex());
        let results = [a, b, c, d, e, f];
        let issued: Vec<&Value> = results
            .iter()
            .filter(|(s, _)| *s == 200)
            .map(|(_, b)| b)
            .collect();
        assert!(
            issued.len() <= 1,
            "round {round}: {} successes",
            issued.len()
        );
        let (svc, secret) = server.client("service");
        for tokens in issued {
            let (_, _, info) = server
                .form(
                    "/introspect",
                    Some((&svc, &secret)),
                    &[("token", tokens["access_token"].as_str().unwrap())],
                )
                .await;
            assert_eq!(
                info["active"], false,
                "round {round}: replays revoke the winner's token"
            );
        }
    }
}

#[tokio::test]
async fn consent_required_disabled_users_and_logout_forms() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = signed_in(&server).await;
    // prompt=none for a scope not yet consented to.
    let url = format!(
        "/authorize?client_id=demo-web&redirect_uri={}&response_type=code&scope=openid+email&prompt=none&state=s",
        urlenc(WEB_REDIRECT)
    );
    let back = browser.get(&url).await;
    assert_eq!(
        back.redirect_param("error").as_deref(),
        Some("consent_required")
    );
    // login_hint prefills the username.
    let mut other = Browser::new(&server.url(""));
    let page = other
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("login_hint", "demo")],
        ))
        .await;
    assert!(page.body.contains("value=\"demo\""));

    // A disabled user's tokens stop working at once.
    let code = fresh_code(&mut browser, &[]).await;
    let (_, tokens) = exchange(&server, &code, VERIFIER).await;
    let admin = server.creds["admin_token"].as_str().unwrap();
    let users: Value = server
        .http
        .get(server.url("/admin/v1/users"))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = users["users"][0]["id"].as_str().unwrap();
    let resp = server
        .http
        .patch(server.url(&format!("/admin/v1/users/{id}")))
        .bearer_auth(admin)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let (svc, secret) = server.client("service");
    let (_, _, info) = server
        .form(
            "/introspect",
            Some((&svc, &secret)),
            &[("token", tokens["access_token"].as_str().unwrap())],
        )
        .await;
    assert_eq!(info["active"], false, "disabled user");
    let (wid, wsecret) = server.client("web");
    let (status, _, _) = server
        .form(
            "/token",
            Some((&wid, &wsecret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(status, 400, "no refresh for a disabled user");
    let silent = browser
        .get(&authorize_url(
            "demo-web",
            WEB_REDIRECT,
            &[("prompt", "none")],
        ))
        .await;
    assert_eq!(
        silent.redirect_param("error").as_deref(),
        Some("login_required"),
        "the session no longer counts"
    );

    // An access token is not an ID token hint.
    let bad = browser
        .get(&format!(
            "/logout?id_token_hint={}",
            tokens["access_token"].as_str().unwrap()
        ))
        .await;
    assert_eq!(bad.status, 400);
    // The confirmation form needs its CSRF token.
    let confirm = browser.get("/logout").await;
    let csrf = confirm.hidden("csrf");
    assert_eq!(browser.post("/logout", &[]).await.status, 403);
    let done = browser.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(done.status, 200);
    assert!(done.body.contains("Signed out"));
}

#[tokio::test]
async fn injection_shaped_and_oversized_input_gets_a_clean_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let server = Authserver::dev(dir.path(), &[], &[]);
    let mut browser = Browser::new(&server.url(""));
    let page = browser
        .get(&authorize_url("demo-web", WEB_REDIRECT, &[]))
        .await;
    for username in [
        "' OR '1'='1' --",
        "demo\"; DROP TABLE users; --",
        "<script>alert(1)</script>",
        "demo\u{0}x",
    ] {
        let after = log_in(&mut browser, &page, username, "' OR ''='").await;
        assert_eq!(after.status, 401, "{username}");
        assert!(!after.body.contains("<script>alert"), "escaped");
    }
    // The users table is intact and the demo user still logs in.
    let ok = log_in(&mut browser, &page, "demo", &password(&server)).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    // Oversized parameters: refused or carried, never a server error.
    for size in [10_000, 200_000] {
        let state = "s".repeat(size);
        let resp = server
            .http
            .get(server.url(&authorize_url(
                "demo-web",
                WEB_REDIRECT,
                &[("state", &state)],
            )))
            .send()
            .await;
        if let Ok(resp) = resp {
            assert!(
                resp.status().as_u16() < 500,
                "state of {size}: {}",
                resp.status()
            );
        }
    }
    let client_id = "c".repeat(100_000);
    let (status, _, _) = server
        .form(
            "/token",
            Some((&client_id, "x")),
            &[("grant_type", "client_credentials")],
        )
        .await;
    assert!((400..500).contains(&status), "{status}");
}
