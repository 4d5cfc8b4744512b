//! What each user has allowed each client.

use super::*;

impl Store {
    /// The scopes the user has already granted the client.
    #[instrument(name = "store.consent", skip_all)]
    pub async fn consent(&self, user_id: &str, client_id: &str) -> Result<Vec<String>, StoreError> {
        let row: Option<(String,)> = on!(self, |p| sqlx::query_as(
            "SELECT scopes FROM consents WHERE user_id = $1 AND client_id = $2"
        )
        .bind(user_id)
        .bind(client_id)
        .fetch_optional(p)
        .await)?;
        Ok(row
            .map(|(s,)| {
                s.split(' ')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Remembers a grant; the stored scopes become the union of old and new.
    #[instrument(name = "store.grant_consent", skip_all)]
    pub async fn grant_consent(
        &self,
        user_id: &str,
        client_id: &str,
        scopes: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let mut all = self.consent(user_id, client_id).await?;
        all.extend(scopes.iter().cloned());
        all.sort();
        all.dedup();
        let joined = all.join(" ");
        on!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO consents (user_id, client_id, scopes, granted_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id, client_id) DO UPDATE SET scopes = excluded.scopes, granted_at = excluded.granted_at",
            )
            .bind(user_id)
            .bind(client_id)
            .bind(&joined)
            .bind(audit.at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await
        })?;
        Ok(())
    }
}
