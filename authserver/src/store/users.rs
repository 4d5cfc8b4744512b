//! Users: accounts, their groups and roles, passwords and the disabled flag.

use super::feed::FeedTx;
use super::rows::UserRow;
use super::*;
use crate::model::{MfaPolicy, User};

/// Changes to a user applied together; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserChange<'a> {
    pub password_hash: Option<&'a str>,
    pub disabled: Option<bool>,
    pub mfa: Option<MfaPolicy>,
}

/// A user to create.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub password_hash: Option<String>,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    /// The upstream account a first federated sign-in creates it for,
    /// linked in the same transaction.
    pub link: Option<crate::model::FederatedLink>,
}

// Column lists as macros so queries stay `&'static str` (sqlx refuses
// dynamically built SQL).
macro_rules! user_columns {
    () => {
        "id, username, email, display_name, password_hash, roles, disabled, mfa, created_at, updated_at"
    };
}

/// Usernames are unique and looked up without regard to case.
fn username_key(username: &str) -> String {
    username.trim().to_lowercase()
}

impl Store {
    #[instrument(name = "store.create_user", skip_all)]
    pub async fn create_user(&self, new: &NewUser, audit: &AuditEvent) -> Result<User, StoreError> {
        let at = audit.at;
        let key = username_key(&new.username);
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            sqlx::query(
                "INSERT INTO users (id, username, username_key, email, display_name, password_hash, roles, disabled, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, FALSE, $8, $8)",
            )
            .bind(&new.id)
            .bind(new.username.trim())
            .bind(&key)
            .bind(&new.email)
            .bind(&new.display_name)
            .bind(&new.password_hash)
            .bind(json_list(&new.roles))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            for group in &new.groups {
                let created = sqlx::query(
                    "INSERT INTO groups (id, name, name_key, created_at, updated_at) VALUES ($1, $1, $2, $3, $3) \
                     ON CONFLICT (name_key) DO NOTHING",
                )
                .bind(group)
                .bind(group.to_lowercase())
                .bind(at)
                .execute(&mut *tx)
                .await?;
                if created.rows_affected() == 1 {
                    tx.emit_group(at, group).await?;
                }
                sqlx::query(
                    "INSERT INTO group_members (group_id, user_id) SELECT id, $2 FROM groups WHERE name_key = $1",
                )
                .bind(group.to_lowercase())
                .bind(&new.id)
                .execute(&mut *tx)
                .await?;
            }
            if let Some(link) = &new.link {
                link_insert!(link).execute(&mut *tx).await?;
            }
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.emit_user(at, &new.id).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("user `{}`", new.username.trim())))?;
        self.changed();
        self.user_by_id(&new.id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("user `{}`", new.id)))
    }

    #[instrument(name = "store.user_by_id", skip_all)]
    pub async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        let row: Option<UserRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        self.with_groups(row).await
    }

    #[instrument(name = "store.user_by_username", skip_all)]
    pub async fn user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE username_key = $1"
        );
        let key = username_key(username);
        let row: Option<UserRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(&key)
            .fetch_optional(p)
            .await)?;
        self.with_groups(row).await
    }

    /// Users ordered by username, a page at a time.
    #[instrument(name = "store.users", skip_all)]
    pub async fn users(&self, offset: i64, limit: i64) -> Result<Vec<User>, StoreError> {
        let sql = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY username_key LIMIT $1 OFFSET $2"
        );
        let rows: Vec<UserRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(limit)
            .bind(offset)
            .fetch_all(p)
            .await)?;
        let mut users = Vec::with_capacity(rows.len());
        for row in rows {
            if let Some(user) = self.with_groups(Some(row)).await? {
                users.push(user);
            }
        }
        Ok(users)
    }

    async fn with_groups(&self, row: Option<UserRow>) -> Result<Option<User>, StoreError> {
        let Some(row) = row else { return Ok(None) };
        // Direct and through nested groups: the `groups` claim names both.
        let groups: Vec<(String,)> = on!(self, |p| sqlx::query_as(
            "WITH RECURSIVE ug(id) AS (SELECT group_id FROM group_members WHERE user_id = $1 \
             UNION SELECT c.parent_id FROM group_children c JOIN ug ON c.child_id = ug.id) \
             SELECT g.name FROM groups g JOIN ug ON ug.id = g.id ORDER BY g.name",
        )
        .bind(&row.id)
        .fetch_all(p)
        .await)?;
        row.into_user(groups.into_iter().map(|(g,)| g).collect())
            .map(Some)
    }

    #[instrument(name = "store.set_password", skip_all)]
    pub async fn set_password(
        &self,
        user_id: &str,
        password_hash: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1"
        )
        .bind(user_id)
        .bind(password_hash)
        .bind(audit.at)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("user `{user_id}`"))
    }

    #[instrument(name = "store.set_disabled", skip_all)]
    pub async fn set_disabled(
        &self,
        user_id: &str,
        disabled: bool,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let change = UserChange {
            disabled: Some(disabled),
            ..UserChange::default()
        };
        self.update_user(user_id, &change, std::slice::from_ref(audit))
            .await
    }

    /// Applies `change` (any of a new password hash, the disabled flag,
    /// the MFA policy) in one transaction with its audit events.
    #[instrument(name = "store.update_user", skip_all)]
    pub async fn update_user(
        &self,
        user_id: &str,
        change: &UserChange<'_>,
        audit: &[AuditEvent],
    ) -> Result<(), StoreError> {
        let at = audit.first().map_or(0, |a| a.at);
        let changed = on!(self, |p| async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let before: Option<(bool,)> =
                sqlx::query_as("SELECT disabled FROM users WHERE id = $1")
                    .bind(user_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let done = sqlx::query(
                "UPDATE users SET password_hash = COALESCE($2, password_hash), \
                 disabled = COALESCE($3, disabled), mfa = COALESCE($4, mfa), updated_at = $5, \
                 version = version + 1 WHERE id = $1",
            )
            .bind(user_id)
            .bind(change.password_hash)
            .bind(change.disabled)
            .bind(change.mfa.map(MfaPolicy::as_str))
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(false);
            }
            for event in audit {
                audit_insert!(event).execute(&mut *tx).await?;
            }
            if let (Some((was,)), Some(now)) = (before, change.disabled)
                && was != now
            {
                tx.emit_user(at, user_id).await?;
                tx.user_access(at, user_id, !now).await?;
            }
            tx.commit().await.map(|()| true)
        }
        .await)?;
        self.changed();
        found(changed, || format!("user `{user_id}`"))
    }

    #[instrument(name = "store.delete_user", skip_all)]
    pub async fn delete_user(&self, user_id: &str, audit: &AuditEvent) -> Result<(), StoreError> {
        self.scim_delete_user(user_id, None, audit).await
    }
}
