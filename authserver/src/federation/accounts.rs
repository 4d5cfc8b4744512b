//! Which local account a verified upstream identity is. A link made
//! before decides; otherwise an address is never enough: if a local
//! account has the address the provider claims (verified or not), the
//! person must prove that account (its password and factor) to link it.
//! With just-in-time creation on (and the address's domain allowed), a
//! first sign-in creates an account without a password, linked in the
//! same transaction.

use serde_json::json;

use super::{Identity, ProviderConfig};
use crate::app::App;
use crate::authorize::Refusal;
use crate::error::OAuthError;
use crate::model::{Actor, FederatedLink, User};
use crate::store::{NewUser, StoreError};

#[derive(Debug)]
pub(super) enum Resolved {
    User(User),
    ProveAccount,
}

pub(super) async fn resolve(
    app: &App,
    cfg: &ProviderConfig,
    identity: &Identity,
    now: i64,
) -> Result<Resolved, Refusal> {
    let store = &app.store;
    if let Some(user_id) = store
        .federated_user(&identity.provider, &identity.subject, now)
        .await
        .map_err(OAuthError::from)?
    {
        return match store.user_by_id(&user_id).await.map_err(OAuthError::from)? {
            Some(user) if !user.disabled => Ok(Resolved::User(user)),
            _ => Err(Refusal::Page("This account is disabled.".into())),
        };
    }
    if let Some(email) = &identity.email
        && store.email_taken(email).await.map_err(OAuthError::from)?
    {
        return Ok(Resolved::ProveAccount);
    }
    if !cfg.jit {
        return Ok(Resolved::ProveAccount);
    }
    let verified = identity
        .email
        .as_deref()
        .filter(|_| identity.email_verified);
    if !cfg.allowed_domains.is_empty() {
        let domain = verified.and_then(|e| e.rsplit_once('@')).map(|(_, d)| d);
        // Google: a consumer account may have a verified address at any
        // domain; only a Workspace account of that domain (`hd`) is its.
        let domain = match cfg.kind {
            crate::config::ProviderKind::Google => {
                domain.filter(|d| identity.hosted_domain.as_deref() == Some(*d))
            }
            _ => domain,
        };
        if !domain.is_some_and(|d| {
            cfg.allowed_domains
                .iter()
                .any(|a| a.eq_ignore_ascii_case(d))
        }) {
            return Err(Refusal::Page(format!(
                "Accounts from {} are made here only for verified addresses at {}.",
                cfg.name,
                cfg.allowed_domains.join(", ")
            )));
        }
    }
    create(app, identity, verified, now)
        .await
        .map(Resolved::User)
}

/// A new account for `identity`, named by the first free of its username,
/// its address, `{provider}-{subject}`. Two first sign-ins of the same
/// upstream account racing: the second finds the first's link.
async fn create(
    app: &App,
    identity: &Identity,
    verified_email: Option<&str>,
    now: i64,
) -> Result<User, Refusal> {
    let fallback = format!("{}-{}", identity.provider, identity.subject);
    let candidates = [
        identity.username.as_deref(),
        verified_email,
        Some(&fallback),
    ];
    for username in candidates
        .into_iter()
        .flatten()
        .filter(|c| crate::admin::check_name("username", c).is_ok())
    {
        let id = crate::crypto::random_token::<16>();
        let new = NewUser {
            id: id.clone(),
            username: username.to_owned(),
            email: verified_email.map(str::to_owned),
            display_name: identity.name.clone(),
            password_hash: None,
            roles: Vec::new(),
            groups: Vec::new(),
            link: Some(FederatedLink {
                provider: identity.provider.clone(),
                subject: identity.subject.clone(),
                user_id: id.clone(),
                email: identity.email.clone(),
                created_at: now,
                last_used_at: Some(now),
            }),
        };
        let audit = Actor::local(&format!("federation:{}", identity.provider))
            .event(now, "user.create")
            .target(id)
            .detail(json!({"provider": identity.provider, "jit": true}));
        match app.store.create_user(&new, &audit).await {
            Ok(user) => return Ok(user),
            // The name is taken, or the upstream account was linked
            // meanwhile: which one, the link says.
            Err(StoreError::Conflict(_)) => {
                let linked = app
                    .store
                    .federated_user(&identity.provider, &identity.subject, now)
                    .await
                    .map_err(OAuthError::from)?;
                if let Some(user_id) = linked
                    && let Some(user) = app
                        .store
                        .user_by_id(&user_id)
                        .await
                        .map_err(OAuthError::from)?
                {
                    return Ok(user);
                }
            }
            Err(e) => return Err(OAuthError::from(e).into()),
        }
    }
    Err(Refusal::Page(
        "No username is free for this account; ask an administrator.".into(),
    ))
}

/// Makes the user a member of exactly the mapped groups their upstream
/// groups name.
pub(super) async fn sync_groups(
    app: &App,
    cfg: &ProviderConfig,
    user_id: &str,
    identity: &Identity,
    now: i64,
) -> Result<(), Refusal> {
    if cfg.group_map.is_empty() || !identity.groups_complete {
        return Ok(());
    }
    let mut mapped: Vec<String> = cfg.group_map.values().cloned().collect();
    mapped.sort();
    mapped.dedup();
    let member_of: Vec<String> = identity
        .groups
        .iter()
        .filter_map(|g| cfg.group_map.get(g).cloned())
        .collect();
    let audit = Actor::local(&format!("federation:{}", identity.provider))
        .event(now, "user.groups")
        .target(user_id.to_owned())
        .detail(json!({"provider": identity.provider, "groups": member_of}));
    app.store
        .set_federated_groups(user_id, &mapped, &member_of, &audit)
        .await
        .map_err(OAuthError::from)?;
    Ok(())
}
