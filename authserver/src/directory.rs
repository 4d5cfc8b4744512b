//! Provisioning the directory over SCIM: creating, replacing, patching and
//! deleting users and groups, and what that means beyond the rows. A
//! password is hashed; a user made inactive or deleted is signed out at
//! once (browser sessions end, refresh-token families are revoked, and
//! the change feed tells every gateway); every write is audited with the
//! provisioning client as the actor. Domain logic: `now` is a parameter.

use serde_json::{Value, json};

use crate::app::App;
use crate::crypto::random_token;
use crate::login::mask;
use crate::model::{Actor, AuditEvent};
use crate::scim::ScimError;
use crate::scim::patch::apply_patch;
use crate::scim::resource::{self, GroupRecord, UserDoc, UserRecord};
use crate::scim::schema::Resource;
use crate::store::{ScimQuery, StoreError};

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::not_found(format!("{what} not found")),
            StoreError::Conflict(what) => Self::uniqueness(format!("{what} already exists")),
            StoreError::Invalid(what) => Self::invalid_value(what),
            StoreError::Stale(what) => Self::precondition(what),
            StoreError::Corrupt(what) => {
                tracing::error!(record = %what, "a stored record is corrupt");
                Self::internal("a stored record is corrupt")
            }
            other => {
                tracing::error!(error = %other, "SCIM store failure");
                Self::unavailable("the directory cannot answer now; try again")
            }
        }
    }
}

/// How often a PATCH without `If-Match` is retried when another write
/// changed the resource between its read and its write.
const PATCH_TRIES: usize = 3;

fn audited(who: &Actor<'_>, now: i64, action: &str, target: &str) -> AuditEvent {
    who.event(now, action).target(target.to_owned())
}

/// A userName sign-in can use: no control characters, not too long.
fn check_user_name(doc: &UserDoc) -> Result<(), ScimError> {
    let name = &doc.user_name;
    if name.chars().count() > 256 || name.chars().any(char::is_control) {
        return Err(ScimError::invalid_value(
            "`userName` must be at most 256 characters, without control characters",
        ));
    }
    Ok(())
}

async fn password_hash(app: &App, doc: &UserDoc) -> Result<Option<String>, ScimError> {
    let Some(password) = doc.password.clone() else {
        return Ok(None);
    };
    crate::admin::hash_password(app, password)
        .await
        .map(Some)
        .map_err(|e| ScimError::invalid_value(format!("`password`: {e}")))
}

/// A user who may no longer sign in is signed out everywhere: what the
/// database did not already end (sessions and refresh families live in
/// the ephemeral store).
pub(crate) async fn sign_out(app: &App, user_id: &str, now: i64) {
    match crate::session::end_all(&app.ephemeral, user_id, None).await {
        Ok(ended) => crate::logout::ended(app, &ended, now).await,
        Err(e) => tracing::warn!(error = %e, "sessions of a deactivated user not ended"),
    }
    if let Err(e) = crate::issue::end_refresh_families(app, user_id, now).await {
        tracing::warn!(error = %e, "refresh tokens of a deactivated user not revoked");
    }
}

fn missing(resource: Resource, id: &str) -> ScimError {
    ScimError::not_found(format!("{} `{id}` not found", resource.name()))
}

pub async fn user(app: &App, id: &str) -> Result<UserRecord, ScimError> {
    app.store
        .scim_user(id)
        .await?
        .ok_or_else(|| missing(Resource::User, id))
}

pub async fn users(app: &App, q: &ScimQuery) -> Result<(i64, Vec<UserRecord>), ScimError> {
    Ok(app.store.scim_users(q).await?)
}

pub async fn create_user(
    app: &App,
    who: &Actor<'_>,
    body: &Value,
    now: i64,
) -> Result<UserRecord, ScimError> {
    let doc = resource::user_doc(body)?;
    check_user_name(&doc)?;
    let hash = password_hash(app, &doc).await?;
    let id = random_token::<16>();
    let audit = audited(who, now, "scim.user.create", &id)
        .detail(json!({"userName": mask(&doc.user_name), "active": doc.active}));
    app.store
        .scim_create_user(&id, &doc, hash.as_deref(), &audit)
        .await?;
    user(app, &id).await
}

/// Replaces user `id` with `doc` (a PUT, or a PATCH's result).
async fn store_user(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    doc: &UserDoc,
    if_version: Option<i64>,
    action: &str,
    now: i64,
) -> Result<UserRecord, ScimError> {
    check_user_name(doc)?;
    let hash = password_hash(app, doc).await?;
    let audit = audited(who, now, action, id)
        .detail(json!({"userName": mask(&doc.user_name), "active": doc.active}));
    let was_active = app
        .store
        .scim_replace_user(id, doc, hash.as_deref(), if_version, &audit)
        .await?;
    if was_active && !doc.may_sign_in() {
        sign_out(app, id, now).await;
    }
    user(app, id).await
}

pub async fn replace_user(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    body: &Value,
    if_version: Option<i64>,
    now: i64,
) -> Result<UserRecord, ScimError> {
    let doc = resource::user_doc(body)?;
    store_user(app, who, id, &doc, if_version, "scim.user.replace", now).await
}

pub async fn patch_user(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    body: &Value,
    if_version: Option<i64>,
    now: i64,
) -> Result<UserRecord, ScimError> {
    let mut tries = 0;
    loop {
        let current = user(app, id).await?;
        if if_version.is_some_and(|v| v != current.version) {
            return Err(ScimError::precondition(crate::store::scim::STALE));
        }
        let mut doc = resource::user_json(&current, "");
        apply_patch(Resource::User, &mut doc, body)?;
        let next = resource::user_doc(&doc)?;
        match store_user(
            app,
            who,
            id,
            &next,
            Some(current.version),
            "scim.user.patch",
            now,
        )
        .await
        {
            Err(e) if e.status == 412 && if_version.is_none() && tries + 1 < PATCH_TRIES => {
                tries += 1;
            }
            done => return done,
        }
    }
}

pub async fn delete_user(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    if_version: Option<i64>,
    now: i64,
) -> Result<(), ScimError> {
    let audit = audited(who, now, "scim.user.delete", id);
    app.store.scim_delete_user(id, if_version, &audit).await?;
    sign_out(app, id, now).await;
    Ok(())
}

pub async fn group(app: &App, id: &str, with_members: bool) -> Result<GroupRecord, ScimError> {
    app.store
        .scim_group(id, with_members)
        .await?
        .ok_or_else(|| missing(Resource::Group, id))
}

pub async fn groups(
    app: &App,
    q: &ScimQuery,
    with_members: bool,
) -> Result<(i64, Vec<GroupRecord>), ScimError> {
    Ok(app.store.scim_groups(q, with_members).await?)
}

pub async fn create_group(
    app: &App,
    who: &Actor<'_>,
    body: &Value,
    now: i64,
) -> Result<GroupRecord, ScimError> {
    let doc = resource::group_doc(body)?;
    let id = random_token::<16>();
    let audit = audited(who, now, "scim.group.create", &id)
        .detail(json!({"displayName": doc.display_name, "members": doc.members.len()}));
    app.store.scim_create_group(&id, &doc, &audit).await?;
    group(app, &id, true).await
}

pub async fn replace_group(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    body: &Value,
    if_version: Option<i64>,
    now: i64,
) -> Result<GroupRecord, ScimError> {
    let doc = resource::group_doc(body)?;
    let audit = audited(who, now, "scim.group.replace", id)
        .detail(json!({"displayName": doc.display_name, "members": doc.members.len()}));
    app.store
        .scim_replace_group(id, &doc, if_version, &audit)
        .await?;
    group(app, id, true).await
}

pub async fn patch_group(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    body: &Value,
    if_version: Option<i64>,
    now: i64,
) -> Result<GroupRecord, ScimError> {
    let mut tries = 0;
    loop {
        let current = group(app, id, true).await?;
        if if_version.is_some_and(|v| v != current.version) {
            return Err(ScimError::precondition(crate::store::scim::STALE));
        }
        let mut doc = resource::group_json(&current, "");
        apply_patch(Resource::Group, &mut doc, body)?;
        let next = resource::group_doc(&doc)?;
        let audit = audited(who, now, "scim.group.patch", id)
            .detail(json!({"displayName": next.display_name, "members": next.members.len()}));
        match app
            .store
            .scim_replace_group(id, &next, Some(current.version), &audit)
            .await
        {
            Err(StoreError::Stale(_)) if if_version.is_none() && tries + 1 < PATCH_TRIES => {
                tries += 1;
            }
            Err(e) => return Err(e.into()),
            Ok(()) => return group(app, id, true).await,
        }
    }
}

pub async fn delete_group(
    app: &App,
    who: &Actor<'_>,
    id: &str,
    if_version: Option<i64>,
    now: i64,
) -> Result<(), ScimError> {
    let audit = audited(who, now, "scim.group.delete", id);
    Ok(app.store.scim_delete_group(id, if_version, &audit).await?)
}
