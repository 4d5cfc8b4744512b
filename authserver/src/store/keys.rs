//! Signing keys (sealed private halves) and their rotation.

use super::rows::KeyRow;
use super::*;
use crate::model::{KeyState, StoredKey};

macro_rules! key_columns {
    () => {
        "kid, alg, private_key, public_jwk, state, created_at, activated_at, retired_at"
    };
}

impl Store {
    #[instrument(name = "store.keys", skip_all)]
    pub async fn keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let sql = concat!(
            "SELECT ",
            key_columns!(),
            " FROM signing_keys ORDER BY created_at, kid"
        );
        let rows: Vec<KeyRow> = on!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        rows.into_iter().map(KeyRow::into_key).collect()
    }

    /// Applies a key rotation in one transaction: inserts `new` keys, moves
    /// the listed keys to their new state (each from the state before it),
    /// deletes `remove`d ones. If another rotation moved a key first,
    /// nothing is written and the error is a conflict.
    #[instrument(name = "store.rotate_keys", skip_all)]
    pub async fn rotate_keys(
        &self,
        new: &[StoredKey],
        moves: &[(String, KeyState)],
        remove: &[String],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let at = audit.at;
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            for key in new {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, private_key, public_jwk, state, created_at, activated_at, retired_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.sealed_private_key)
                .bind(&key.public_jwk)
                .bind(key.state.as_str())
                .bind(key.created_at)
                .bind(key.activated_at)
                .bind(key.retired_at)
                .execute(&mut *tx)
                .await?;
            }
            for (kid, state) in moves {
                // Each move names the state it leaves (next → active →
                // retired): a concurrent rotation that got there first
                // makes this one touch no row, and it is rolled back.
                let from = match state {
                    KeyState::Active => KeyState::Next,
                    KeyState::Retired => KeyState::Active,
                    KeyState::Next => KeyState::Next,
                };
                let done = sqlx::query(
                    "UPDATE signing_keys SET state = $2, \
                     activated_at = CASE WHEN $2 = 'active' THEN $3 ELSE activated_at END, \
                     retired_at = CASE WHEN $2 = 'retired' THEN $3 ELSE retired_at END \
                     WHERE kid = $1 AND state = $4",
                )
                .bind(kid)
                .bind(state.as_str())
                .bind(at)
                .bind(from.as_str())
                .execute(&mut *tx)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(sqlx::Error::RowNotFound);
                }
            }
            for kid in remove {
                sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
                    .bind(kid)
                    .execute(&mut *tx)
                    .await?;
            }
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| match e {
            sqlx::Error::RowNotFound => {
                StoreError::Conflict("a concurrent change to the signing keys".into())
            }
            e => unique_violation(e, || "signing key".into()),
        })
    }
}
