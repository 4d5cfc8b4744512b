//! Microsoft Entra ID through the real provider code path, against a
//! stand-in that answers as Entra's multi-tenant endpoint documents: its
//! metadata's issuer is the template `…/{tenantid}/v2.0`, each ID token's
//! `iss` names the account's own tenant (`tid`), and no `email_verified`.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{Value, json};
use tokens::testing::SigningKey;

use super::{pairs, param, through};
use crate::browser::Browser;
use crate::server::Authserver;

const CLIENT: (&str, &str) = ("entra-app", "entra-secret");
const CONTOSO: &str = "11111111-1111-1111-1111-111111111111";
const FABRIKAM: &str = "22222222-2222-2222-2222-222222222222";
const STRANGER: &str = "33333333-3333-3333-3333-333333333333";

/// Who signs in next at the stand-in.
#[derive(Clone)]
struct Account {
    tid: &'static str,
    oid: &'static str,
    email: &'static str,
    /// The tenant `iss` names (its own unless forged).
    iss_tenant: &'static str,
}

#[derive(Clone)]
struct StandIn {
    base: String,
    key: Arc<SigningKey>,
    next: Arc<Mutex<Account>>,
    /// code → (nonce, PKCE challenge).
    codes: Arc<Mutex<Vec<(String, String, String)>>>,
}

async fn metadata(State(s): State<StandIn>) -> Json<Value> {
    let b = &s.base;
    Json(json!({
        "issuer": format!("{b}/{{tenantid}}/v2.0"),
        "authorization_endpoint": format!("{b}/organizations/oauth2/v2.0/authorize"),
        "token_endpoint": format!("{b}/organizations/oauth2/v2.0/token"),
        "jwks_uri": format!("{b}/organizations/discovery/v2.0/keys"),
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "tenant_region_scope": null,
    }))
}

async fn keys(State(s): State<StandIn>) -> Json<Value> {
    let mut jwk = s.key.jwk.clone();
    jwk["use"] = json!("sig");
    Json(json!({"keys": [jwk]}))
}

async fn authorize(State(s): State<StandIn>, uri: axum::http::Uri) -> Response {
    let q = pairs(uri.query().unwrap_or(""));
    let code = format!("code-{}", s.codes.lock().unwrap().len());
    s.codes.lock().unwrap().push((
        code.clone(),
        param(&q, "nonce"),
        param(&q, "code_challenge"),
    ));
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        param(&q, "redirect_uri"),
        param(&q, "state")
    ))
    .into_response()
}

async fn token(State(s): State<StandIn>, body: String) -> Response {
    let f = pairs(&body);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        bootstrap::digest::sha256(param(&f, "code_verifier").as_bytes()),
    );
    let issued = s
        .codes
        .lock()
        .unwrap()
        .iter()
        .find(|(c, _, ch)| *c == param(&f, "code") && *ch == challenge)
        .cloned();
    let Some((_, nonce, _)) = issued else {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response();
    };
    let a = s.next.lock().unwrap().clone();
    let now = tokens::testing::now();
    let id_token = s.key.sign(&json!({
        "aud": CLIENT.0, "iss": format!("{}/{}/v2.0", s.base, a.iss_tenant),
        "iat": now, "nbf": now, "exp": now + 3600, "nonce": nonce,
        "tid": a.tid, "oid": a.oid, "sub": format!("pairwise-{}", a.oid),
        "email": a.email, "preferred_username": format!("{}@contoso.example", a.oid),
        "name": "Adele Vance", "ver": "2.0",
    }));
    Json(
        json!({"token_type": "Bearer", "scope": "openid profile email", "expires_in": 3600,
        "access_token": "entra-access-token", "id_token": id_token}),
    )
    .into_response()
}

async fn stand_in() -> StandIn {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let state = StandIn {
        base: format!("http://{}", listener.local_addr().unwrap()),
        key: Arc::new(SigningKey::rsa("entra-1", jsonwebtoken::Algorithm::RS256)),
        next: Arc::new(Mutex::new(Account {
            tid: CONTOSO,
            oid: "adele",
            email: "adele@example.com",
            iss_tenant: CONTOSO,
        })),
        codes: Arc::default(),
    };
    let app = Router::new()
        .route(
            "/organizations/v2.0/.well-known/openid-configuration",
            get(metadata),
        )
        .route("/organizations/discovery/v2.0/keys", get(keys))
        .route("/organizations/oauth2/v2.0/authorize", get(authorize))
        .route("/organizations/oauth2/v2.0/token", post(token))
        .with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    state
}

/// Through the login page's Entra button: the ID token's claims, or the
/// page where the sign-in stopped.
async fn sign_in(server: &Authserver) -> Result<Value, String> {
    through(server, &mut Browser::new(&server.url("")), "entra").await
}

#[tokio::test]
async fn entra_multi_tenant_accounts_are_tenant_and_object_ids() {
    let entra = stand_in().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("authserver.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[federation.providers]]
id = "entra"
name = "Microsoft"
kind = "entra"
issuer = "{base}"
tenant = "organizations"
allowed_tenants = ["{CONTOSO}", "{FABRIKAM}"]
client_id = "{id}"
client_secret = "{secret}"
jit = true
"#,
            base = entra.base,
            id = CLIENT.0,
            secret = CLIENT.1,
        ),
    )
    .unwrap();
    let server = Authserver::dev(dir.path(), &["--config", config.to_str().unwrap()], &[]);
    let set = |a: Account| *entra.next.lock().unwrap() = a;

    let adele = sign_in(&server).await.unwrap();
    assert_eq!(
        adele["preferred_username"], "adele@contoso.example",
        "{adele}"
    );
    // Entra vouches for no address: none is kept, and none links.
    assert_eq!(adele.get("email"), None, "{adele}");
    let before = entra.next.lock().unwrap().clone();
    set(Account {
        email: "adele.new@example.com",
        ..before
    });
    let again = sign_in(&server).await.unwrap();
    assert_eq!(again["sub"], adele["sub"], "tid + oid name the account");

    // The same object id in another allowed tenant is another account.
    set(Account {
        tid: FABRIKAM,
        oid: "adele",
        email: "adele@fabrikam.example",
        iss_tenant: FABRIKAM,
    });
    let other = sign_in(&server).await.unwrap();
    assert_ne!(other["sub"], adele["sub"]);

    // A tenant not on the list, and a token whose `iss` is another
    // tenant's than its `tid`, are refused.
    set(Account {
        tid: STRANGER,
        oid: "eve",
        email: "eve@example.com",
        iss_tenant: STRANGER,
    });
    let refused = sign_in(&server).await.unwrap_err();
    assert!(refused.contains("may not sign in here"), "{refused}");
    set(Account {
        tid: CONTOSO,
        oid: "mallory",
        email: "mallory@example.com",
        iss_tenant: FABRIKAM,
    });
    let forged = sign_in(&server).await.unwrap_err();
    assert!(forged.contains("not its tenant"), "{forged}");

    // An Entra account claiming the demo user's address is not the demo
    // user: the person is asked to prove a local account.
    set(Account {
        tid: CONTOSO,
        oid: "claimer",
        email: "demo@example.com",
        iss_tenant: CONTOSO,
    });
    let asked = sign_in(&server).await.unwrap_err();
    assert!(asked.contains("No account here is linked"), "{asked}");
}
