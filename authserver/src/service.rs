//! Services that call the authserver's own APIs (SCIM provisioning, the
//! change feed) present a bearer token: an access token of a
//! `client_credentials` client that carries the API's scope, or a service
//! token the admin CLI made (kept as a keyed digest, named, scoped). A
//! missing or unknown token is a 401; one without the scope a 403.

use crate::app::App;
use crate::crypto::random_token;
use crate::error::Error;
use crate::model::Actor;
use crate::store::ServiceToken;

/// The scope SCIM provisioning needs.
pub const SCIM: &str = "scim";
/// The scope the change feed needs.
pub const FEED: &str = "feed";

/// Who called: the name audit events record as the actor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("a bearer token is required")]
    Missing,
    #[error("the bearer token is invalid, expired or revoked")]
    Invalid,
    #[error("the token lacks the `{0}` scope")]
    Scope(&'static str),
    #[error("the token cannot be checked now")]
    Unavailable,
}

/// Makes a service token named `name` with `scopes`; the token is shown
/// once, only its keyed digest is kept.
pub async fn add_token(
    app: &App,
    name: &str,
    scopes: &[String],
    actor: Actor<'_>,
    now: i64,
) -> Result<(String, ServiceToken), Error> {
    crate::admin::check_name("service token", name)?;
    if scopes.is_empty() {
        return Err(Error::Invalid("a service token needs a scope".into()));
    }
    if let Some(s) = scopes.iter().find(|s| ![SCIM, FEED].contains(&s.as_str())) {
        return Err(Error::Invalid(format!(
            "scope `{s}` is not one of `{SCIM}`, `{FEED}`"
        )));
    }
    let token = format!("pcs_{}", random_token::<32>());
    let record = ServiceToken {
        id: random_token::<12>(),
        name: name.to_owned(),
        scopes: scopes.to_vec(),
        created_at: now,
    };
    let audit = actor
        .event(now, "service_token.create")
        .target(record.id.clone())
        .detail(serde_json::json!({"name": name, "scopes": scopes}));
    app.store
        .add_service_token(&record, &app.secrets.digest(&token), &audit)
        .await?;
    Ok((token, record))
}

/// The caller a bearer token stands for, if it may use `scope`.
pub async fn authenticate(
    app: &App,
    bearer: Option<&str>,
    scope: &'static str,
    now: i64,
) -> Result<Caller, Refused> {
    let token = bearer.filter(|t| !t.is_empty()).ok_or(Refused::Missing)?;
    if token.starts_with("pcs_") {
        let found = app
            .store
            .service_token(&app.secrets.digest(token))
            .await
            .map_err(|_| Refused::Unavailable)?
            .ok_or(Refused::Invalid)?;
        if !found.scopes.iter().any(|s| s == scope) {
            return Err(Refused::Scope(scope));
        }
        return Ok(Caller {
            name: format!("service:{}", found.name),
        });
    }
    let claims = crate::issue::read_access(app, token, now)
        .await
        .map_err(|_| Refused::Unavailable)?
        .ok_or(Refused::Invalid)?;
    let revoked = app
        .ephemeral
        .get(&crate::ephemeral::keys::revoked(&claims.jti))
        .await
        .map_err(|_| Refused::Unavailable)?
        .is_some();
    // A service acts for itself: a token issued to a user is not one.
    let client = app
        .client(&claims.client_id)
        .await
        .map_err(|_| Refused::Unavailable)?;
    if revoked || client.is_none() || claims.sub != claims.client_id {
        return Err(Refused::Invalid);
    }
    if !claims.scope.split(' ').any(|s| s == scope) {
        return Err(Refused::Scope(scope));
    }
    Ok(Caller {
        name: format!("client:{}", claims.client_id),
    })
}
