//! `--dev`: a master key kept under the data directory, and demo accounts
//! whose fresh credentials are printed (and written with
//! `--dev-credentials FILE`) at every start, so what is printed always works.

use std::path::Path;

use serde::Serialize;

use crate::admin::{self, ClientKind, ClientSpec, IssuedClient, UserSpec};
use crate::app::{App, now};
use crate::crypto::{MasterKey, random_token};
use crate::error::Error;

pub const DEMO_USER: &str = "demo";
/// The gateway's session-mode callback in the one-command stack.
pub const WEB_REDIRECT: &str = "http://127.0.0.1:8000/_auth/callback";
pub const SPA_REDIRECT: &str = "http://127.0.0.1:5173/callback";

#[derive(Debug, Serialize)]
pub struct DevCredentials {
    pub issuer: String,
    /// Bearer token of the admin API (`/admin/v1`).
    pub admin_token: String,
    pub user: DemoUser,
    pub clients: DemoClients,
    /// Service tokens for the demo's provisioning script (`scim`) and its
    /// sidecar and gateway (`feed`).
    pub service_tokens: DemoServiceTokens,
}

#[derive(Debug, Serialize)]
pub struct DemoServiceTokens {
    pub scim: String,
    pub feed: String,
}

#[derive(Debug, Serialize)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub groups: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DemoClients {
    pub web: IssuedClient,
    pub spa: IssuedClient,
    pub service: IssuedClient,
    /// A public client of the device grant (RFC 8628).
    pub device: IssuedClient,
}

/// The dev master key: read from `<data_dir>/master.key`, created (mode
/// 0600) when missing.
pub fn master_key(data_dir: &Path) -> Result<MasterKey, Error> {
    let path = data_dir.join("master.key");
    let io = |source| Error::Io {
        what: format!("dev master key `{}`", path.display()),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(MasterKey::from_base64(&text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(data_dir).map_err(io)?;
            let (key, text) = MasterKey::generate()?;
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(io)?;
            std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// The bootstrap admin: the configured admin token, or a fresh one.
pub fn admin_token(app: &mut App) -> Result<String, Error> {
    if let Some(token) = &app.config.admin_token {
        return Ok(token.clone());
    }
    let token = random_token::<32>();
    app.config.admin_token = Some(token.clone());
    Ok(token)
}

/// Creates the demo user and clients if missing, gives each a fresh
/// password or secret, and makes sure there is an admin token.
pub async fn bootstrap(app: &mut App) -> Result<DevCredentials, Error> {
    let admin_token = admin_token(app)?;
    let app = &*app;
    let at = now();
    let actor = crate::model::Actor::local("dev-bootstrap");
    let password = random_token::<12>();
    let groups = vec!["staff".to_owned(), "editors".to_owned()];
    match app.store.user_by_username(DEMO_USER).await? {
        Some(user) => admin::set_password(app, &user, password.clone(), actor, at).await?,
        None => {
            admin::add_user(
                app,
                UserSpec {
                    username: DEMO_USER.into(),
                    password: password.clone(),
                    email: Some("demo@example.com".into()),
                    display_name: Some("Demo User".into()),
                    groups: groups.clone(),
                    roles: Vec::new(),
                },
                actor,
                at,
            )
            .await
            .map(|_| ())?;
        }
    }
    let web = ensure_client(
        app,
        ClientSpec {
            id: "demo-web".into(),
            name: "Demo web app (the gateway's session mode)".into(),
            kind: ClientKind::Web,
            redirect_uris: vec![WEB_REDIRECT.into()],
            post_logout_redirect_uris: vec!["http://127.0.0.1:8000/".into()],
            scopes: scopes(&[
                "openid",
                "profile",
                "email",
                "groups",
                "offline_access",
                "orders:read",
                "orders:write",
            ]),
            jwks: None,
            introspect: false,
            backchannel_logout_uri: None,
        },
        at,
    )
    .await?;
    let spa = ensure_client(
        app,
        ClientSpec {
            id: "demo-spa".into(),
            name: "Demo single-page app (public, PKCE)".into(),
            kind: ClientKind::Public,
            redirect_uris: vec![SPA_REDIRECT.into()],
            post_logout_redirect_uris: vec!["http://127.0.0.1:5173/".into()],
            scopes: scopes(&["openid", "profile", "orders:read"]),
            jwks: None,
            introspect: false,
            backchannel_logout_uri: None,
        },
        at,
    )
    .await?;
    let service = ensure_client(
        app,
        ClientSpec {
            id: "demo-service".into(),
            name: "Demo service (client credentials)".into(),
            kind: ClientKind::Service,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            scopes: scopes(&["orders:read", "orders:write"]),
            jwks: None,
            // The demo's resource server: it may introspect any token.
            introspect: true,
            backchannel_logout_uri: None,
        },
        at,
    )
    .await?;
    let device = ensure_client(
        app,
        ClientSpec {
            id: "demo-tv".into(),
            name: "Demo TV (device sign-in)".into(),
            kind: ClientKind::Device,
            redirect_uris: Vec::new(),
            post_logout_redirect_uris: Vec::new(),
            scopes: scopes(&["openid", "profile", "offline_access", "orders:read"]),
            jwks: None,
            introspect: false,
            backchannel_logout_uri: None,
        },
        at,
    )
    .await?;
    let service_tokens = DemoServiceTokens {
        scim: fresh_service_token(app, "dev-provisioning", crate::service::SCIM, at).await?,
        feed: fresh_service_token(app, "dev-feed", crate::service::FEED, at).await?,
    };
    Ok(DevCredentials {
        service_tokens,
        issuer: app.issuer.clone(),
        admin_token,
        user: DemoUser {
            username: DEMO_USER.into(),
            password,
            groups,
        },
        clients: DemoClients {
            web,
            spa,
            service,
            device,
        },
    })
}

/// A new service token named `name` (the previous one stops working).
async fn fresh_service_token(app: &App, name: &str, scope: &str, at: i64) -> Result<String, Error> {
    let actor = crate::model::Actor::local("dev-bootstrap");
    let audit = actor
        .event(at, "service_token.remove")
        .target(name.to_owned());
    match app.store.remove_service_token(name, &audit).await {
        Ok(()) | Err(crate::store::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let (token, _) = crate::service::add_token(app, name, &[scope.to_owned()], actor, at).await?;
    Ok(token)
}

fn scopes(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

async fn ensure_client(app: &App, spec: ClientSpec, at: i64) -> Result<IssuedClient, Error> {
    let actor = crate::model::Actor::local("dev-bootstrap");
    match app.store.client(&spec.id).await? {
        None => admin::add_client(app, spec, actor, at).await,
        Some(existing) => {
            let secret = if existing.is_public() {
                None
            } else {
                Some(admin::reset_client_secret(app, &existing, actor, at).await?)
            };
            Ok(IssuedClient {
                client_id: existing.id,
                client_secret: secret,
                token_endpoint_auth_method: existing.auth_method.as_str(),
                redirect_uris: existing.redirect_uris,
                scopes: existing.scopes,
            })
        }
    }
}
