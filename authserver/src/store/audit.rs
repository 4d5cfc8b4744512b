//! The audit log: events written with the change they record, read newest first.

use super::rows::AuditRow;
use super::*;

impl Store {
    /// Records an event that changes nothing else (a login, a token issued).
    #[instrument(name = "store.audit", skip_all)]
    pub async fn audit(&self, event: &AuditEvent) -> Result<(), StoreError> {
        on!(self, |p| audit_insert!(event).execute(p).await.map(|_| ()))?;
        Ok(())
    }

    /// Records several events in one transaction (group commit).
    #[instrument(name = "store.audit_all", skip_all)]
    pub async fn audit_all(&self, events: &[&AuditEvent]) -> Result<(), StoreError> {
        // Multi-row inserts: a statement per event would cost the database
        // a round trip each. 256 rows × 8 binds stays under both backends'
        // parameter limits.
        on!(self, |p| {
            async {
            let mut tx = p.begin().await?;
            for chunk in events.chunks(256) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO audit_events (at, actor, action, target, source_ip, client_id, outcome, detail) ",
                );
                insert.push_values(chunk, |mut row, e| {
                    row.push_bind(e.at)
                        .push_bind(e.actor.clone())
                        .push_bind(e.action.clone())
                        .push_bind(e.target.clone())
                        .push_bind(e.source_ip.clone())
                        .push_bind(e.client_id.clone())
                        .push_bind(e.outcome.clone())
                        .push_bind(e.detail.to_string());
                });
                insert.build().execute(&mut *tx).await?;
            }
            tx.commit().await
        }
        .await
        })?;
        Ok(())
    }

    /// The newest events first.
    #[instrument(name = "store.audit_events", skip_all)]
    pub async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        let rows: Vec<AuditRow> = on!(self, |p| sqlx::query_as(
            "SELECT at, actor, action, target, source_ip, client_id, outcome, detail \
             FROM audit_events ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(p)
        .await)?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }

    /// The newest sign-in events of one user (password and second-factor
    /// steps, successful or not), for the account page.
    #[instrument(name = "store.sign_ins", skip_all)]
    pub async fn sign_ins(&self, user_id: &str, limit: i64) -> Result<Vec<AuditEvent>, StoreError> {
        let rows: Vec<AuditRow> = on!(self, |p| sqlx::query_as(
            "SELECT at, actor, action, target, source_ip, client_id, outcome, detail \
             FROM audit_events WHERE target = $1 AND action LIKE 'login.%' \
             ORDER BY id DESC LIMIT $2",
        )
        .bind(user_id)
        .bind(limit)
        .fetch_all(p)
        .await)?;
        rows.into_iter().map(AuditRow::into_event).collect()
    }
}
