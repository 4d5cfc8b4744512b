//! Fixtures for unit tests of the domain flows: an app on SQLite in memory
//! and the in-process ephemeral store, a user, a client and a pending
//! authorization request. No server, no HTTP.

#![allow(clippy::unwrap_used)]

use crate::admin::{self, ClientKind, ClientSpec, UserSpec};
use crate::app::App;
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::form::Form;
use crate::model::{Actor, User};
use crate::session::Session;

pub const NOW: i64 = 1_800_000_000;
pub const PASSWORD: &str = "correct horse battery";
pub const CLIENT: &str = "web";
pub const REDIRECT: &str = "https://app.test/callback";
pub const AFTER_LOGOUT: &str = "https://app.test/bye";

/// An app with `adjust` applied to its configuration, one database per call.
pub async fn app_with(adjust: impl FnOnce(&mut Config)) -> App {
    let name = crate::crypto::random_token::<8>();
    let (master, text) = MasterKey::generate().unwrap();
    let mut config = Config {
        issuer: Some("https://auth.test".into()),
        // Shared cache: every connection of the pool sees one database.
        database_url: Some(format!("sqlite:file:{name}?mode=memory&cache=shared")),
        master_key: Some(text),
        ..Config::default()
    };
    adjust(&mut config);
    App::open(config, &master).await.unwrap()
}

pub async fn app() -> App {
    app_with(|_| {}).await
}

/// Alice, who can sign in with [`PASSWORD`], and a web client that asks
/// for consent.
pub async fn alice_and_client(app: &App) -> User {
    let spec = UserSpec {
        username: "alice".into(),
        password: PASSWORD.into(),
        ..UserSpec::default()
    };
    let user = admin::add_user(app, spec, Actor::local("test"), NOW)
        .await
        .unwrap();
    let client = ClientSpec {
        id: CLIENT.into(),
        name: "The App".into(),
        kind: ClientKind::Web,
        redirect_uris: vec![REDIRECT.into()],
        post_logout_redirect_uris: vec![AFTER_LOGOUT.into()],
        scopes: vec!["openid".into(), "profile".into()],
        jwks: None,
        introspect: false,
        backchannel_logout_uri: None,
    };
    admin::add_client(app, client, Actor::local("test"), NOW)
        .await
        .unwrap();
    user
}

/// A password session of `user_id` that began at `auth_time`.
pub fn session(user_id: &str, auth_time: i64) -> Session {
    Session {
        user_id: user_id.into(),
        auth_time,
        amr: vec!["pwd".into()],
        acr: "urn:portcullis:acr:pwd".into(),
        sid: crate::crypto::random_token::<16>(),
        address: None,
        user_agent: None,
    }
}

/// A pending authorization request of [`CLIENT`]; `extra` is appended to
/// its query (`&prompt=login`, …).
pub async fn request(app: &App, extra: &str) -> String {
    let query = format!(
        "response_type=code&client_id={CLIENT}&redirect_uri={REDIRECT}&scope=openid%20profile&state=s1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256{extra}"
    );
    crate::authorize::start(app, &Form::parse(query.as_bytes()).unwrap())
        .await
        .unwrap()
}
