//! Token-signing keys: one `active` key signs; one `next` key is already in
//! the JWKS so verifiers have it before it signs; `retired` keys stay
//! published until every token they signed has expired.
//!
//! `rotate` promotes `next` to `active`, retires the old active key,
//! publishes a fresh `next` and drops retired keys past their tokens'
//! lifetime, in one transaction. Private keys are sealed with the master key
//! (bound to their `kid`) before they reach the database. A running server
//! re-reads the keys periodically, so a rotation by another instance or by
//! `authserver keys rotate` is picked up without a restart.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::json;
use tokens::{Signer, SignerError};

use crate::crypto::{CryptoError, Sealer, random_token};
use crate::model::{AuditEvent, KeyState, StoredKey};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key `{kid}`: {source}")]
    Unseal { kid: String, source: CryptoError },
    #[error("signing key `{kid}`: {source}")]
    Key { kid: String, source: SignerError },
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("no active signing key")]
    NoActiveKey,
    #[error(
        "the next key `{kid}` was published {age} s ago; verifiers may not have it yet (wait {wait} s more, or force the rotation)"
    )]
    TooSoon { kid: String, age: i64, wait: i64 },
}

/// What is signing and what is published, swapped as one value.
pub struct Published {
    pub signer: Arc<Signer>,
    /// The JWKS document, serialized once.
    pub jwks: String,
    verifiers: HashMap<String, (Algorithm, DecodingKey)>,
}

impl Published {
    /// The public key and algorithm of a published `kid`.
    pub fn verifier(&self, kid: &str) -> Option<&(Algorithm, DecodingKey)> {
        self.verifiers.get(kid)
    }
}

/// What a rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub active: String,
    pub next: String,
    pub retired: Vec<String>,
    pub removed: Vec<String>,
}

pub struct KeyRing {
    store: Store,
    sealer: Sealer,
    alg: Algorithm,
    /// How long a retired key stays published: the longest token lifetime
    /// plus verifiers' refresh slack.
    keep_retired: Duration,
    /// How long `next` must have been published before it may sign: the
    /// JWKS cache lifetime plus the other instances' reload interval.
    publish_lead: Duration,
    published: ArcSwap<Published>,
}

impl KeyRing {
    /// Loads the keys, creating the first active and next keys on a new
    /// database.
    pub async fn open(
        store: Store,
        sealer: Sealer,
        alg: Algorithm,
        keep_retired: Duration,
        publish_lead: Duration,
        now: i64,
    ) -> Result<Self, KeyError> {
        let mut stored = store.keys().await?;
        if !stored.iter().any(|k| k.state == KeyState::Active) {
            let active = new_key(&sealer, alg, KeyState::Active, now)?;
            let mut fresh = vec![active];
            if !stored.iter().any(|k| k.state == KeyState::Next) {
                fresh.push(new_key(&sealer, alg, KeyState::Next, now)?);
            }
            let audit = AuditEvent::new(now, "system", "keys.create")
                .detail(json!({"kids": fresh.iter().map(|k| &k.kid).collect::<Vec<_>>()}));
            store.rotate_keys(&fresh, &[], &[], &audit).await?;
            stored = store.keys().await?;
        }
        let published = publish(&sealer, &stored)?;
        Ok(Self {
            store,
            sealer,
            alg,
            keep_retired,
            publish_lead,
            published: ArcSwap::from_pointee(published),
        })
    }

    pub fn current(&self) -> Arc<Published> {
        self.published.load_full()
    }

    /// Re-reads the keys from the database.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let stored = self.store.keys().await?;
        self.published
            .store(Arc::new(publish(&self.sealer, &stored)?));
        Ok(())
    }

    /// Rotates; refused while `next` is younger than the publish lead,
    /// unless `force`d.
    pub async fn rotate(
        &self,
        now: i64,
        actor: crate::model::Actor<'_>,
        force: bool,
    ) -> Result<Rotation, KeyError> {
        let stored = self.store.keys().await?;
        let lead = i64::try_from(self.publish_lead.as_secs()).unwrap_or(i64::MAX);
        if let Some(next) = stored.iter().find(|k| k.state == KeyState::Next)
            && !force
            && now - next.created_at < lead
        {
            return Err(KeyError::TooSoon {
                kid: next.kid.clone(),
                age: now - next.created_at,
                wait: lead - (now - next.created_at),
            });
        }
        let fresh_next = new_key(&self.sealer, self.alg, KeyState::Next, now)?;
        let mut fresh = vec![];
        // Normally `next` has been published since the last rotation. If it
        // is missing (keys edited by hand), the new key signs at once.
        let next = match stored.iter().find(|k| k.state == KeyState::Next) {
            Some(k) => k.kid.clone(),
            None => {
                let k = new_key(&self.sealer, self.alg, KeyState::Next, now)?;
                let kid = k.kid.clone();
                fresh.push(k);
                kid
            }
        };
        let retired: Vec<String> = stored
            .iter()
            .filter(|k| k.state == KeyState::Active)
            .map(|k| k.kid.clone())
            .collect();
        let keep = i64::try_from(self.keep_retired.as_secs()).unwrap_or(i64::MAX);
        let removed: Vec<String> = stored
            .iter()
            .filter(|k| {
                k.state == KeyState::Retired
                    && k.retired_at.is_some_and(|at| at.saturating_add(keep) < now)
            })
            .map(|k| k.kid.clone())
            .collect();
        let mut moves = vec![(next.clone(), KeyState::Active)];
        moves.extend(retired.iter().map(|kid| (kid.clone(), KeyState::Retired)));
        let rotation = Rotation {
            active: next,
            next: fresh_next.kid.clone(),
            retired,
            removed,
        };
        fresh.push(fresh_next);
        let audit = actor.event(now, "keys.rotate").detail(json!({
            "active": rotation.active,
            "next": rotation.next,
            "retired": rotation.retired,
            "removed": rotation.removed,
        }));
        self.store
            .rotate_keys(&fresh, &moves, &rotation.removed, &audit)
            .await?;
        self.reload().await?;
        Ok(rotation)
    }
}

fn new_key(
    sealer: &Sealer,
    alg: Algorithm,
    state: KeyState,
    now: i64,
) -> Result<StoredKey, KeyError> {
    let kid = random_token::<12>();
    let (signer, pkcs8) = Signer::generate(alg, &kid).map_err(|source| KeyError::Key {
        kid: kid.clone(),
        source,
    })?;
    Ok(StoredKey {
        sealed_private_key: sealer.seal(&seal_context(&kid), &pkcs8),
        public_jwk: signer.jwk().to_string(),
        alg: format!("{alg:?}"),
        state,
        created_at: now,
        activated_at: (state == KeyState::Active).then_some(now),
        retired_at: None,
        kid,
    })
}

fn seal_context(kid: &str) -> String {
    format!("signing-key:{kid}")
}

fn parse_alg(kid: &str, alg: &str) -> Result<Algorithm, KeyError> {
    alg.parse().map_err(|_| KeyError::Key {
        kid: kid.to_owned(),
        source: SignerError::BadKey(Algorithm::ES256),
    })
}

fn publish(sealer: &Sealer, stored: &[StoredKey]) -> Result<Published, KeyError> {
    let active = stored
        .iter()
        .filter(|k| k.state == KeyState::Active)
        .max_by_key(|k| k.activated_at)
        .ok_or(KeyError::NoActiveKey)?;
    let pkcs8 = sealer
        .open(&seal_context(&active.kid), &active.sealed_private_key)
        .ok_or_else(|| KeyError::Unseal {
            kid: active.kid.clone(),
            source: CryptoError::Open,
        })?;
    let alg = parse_alg(&active.kid, &active.alg)?;
    let signer = Signer::from_pkcs8(alg, &active.kid, &pkcs8).map_err(|source| KeyError::Key {
        kid: active.kid.clone(),
        source,
    })?;
    let mut keys = Vec::with_capacity(stored.len());
    let mut verifiers = HashMap::with_capacity(stored.len());
    for key in stored {
        let bad = |source| KeyError::Key {
            kid: key.kid.clone(),
            source,
        };
        let jwk: Jwk = serde_json::from_str(&key.public_jwk)
            .map_err(|_| bad(SignerError::BadKey(Algorithm::ES256)))?;
        let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| bad(SignerError::Sign(e)))?;
        verifiers.insert(key.kid.clone(), (parse_alg(&key.kid, &key.alg)?, decoding));
        keys.push(
            serde_json::to_value(&jwk).map_err(|_| bad(SignerError::BadKey(Algorithm::ES256)))?,
        );
    }
    Ok(Published {
        signer: Arc::new(signer),
        jwks: json!({ "keys": keys }).to_string(),
        verifiers,
    })
}
