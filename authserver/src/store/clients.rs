//! Registered OAuth clients.

use super::rows::ClientRow;
use super::*;
use crate::model::{Client, MfaPolicy};

macro_rules! client_columns {
    () => {
        "id, name, secret_digest, auth_method, redirect_uris, post_logout_redirect_uris, \
         grant_types, scopes, jwks, require_consent, introspect, mfa, created_at, \
         backchannel_logout_uri"
    };
}

impl Store {
    #[instrument(name = "store.create_client", skip_all)]
    pub async fn create_client(
        &self,
        client: &Client,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        on!(self, |p| async {
            let mut tx = p.begin().await?;
            sqlx::query(
                "INSERT INTO clients (id, name, secret_digest, auth_method, redirect_uris, post_logout_redirect_uris, \
                 grant_types, scopes, jwks, require_consent, introspect, mfa, created_at, backchannel_logout_uri) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            )
            .bind(&client.id)
            .bind(&client.name)
            .bind(&client.secret_digest)
            .bind(client.auth_method.as_str())
            .bind(json_list(&client.redirect_uris))
            .bind(json_list(&client.post_logout_redirect_uris))
            .bind(json_list(&client.grant_types))
            .bind(json_list(&client.scopes))
            .bind(&client.jwks)
            .bind(client.require_consent)
            .bind(client.introspect)
            .bind(client.mfa.as_str())
            .bind(client.created_at)
            .bind(&client.backchannel_logout_uri)
            .execute(&mut *tx)
            .await?;
            audit_insert!(audit).execute(&mut *tx).await?;
            tx.commit().await
        }
        .await)
        .map_err(|e| unique_violation(e, || format!("client `{}`", client.id)))
    }

    #[instrument(name = "store.client", skip_all)]
    pub async fn client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        let sql = concat!("SELECT ", client_columns!(), " FROM clients WHERE id = $1");
        let row: Option<ClientRow> = on!(self, |p| sqlx::query_as(sql)
            .bind(id)
            .fetch_optional(p)
            .await)?;
        row.map(ClientRow::into_client).transpose()
    }

    #[instrument(name = "store.clients", skip_all)]
    pub async fn clients(&self) -> Result<Vec<Client>, StoreError> {
        let sql = concat!("SELECT ", client_columns!(), " FROM clients ORDER BY id");
        let rows: Vec<ClientRow> = on!(self, |p| sqlx::query_as(sql).fetch_all(p).await)?;
        rows.into_iter().map(ClientRow::into_client).collect()
    }

    #[instrument(name = "store.set_client_secret", skip_all)]
    pub async fn set_client_secret(
        &self,
        client_id: &str,
        digest: &[u8],
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE clients SET secret_digest = $2 WHERE id = $1"
        )
        .bind(client_id)
        .bind(digest)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("client `{client_id}`"))
    }

    #[instrument(name = "store.set_client_mfa", skip_all)]
    pub async fn set_client_mfa(
        &self,
        client_id: &str,
        mfa: MfaPolicy,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE clients SET mfa = $2 WHERE id = $1"
        )
        .bind(client_id)
        .bind(mfa.as_str())
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("client `{client_id}`"))
    }

    /// Sets (or, with `None`, clears) where the client hears of ended
    /// sessions.
    #[instrument(name = "store.set_client_backchannel_logout", skip_all)]
    pub async fn set_client_backchannel_logout(
        &self,
        client_id: &str,
        uri: Option<&str>,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "UPDATE clients SET backchannel_logout_uri = $2 WHERE id = $1"
        )
        .bind(client_id)
        .bind(uri)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("client `{client_id}`"))
    }

    #[instrument(name = "store.delete_client", skip_all)]
    pub async fn delete_client(
        &self,
        client_id: &str,
        audit: &AuditEvent,
    ) -> Result<(), StoreError> {
        let changed = on!(self, |p| changed_with_audit!(p, audit, |tx| sqlx::query(
            "DELETE FROM clients WHERE id = $1"
        )
        .bind(client_id)
        .execute(&mut *tx)
        .await))?;
        found(changed, || format!("client `{client_id}`"))
    }
}
