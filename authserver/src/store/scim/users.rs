//! SCIM users: the sign-in's columns (`username`, `email`, `roles`, …)
//! kept in step with the resource, the rest in `profile`.

use super::*;
use crate::scim::resource::{UserDoc, UserRecord};

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    username: String,
    display_name: Option<String>,
    disabled: bool,
    external_id: Option<String>,
    profile: Json<Value>,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

macro_rules! scim_user_columns {
    () => {
        "id, username, display_name, disabled, external_id, profile, created_at, updated_at, version"
    };
}

fn username_key(name: &str) -> String {
    name.trim().to_lowercase()
}

/// The profile column: the resource's other attributes, and `active` as
/// SCIM set it (null when it is not set).
fn stored_profile(doc: &UserDoc) -> serde_json::Map<String, Value> {
    let mut p = doc.profile.clone();
    p.insert("active".into(), doc.active.map_or(Value::Null, Value::Bool));
    p
}

impl Store {
    /// Users by id, in the order given (missing ones left out), each with
    /// its groups, direct and through nested groups.
    #[instrument(name = "store.scim_users_by_id", skip_all)]
    pub async fn scim_users_by_id(&self, ids: &[String]) -> Result<Vec<UserRecord>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list = placeholders(0, ids.len());
        let rows_sql = format!(
            concat!(
                "SELECT ",
                scim_user_columns!(),
                " FROM users WHERE id IN ({})"
            ),
            list
        );
        let groups_sql = format!(
            "WITH RECURSIVE ug(user_id, id, direct) AS (\
             SELECT user_id, group_id, CAST(1 AS BIGINT) FROM group_members WHERE user_id IN ({list}) \
             UNION SELECT ug.user_id, c.parent_id, CAST(0 AS BIGINT) FROM group_children c JOIN ug ON c.child_id = ug.id) \
             SELECT ug.user_id, g.id, g.name, MAX(ug.direct) FROM ug JOIN groups g ON g.id = ug.id \
             GROUP BY ug.user_id, g.id, g.name ORDER BY g.name"
        );
        let rows: Vec<Row> = on!(self, |p| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(rows_sql.clone()));
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })?;
        let memberships: Vec<(String, String, String, i64)> = on!(self, |p| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(groups_sql.clone()));
            for id in ids {
                q = q.bind(id);
            }
            q.fetch_all(p).await
        })?;
        let mut by_id: std::collections::HashMap<String, Row> =
            rows.into_iter().map(|r| (r.id.clone(), r)).collect();
        Ok(ids
            .iter()
            .filter_map(|id| by_id.remove(id))
            .map(|r| {
                let groups = memberships
                    .iter()
                    .filter(|(u, ..)| *u == r.id)
                    .map(|(_, gid, name, direct)| (gid.clone(), name.clone(), *direct == 1))
                    .collect();
                let mut profile = profile_of(r.profile);
                // `active` as SCIM set it: a bool, or null once removed;
                // absent for users made elsewhere, where the flag says.
                let active = match profile.remove("active") {
                    Some(Value::Bool(b)) => Some(b),
                    Some(_) => None,
                    None => Some(!r.disabled),
                };
                UserRecord {
                    doc: UserDoc {
                        user_name: r.username,
                        external_id: r.external_id,
                        display_name: r.display_name,
                        active,
                        password: None,
                        profile,
                    },
                    id: r.id,
                    groups,
                    created_at: r.created_at,
                    updated_at: r.updated_at,
                    version: r.version,
                }
            })
            .collect())
    }

    #[instrument(name = "store.scim_user", skip_all)]
    pub async fn scim_user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.scim_users_by_id(&[id.to_owned()]).await?.pop())
    }

    /// A page of users matching `q`, and how many match in all.
    #[instrument(name = "store.scim_users", skip_all)]
    pub async fn scim_users(&self, q: &ScimQuery) -> Result<(i64, Vec<UserRecord>), StoreError> {
        let (total, ids) = self.page(Resource::User, q).await?;
        Ok((total, self.scim_users_by_id(&ids).await?))
    }

    /// Creates user `id` from `doc` (with the password's hash, if given).
    #[instrument(name = "store.scim_create_user", skip_all)]
    pub async fn scim_create_user(
        &self,
        id: &str,
        doc: &UserDoc,
        password_hash: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            sqlx::query(
                "INSERT INTO users (id, username, username_key, email, display_name, password_hash, roles, \
                 disabled, external_id, profile, version, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 1, $11, $11)",
            )
            .bind(id)
            .bind(&doc.user_name)
            .bind(username_key(&doc.user_name))
            .bind(doc.email())
            .bind(&doc.display_name)
            .bind(password_hash)
            .bind(json_list(&doc.roles()))
            .bind(!doc.may_sign_in())
            .bind(&doc.external_id)
            .bind(Json(stored_profile(doc)))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.emit_user(at, id).await?;
            if !doc.may_sign_in() {
                tx.user_access(at, id, false).await?;
            }
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("userName `{}`", doc.user_name)))?;
        self.changed();
        Ok(())
    }

    /// Replaces user `id` with `doc` (its password too when a hash is
    /// given), if its version is still `if_version`. Returns whether the
    /// user was active before.
    #[instrument(name = "store.scim_replace_user", skip_all)]
    pub async fn scim_replace_user(
        &self,
        id: &str,
        doc: &UserDoc,
        password_hash: Option<&str>,
        if_version: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let before: Option<(bool, i64)> =
                sqlx::query_as("SELECT disabled, version FROM users WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some((was_disabled, version)) = before else {
                return Ok(Err(StoreError::NotFound(format!("user `{id}`"))));
            };
            if if_version.is_some_and(|v| v != version) {
                return Ok(Err(StoreError::Stale(STALE.into())));
            }
            sqlx::query(
                "UPDATE users SET username = $2, username_key = $3, email = $4, display_name = $5, \
                 password_hash = COALESCE($6, password_hash), roles = $7, disabled = $8, \
                 external_id = $9, profile = $10, version = version + 1, updated_at = $11 WHERE id = $1",
            )
            .bind(id)
            .bind(&doc.user_name)
            .bind(username_key(&doc.user_name))
            .bind(doc.email())
            .bind(&doc.display_name)
            .bind(password_hash)
            .bind(json_list(&doc.roles()))
            .bind(!doc.may_sign_in())
            .bind(&doc.external_id)
            .bind(Json(stored_profile(doc)))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.emit_user(at, id).await?;
            if was_disabled == doc.may_sign_in() {
                tx.user_access(at, id, doc.may_sign_in()).await?;
            }
            tx.commit().await.map(|()| Ok(!was_disabled))
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("userName `{}`", doc.user_name)))?
        .inspect(|_| self.changed())
    }

    /// Deletes user `id` if its version is still `if_version`; its groups
    /// change version, its factors and consents go with it.
    #[instrument(name = "store.scim_delete_user", skip_all)]
    pub async fn scim_delete_user(
        &self,
        id: &str,
        if_version: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let version: Option<(i64,)> = sqlx::query_as("SELECT version FROM users WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let Some((version,)) = version else {
                return Ok(Err(StoreError::NotFound(format!("user `{id}`"))));
            };
            if if_version.is_some_and(|v| v != version) {
                return Ok(Err(StoreError::Stale(STALE.into())));
            }
            sqlx::query(
                "UPDATE groups SET version = version + 1, updated_at = $2 \
                 WHERE id IN (SELECT group_id FROM group_members WHERE user_id = $1)",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.emit_user(at, id).await?;
            tx.user_access(at, id, false).await?;
            tx.commit().await.map(|()| Ok(()))
        }
        .await)?
        .inspect(|()| self.changed())
    }
}
