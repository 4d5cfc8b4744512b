//! Second factors and recovery codes. Single use is the database's job:
//! a TOTP step and a recovery code are spent by one conditional UPDATE, so
//! two replicas racing on the same code cannot both accept it.

use super::rows::FactorRow;
use super::*;
use crate::model::SecondFactor;

macro_rules! factor_columns {
    () => {
        "id, user_id, kind, label, secret, data, credential_id, last_step, created_at, last_used_at"
    };
}

impl Store {
    /// A user's factors, oldest first.
    #[instrument(name = "store.factors", skip_all)]
    pub async fn factors(&self, user_id: &str) -> Result<Vec<SecondFactor>, StoreError> {
        let sql = concat!(
            "SELECT ",
            factor_columns!(),
            " FROM second_factors WHERE user_id = $1 ORDER BY created_at, id"
        );
        let rows: Vec<FactorRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(user_id)
            .fetch_all(p)
            .await)?;
        rows.into_iter().map(FactorRow::into_factor).collect()
    }

    #[instrument(name = "store.add_factor", skip_all)]
    pub async fn add_factor(
        &self,
        factor: &SecondFactor,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO second_factors (id, user_id, kind, label, secret, data, credential_id, last_step, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(&factor.id)
            .bind(&factor.user_id)
            .bind(factor.kind.as_str())
            .bind(&factor.label)
            .bind(&factor.sealed_secret)
            .bind(&factor.data)
            .bind(&factor.credential_id)
            .bind(factor.last_step)
            .bind(factor.created_at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| {
            unique_violation(e, || match &factor.credential_id {
                Some(_) => "this key".to_owned(),
                None => format!("a factor named `{}`", factor.label),
            })
        })
    }

    /// The WebAuthn factor with `credential_id`, whoever it belongs to.
    #[instrument(name = "store.factor_by_credential", skip_all)]
    pub async fn factor_by_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<SecondFactor>, StoreError> {
        let sql = concat!(
            "SELECT ",
            factor_columns!(),
            " FROM second_factors WHERE credential_id = $1"
        );
        let row: Option<FactorRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(credential_id)
            .fetch_optional(p)
            .await)?;
        row.map(FactorRow::into_factor).transpose()
    }

    /// Records a use of factor `id` and, when given, its new public state
    /// (a WebAuthn counter or backup flag that moved).
    #[instrument(name = "store.factor_used", skip_all)]
    pub async fn factor_used(
        &self,
        id: &str,
        data: Option<&str>,
        at: i64,
    ) -> Result<(), StoreError> {
        on!(self, |p| sqlx::query(
            "UPDATE second_factors SET data = COALESCE($2, data), last_used_at = $3 WHERE id = $1"
        )
        .bind(id)
        .bind(data)
        .bind(at)
        .execute(p)
        .await
        .map(|_| ()))?;
        Ok(())
    }

    #[instrument(name = "store.rename_factor", skip_all)]
    pub async fn rename_factor(
        &self,
        user_id: &str,
        id: &str,
        label: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE second_factors SET label = $3 WHERE user_id = $1 AND id = $2"
        )
        .bind(user_id)
        .bind(id)
        .bind(label)
        .execute(&mut *tx)
        .await))
        .map_err(|e| unique_violation(e, || format!("a factor named `{label}`")))?;
        found(changed, || format!("factor `{id}`"))
    }

    #[instrument(name = "store.remove_factor", skip_all)]
    pub async fn remove_factor(
        &self,
        user_id: &str,
        id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| async {
            let mut tx = p.begin().await?;
            let removed = sqlx::query("DELETE FROM second_factors WHERE user_id = $1 AND id = $2")
                .bind(user_id)
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if removed == 0 {
                return Ok::<bool, sqlx::Error>(false);
            }
            // Recovery codes stand in for a factor: with the last one gone,
            // they go too.
            sqlx::query(
                "DELETE FROM recovery_codes WHERE user_id = $1 \
                 AND NOT EXISTS (SELECT 1 FROM second_factors WHERE user_id = $1)",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await.map(|()| true)
        }
        .await)?;
        found(changed, || format!("factor `{id}`"))
    }

    /// An administrator's reset: every factor and recovery code of the
    /// user, gone in one transaction with its audit event. Returns how
    /// many factors there were.
    #[instrument(name = "store.reset_factors", skip_all)]
    pub async fn reset_factors(
        &self,
        user_id: &str,
        audit: &AuditEvent,
    ) -> Result<u64, StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            let factors = sqlx::query("DELETE FROM second_factors WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await.map(|()| factors)
        }
        .await)
        .map_err(StoreError::from)
    }

    /// Spends TOTP time step `step` of factor `id`: true only if it is
    /// later than every step accepted before (RFC 6238 §5.2).
    #[instrument(name = "store.spend_totp_step", skip_all)]
    pub async fn spend_totp_step(&self, id: &str, step: i64, at: i64) -> Result<bool, StoreError> {
        let done = on!(self, |p| sqlx::query(
            "UPDATE second_factors SET last_step = $2, last_used_at = $3 \
             WHERE id = $1 AND last_step < $2"
        )
        .bind(id)
        .bind(step)
        .bind(at)
        .execute(p)
        .await
        .map(|done| done.rows_affected()))?;
        Ok(done == 1)
    }

    /// Replaces the user's recovery codes with `digests` (the old ones stop
    /// working), in one transaction with its audit event.
    #[instrument(name = "store.replace_recovery_codes", skip_all)]
    pub async fn replace_recovery_codes(
        &self,
        user_id: &str,
        digests: &[Vec<u8>],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query("DELETE FROM recovery_codes WHERE user_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            for digest in digests {
                sqlx::query(
                    "INSERT INTO recovery_codes (user_id, digest, created_at) VALUES ($1, $2, $3)",
                )
                .bind(user_id)
                .bind(digest)
                .bind(audit.at)
                .execute(&mut *tx)
                .await?;
            }
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(StoreError::from)
    }

    /// Spends the recovery code with `digest`: true if it was the user's
    /// and unused; its audit event is written in the same transaction.
    #[instrument(name = "store.spend_recovery_code", skip_all)]
    pub async fn spend_recovery_code(
        &self,
        user_id: &str,
        digest: &[u8],
        audit: &AuditEvent,
    ) -> Result<bool, StoreError> {
        Ok(on!(self, |p| changed_with_audit!(p, audit, |tx| {
            sqlx::query(
                "UPDATE recovery_codes SET used_at = $3 \
             WHERE user_id = $1 AND digest = $2 AND used_at IS NULL",
            )
            .bind(user_id)
            .bind(digest)
            .bind(audit.at)
            .execute(&mut *tx)
            .await
        }))?)
    }

    /// How many unused recovery codes the user holds.
    #[instrument(name = "store.recovery_codes_left", skip_all)]
    pub async fn recovery_codes_left(&self, user_id: &str) -> Result<i64, StoreError> {
        let (n,): (i64,) = on!(self, |p| sqlx::query_as(
            "SELECT COUNT(*) FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL"
        )
        .bind(user_id)
        .fetch_one(p)
        .await)?;
        Ok(n)
    }
}
