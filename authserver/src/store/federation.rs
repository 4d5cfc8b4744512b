//! Accounts at upstream identity providers linked to local users, and the
//! groups a provider's sign-in maps onto.

use super::feed::FeedTx;
use super::*;
use crate::model::FederatedLink;

#[derive(sqlx::FromRow)]
struct LinkRow {
    provider: String,
    subject: String,
    user_id: String,
    email: Option<String>,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl From<LinkRow> for FederatedLink {
    fn from(r: LinkRow) -> Self {
        Self {
            provider: r.provider,
            subject: r.subject,
            user_id: r.user_id,
            email: r.email,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

impl Store {
    /// The user linked to `subject` at `provider`, its use recorded at `at`.
    #[instrument(name = "store.federated_user", skip_all)]
    pub async fn federated_user(
        &self,
        provider: &str,
        subject: &str,
        at: i64,
    ) -> Result<Option<String>, StoreError> {
        let row: Option<(String,)> = on!(self, |p| sqlx::query_as(
            "UPDATE federated_identities SET last_used_at = $3 \
             WHERE provider = $1 AND subject = $2 RETURNING user_id"
        )
        .bind(provider)
        .bind(subject)
        .bind(at)
        .fetch_optional(p)
        .await)?;
        Ok(row.map(|(id,)| id))
    }

    #[instrument(name = "store.link_identity", skip_all)]
    pub async fn link_identity(
        &self,
        link: &FederatedLink,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            link_insert!(link).execute(&mut *tx).await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || "this account at the provider".to_owned()))
    }

    /// A user's links, oldest first.
    #[instrument(name = "store.federated_links", skip_all)]
    pub async fn federated_links(&self, user_id: &str) -> Result<Vec<FederatedLink>, StoreError> {
        let rows: Vec<LinkRow> = on!(self, |p| sqlx::query_as(
            "SELECT provider, subject, user_id, email, created_at, last_used_at \
             FROM federated_identities WHERE user_id = $1 ORDER BY created_at, provider"
        )
        .bind(user_id)
        .fetch_all(p)
        .await)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Removes one of `user_id`'s links (not found if it is another's).
    #[instrument(name = "store.unlink_identity", skip_all)]
    pub async fn unlink_identity(
        &self,
        user_id: &str,
        provider: &str,
        subject: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| {
            sqlx::query(
            "DELETE FROM federated_identities WHERE user_id = $1 AND provider = $2 AND subject = $3"
        )
        .bind(user_id)
        .bind(provider)
        .bind(subject)
        .execute(&mut *tx)
        .await
        }))?;
        found(changed, || format!("link to `{provider}`"))
    }

    /// Whether a local user has this email address (any case).
    #[instrument(name = "store.email_taken", skip_all)]
    pub async fn email_taken(&self, email: &str) -> Result<bool, StoreError> {
        let row: Option<(String,)> = on!(self, |p| sqlx::query_as(
            "SELECT id FROM users WHERE lower(email) = lower($1) LIMIT 1"
        )
        .bind(email)
        .fetch_optional(p)
        .await)?;
        Ok(row.is_some())
    }

    /// Makes `user_id` a member of exactly those of `mapped` (the groups a
    /// provider maps onto) that are in `member_of`, creating missing ones;
    /// other memberships are untouched. Whether anything changed.
    #[instrument(name = "store.set_federated_groups", skip_all)]
    pub async fn set_federated_groups(
        &self,
        user_id: &str,
        mapped: &[String],
        member_of: &[String],
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        let at = audit.at;
        let changed = on!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            tx.lock_feed().await?;
            let mut changed = false;
            for group in mapped {
                let key = group.to_lowercase();
                let done = if member_of.contains(group) {
                    let created = sqlx::query(
                        "INSERT INTO groups (id, name, name_key, created_at, updated_at) VALUES ($1, $1, $2, $3, $3) \
                         ON CONFLICT (name_key) DO NOTHING",
                    )
                    .bind(group)
                    .bind(&key)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                    if created.rows_affected() == 1 {
                        tx.emit_group(at, group).await?;
                    }
                    sqlx::query(
                        "INSERT INTO group_members (group_id, user_id) SELECT id, $2 FROM groups WHERE name_key = $1 \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&key)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                } else {
                    sqlx::query(
                        "DELETE FROM group_members WHERE user_id = $2 \
                         AND group_id IN (SELECT id FROM groups WHERE name_key = $1)",
                    )
                    .bind(&key)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?
                };
                changed |= done.rows_affected() > 0;
            }
            if changed {
                audit_insert!(audit).execute(&mut *tx).await?;
                tx.emit_user(at, user_id).await?;
            }
            tx.commit().await.map(|()| changed)
        }
        .await
        })?;
        if changed {
            self.changed();
        }
        Ok(changed)
    }
}
