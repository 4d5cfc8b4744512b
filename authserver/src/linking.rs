//! An upstream identity and its link to a local account. A federated
//! sign-in that finds no link may not guess one: it holds the identity
//! ([`hold`]) under a token kept in the authorization request and bound
//! to the browser by a cookie, and a fresh sign-in the person then
//! completes with a local first factor, in that browser, links it
//! ([`link_held`], from `login::complete`).

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::app::App;
use crate::authorize::{self, Refusal};
use crate::crypto::{digest, random_token};
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::model::{AuditEvent, FederatedLink, UpstreamIdentity as Identity};

/// An identity waiting, and the browser it waits in.
#[derive(Serialize, Deserialize)]
struct Held {
    identity: Identity,
    /// The digest of the cookie value that ties it to one browser.
    browser: String,
}

/// A held identity: the token the request keeps, and the cookie value
/// that binds it to this browser (only this browser can link it).
#[derive(Debug)]
pub struct Holding {
    pub token: String,
    pub browser_binding: String,
}

/// Keeps `identity` until the person proves a local account in this
/// browser.
pub async fn hold(app: &App, identity: &Identity) -> Result<Holding, Refusal> {
    let token = random_token::<24>();
    let binding = random_token::<24>();
    let held = Held {
        identity: identity.clone(),
        browser: digest(&binding),
    };
    let bytes = serde_json::to_vec(&held).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(
            &keys::federated_link(&token),
            &bytes,
            authorize::REQUEST_TTL,
        )
        .await
        .map_err(OAuthError::from)?;
    Ok(Holding {
        token,
        browser_binding: binding,
    })
}

/// Links the identity held under `token` to `user_id`, who has just
/// proven the account in the browser `binding` (its cookie) names.
pub async fn link_held(
    app: &App,
    token: &str,
    binding: Option<&str>,
    user_id: &str,
    now: i64,
) -> Result<(), Refusal> {
    let held: Held = app
        .ephemeral
        .take(&keys::federated_link(token))
        .await
        .map_err(OAuthError::from)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            Refusal::Page(
                "The account link has expired. Sign in with the provider again to link it.".into(),
            )
        })?;
    if binding.is_none_or(|b| digest(b) != held.browser) {
        return Err(Refusal::Page(
            "This account link was started in another browser. Sign in with the provider again here to link it.".into(),
        ));
    }
    link(app, &held.identity, user_id, now).await
}

/// Links `identity` to `user_id`, audited.
pub async fn link(app: &App, identity: &Identity, user_id: &str, now: i64) -> Result<(), Refusal> {
    let link = FederatedLink {
        provider: identity.provider.clone(),
        subject: identity.subject.clone(),
        user_id: user_id.to_owned(),
        email: identity.email.clone(),
        created_at: now,
        last_used_at: Some(now),
    };
    let audit = AuditEvent::new(now, user_id, "federation.link")
        .target(user_id.to_owned())
        .detail(json!({"provider": identity.provider}));
    app.store
        .link_identity(&link, &audit)
        .await
        .map_err(OAuthError::from)?;
    Ok(())
}
