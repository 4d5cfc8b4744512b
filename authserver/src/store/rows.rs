//! Rows as both backends return them, and their conversion to the model.

use crate::model::{
    AuditEvent, Client, ClientAuth, FactorKind, KeyState, MfaPolicy, SecondFactor, StoredKey, User,
};

use super::StoreError;

fn list(column: &str, text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text).map_err(|_| StoreError::Corrupt(column.to_owned()))
}

fn policy(column: &str, text: &str) -> Result<MfaPolicy, StoreError> {
    MfaPolicy::parse(text).ok_or_else(|| StoreError::Corrupt(format!("{column} `{text}`")))
}

#[derive(sqlx::FromRow)]
pub(super) struct UserRow {
    pub id: String,
    username: String,
    email: Option<String>,
    display_name: Option<String>,
    password_hash: Option<String>,
    roles: String,
    disabled: bool,
    mfa: String,
    created_at: i64,
    updated_at: i64,
}

impl UserRow {
    pub fn into_user(self, groups: Vec<String>) -> Result<User, StoreError> {
        Ok(User {
            roles: list("users.roles", &self.roles)?,
            id: self.id,
            username: self.username,
            email: self.email,
            display_name: self.display_name,
            password_hash: self.password_hash,
            groups,
            disabled: self.disabled,
            mfa: policy("users.mfa", &self.mfa)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    id: String,
    name: String,
    secret_digest: Option<Vec<u8>>,
    auth_method: String,
    redirect_uris: String,
    post_logout_redirect_uris: String,
    grant_types: String,
    scopes: String,
    jwks: Option<String>,
    require_consent: bool,
    introspect: bool,
    mfa: String,
    created_at: i64,
    backchannel_logout_uri: Option<String>,
}

impl ClientRow {
    pub fn into_client(self) -> Result<Client, StoreError> {
        Ok(Client {
            auth_method: ClientAuth::from_stored(&self.auth_method)?,
            redirect_uris: list("clients.redirect_uris", &self.redirect_uris)?,
            post_logout_redirect_uris: list(
                "clients.post_logout_redirect_uris",
                &self.post_logout_redirect_uris,
            )?,
            grant_types: list("clients.grant_types", &self.grant_types)?,
            scopes: list("clients.scopes", &self.scopes)?,
            id: self.id,
            name: self.name,
            secret_digest: self.secret_digest,
            jwks: self.jwks,
            require_consent: self.require_consent,
            introspect: self.introspect,
            backchannel_logout_uri: self.backchannel_logout_uri,
            mfa: policy("clients.mfa", &self.mfa)?,
            created_at: self.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct KeyRow {
    kid: String,
    alg: String,
    private_key: Vec<u8>,
    public_jwk: String,
    state: String,
    created_at: i64,
    activated_at: Option<i64>,
    retired_at: Option<i64>,
}

impl KeyRow {
    pub fn into_key(self) -> Result<StoredKey, StoreError> {
        Ok(StoredKey {
            state: KeyState::parse(&self.state).ok_or_else(|| {
                StoreError::Corrupt(format!("signing_keys.state `{}`", self.state))
            })?,
            kid: self.kid,
            alg: self.alg,
            sealed_private_key: self.private_key,
            public_jwk: self.public_jwk,
            created_at: self.created_at,
            activated_at: self.activated_at,
            retired_at: self.retired_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct AuditRow {
    at: i64,
    actor: String,
    action: String,
    target: Option<String>,
    source_ip: Option<String>,
    client_id: Option<String>,
    outcome: String,
    detail: String,
}

impl AuditRow {
    pub fn into_event(self) -> Result<AuditEvent, StoreError> {
        Ok(AuditEvent {
            detail: serde_json::from_str(&self.detail)
                .map_err(|_| StoreError::Corrupt("audit_events.detail".into()))?,
            at: self.at,
            actor: self.actor,
            action: self.action,
            target: self.target,
            source_ip: self.source_ip,
            client_id: self.client_id,
            outcome: self.outcome,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct FactorRow {
    id: String,
    user_id: String,
    kind: String,
    label: String,
    secret: Option<Vec<u8>>,
    data: String,
    credential_id: Option<String>,
    last_step: i64,
    created_at: i64,
    last_used_at: Option<i64>,
}

impl FactorRow {
    pub fn into_factor(self) -> Result<SecondFactor, StoreError> {
        Ok(SecondFactor {
            kind: FactorKind::parse(&self.kind).ok_or_else(|| {
                StoreError::Corrupt(format!("second_factors.kind `{}`", self.kind))
            })?,
            id: self.id,
            user_id: self.user_id,
            label: self.label,
            sealed_secret: self.secret,
            data: self.data,
            credential_id: self.credential_id,
            last_step: self.last_step,
            created_at: self.created_at,
            last_used_at: self.last_used_at,
        })
    }
}
