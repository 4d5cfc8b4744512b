//! Bearer tokens for services that are not OAuth clients (a provisioning
//! connector, a feed follower), made by the admin CLI: kept as keyed
//! digests, named, each with its scopes.

use super::*;

/// A service token as stored (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceToken {
    pub id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: i64,
}

impl Store {
    #[instrument(name = "store.add_service_token", skip_all)]
    pub async fn add_service_token(
        &self,
        token: &ServiceToken,
        digest: &[u8],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO service_tokens (id, name, digest, scopes, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&token.id)
            .bind(&token.name)
            .bind(digest)
            .bind(json_list(&token.scopes))
            .bind(token.created_at)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("service token `{}`", token.name)))
    }

    /// The token whose keyed digest this is.
    #[instrument(name = "store.service_token", skip_all)]
    pub async fn service_token(&self, digest: &[u8]) -> Result<Option<ServiceToken>, StoreError> {
        let row: Option<(String, String, String, i64)> = on!(self, |p| sqlx::query_as(
            "SELECT id, name, scopes, created_at FROM service_tokens WHERE digest = $1"
        )
        .bind(digest)
        .fetch_optional(p)
        .await)?;
        row.map(|(id, name, scopes, created_at)| {
            Ok(ServiceToken {
                scopes: serde_json::from_str(&scopes)
                    .map_err(|_| StoreError::Corrupt(format!("service token `{name}`")))?,
                id,
                name,
                created_at,
            })
        })
        .transpose()
    }

    #[instrument(name = "store.service_tokens", skip_all)]
    pub async fn service_tokens(&self) -> Result<Vec<ServiceToken>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = on!(self, |p| sqlx::query_as(
            "SELECT id, name, scopes, created_at FROM service_tokens ORDER BY name"
        )
        .fetch_all(p)
        .await)?;
        rows.into_iter()
            .map(|(id, name, scopes, created_at)| {
                Ok(ServiceToken {
                    scopes: serde_json::from_str(&scopes)
                        .map_err(|_| StoreError::Corrupt(format!("service token `{name}`")))?,
                    id,
                    name,
                    created_at,
                })
            })
            .collect()
    }

    #[instrument(name = "store.remove_service_token", skip_all)]
    pub async fn remove_service_token(
        &self,
        name: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "DELETE FROM service_tokens WHERE name = $1"
        )
        .bind(name)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("service token `{name}`"))
    }
}
