//! An upstream identity and its link to a local account. A federated
//! sign-in that finds no link may not guess one: it holds the identity
//! ([`hold`]) under a token kept in the authorization request, and the
//! sign-in the person then completes with a local proof links it
//! ([`link_held`], from `login::complete`).

use serde_json::json;

use crate::app::App;
use crate::authorize::{self, Refusal};
use crate::crypto::random_token;
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::model::{AuditEvent, FederatedLink, UpstreamIdentity as Identity};

/// Keeps `identity` until the person proves a local account: the token
/// that names it.
pub async fn hold(app: &App, identity: &Identity) -> Result<String, Refusal> {
    let token = random_token::<24>();
    let bytes = serde_json::to_vec(identity).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(
            &keys::federated_link(&token),
            &bytes,
            authorize::REQUEST_TTL,
        )
        .await
        .map_err(OAuthError::from)?;
    Ok(token)
}

/// Links the identity held under `token` to `user_id`, who has just
/// proven the account.
pub async fn link_held(app: &App, token: &str, user_id: &str, now: i64) -> Result<(), Refusal> {
    let identity: Identity = app
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
    link(app, &identity, user_id, now).await
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
