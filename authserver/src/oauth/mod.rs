//! The token, introspection, revocation and userinfo endpoints' logic
//! (RFC 6749, 7636, 7662, 7009, 7523 for `private_key_jwt`, OIDC Core),
//! free of HTTP types: handlers pass the form body and the `Authorization`
//! header in and get JSON or an [`OAuthError`] back. This file holds the
//! token endpoint's dispatch and what every grant shares; client
//! authentication, each grant, introspection, revocation and userinfo
//! have a module each.

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::App;
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{AuditEvent, Client, ClientAuth, GrantType};
use crate::token::AccessClaims;
use crate::{authorize, issue};

mod client_auth;
mod client_credentials;
mod code;
mod device;
mod introspection;
mod refresh;
mod revocation;
mod userinfo;

pub use client_auth::authenticate;
pub use device::device_authorization;
pub use introspection::introspect;
pub use revocation::revoke;
pub use userinfo::{BearerError, userinfo};

use client_credentials::client_credentials;
use code::authorization_code;
use device::device_code;
use refresh::refresh;

/// The scopes granted: those asked for, all allowed to the client; without
/// a `scope` parameter, everything the client is registered for.
fn granted_scopes(client: &Client, requested: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(client.scopes.clone());
    };
    let mut granted: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !scope
            .chars()
            .all(|c| c == '!' || ('#'..='[').contains(&c) || (']'..='~').contains(&c))
        {
            return Err(OAuthError::invalid_scope(format!(
                "`{scope}` is not a valid scope token"
            )));
        }
        if !client.scopes.iter().any(|s| s == scope) {
            return Err(OAuthError::invalid_scope(format!(
                "scope `{scope}` is not allowed for this client"
            )));
        }
        if !granted.iter().any(|s| s == scope) {
            granted.push(scope.to_owned());
        }
    }
    Ok(granted)
}

/// `POST /token`.
pub async fn token(
    app: &App,
    form: &Form,
    authorization: Option<&str>,
    source: Option<IpAddr>,
    now: i64,
) -> Result<Value, OAuthError> {
    let name = form.require("grant_type")?;
    let client = authenticate(app, form, authorization, source, now).await?;
    let Some(grant) = GrantType::parse(name) else {
        return Err(OAuthError::unsupported_grant_type(format!(
            "grant_type `{name}` is not supported"
        )));
    };
    match grant {
        GrantType::ClientCredentials => client_credentials(app, &client, form, source, now).await,
        GrantType::AuthorizationCode => authorization_code(app, &client, form, source, now).await,
        GrantType::RefreshToken => refresh(app, &client, form, source, now).await,
        GrantType::DeviceCode => device_code(app, &client, form, source, now).await,
    }
}

/// What a grant acting for a signed-in user answers: an access token, an
/// ID token when `openid` was granted, a refresh token when the client may
/// refresh. Also the access token's claims and the refresh family.
async fn issue_for_user(
    app: &App,
    client: &Client,
    user: &crate::model::User,
    scopes: &[String],
    auth: &issue::AuthFacts,
    nonce: Option<&str>,
    now: i64,
) -> Result<(Value, AccessClaims, Option<String>), OAuthError> {
    let (access, claims) =
        issue::access_token(app, client, Some(user), scopes, Some(auth), now).await?;
    let lifetime = claims.exp - now;
    let mut response = token_response(&access, &claims, lifetime);
    if scopes.iter().any(|s| s == "openid") {
        let id = issue::id_token(
            app,
            &issue::IdTokenInput {
                client,
                user,
                scopes,
                auth,
                nonce,
                access_token: &access,
            },
            now,
        )?;
        response["id_token"] = json!(id);
    }
    let mut family = None;
    if client.may_use(GrantType::RefreshToken) {
        let (refresh, f) = issue::refresh_token(app, None, client, user, scopes, auth, now).await?;
        issue::tie_to_family(app, &f, &claims, now).await?;
        response["refresh_token"] = json!(refresh);
        family = Some(f);
    }
    if let Some(sid) = &auth.sid {
        crate::backchannel::issued_in(app, sid, &client.id).await?;
    }
    Ok((response, claims, family))
}

fn require_grant_type(client: &Client, grant: GrantType) -> Result<(), OAuthError> {
    if client.may_use(grant) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!(
            "client is not registered for {}",
            grant.as_str()
        )))
    }
}

fn token_response(access: &str, claims: &AccessClaims, lifetime: i64) -> Value {
    let mut response = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": lifetime,
    });
    if !claims.scope.is_empty() {
        response["scope"] = json!(claims.scope);
    }
    response
}
