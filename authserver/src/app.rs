//! Everything a request handler needs, opened once at start.

use std::time::Duration;

use crate::config::Config;
use crate::crypto::{MasterKey, Sealer, SecretDigester};
use crate::ephemeral::Ephemeral;
use crate::error::Error;
use crate::keys::KeyRing;
use crate::metrics::Metrics;
use crate::password::Passwords;
use crate::session::Cookies;
use crate::store::Store;

pub struct App {
    pub config: Config,
    /// The issuer identifier, without a trailing slash.
    pub issuer: String,
    pub store: Store,
    pub ephemeral: Ephemeral,
    pub keys: KeyRing,
    pub passwords: Passwords,
    pub secrets: SecretDigester,
    /// Seals second-factor secrets at rest, each bound to its record.
    pub sealer: Sealer,
    /// The WebAuthn relying party.
    pub passkeys: crate::relying_party::Relying,
    /// Where SMS codes go.
    pub sms: crate::sms::Sender,
    /// Calls of our own to other servers (`outbound`).
    pub outbound: reqwest::Client,
    /// The upstream identity providers.
    pub upstreams: crate::upstream::Upstreams,
    /// MACs of values the server hands out and reads back (CSRF tokens).
    pub mac: aws_lc_rs::hmac::Key,
    pub cookies: Cookies,
    pub metrics: Metrics,
    pub trusted_proxies: Vec<bootstrap::net::Cidr>,
    /// Group-committed audit events (logins, tokens).
    pub audit: crate::audit::AuditLog,
    /// The change feed's newest sequence number, for long polls (kept
    /// current by `feed::keep_current`).
    pub feed_newest: tokio::sync::watch::Sender<i64>,
    /// Clients read on every token and introspection request. Entries live
    /// a few seconds: changes through this instance drop them at once,
    /// changes through another instance are seen within the TTL.
    clients: moka::sync::Cache<String, std::sync::Arc<crate::model::Client>>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("issuer", &self.issuer)
            .field("store", &self.store.backend_name())
            .field("ephemeral", &self.ephemeral.backend_name())
            .finish_non_exhaustive()
    }
}

impl App {
    /// Connects the stores (applying migrations) and loads the keys.
    pub async fn open(config: Config, master: &MasterKey) -> Result<Self, Error> {
        config.validate()?;
        let issuer = config.issuer_url()?;
        let issuer_is_https = issuer.starts_with("https://");
        if config.database_url.is_none() {
            std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
                what: format!("data_dir `{}`", config.data_dir.display()),
                source,
            })?;
        }
        let store = Store::connect_with(&config.database_url(), config.database.pool()).await?;
        let ephemeral = match &config.redis_url {
            Some(url) => Ephemeral::redis(url, &config.redis_prefix).await?,
            None => Ephemeral::memory(),
        };
        let longest = config.tokens.access_seconds.max(config.tokens.id_seconds);
        // Verifiers refresh their JWKS every few minutes; keep retired keys
        // for the longest token plus that slack.
        let keep_retired = Duration::from_secs(longest + 600);
        // The JWKS is served with max-age 60; other instances re-read keys
        // every `key_refresh_seconds`.
        let publish_lead = Duration::from_secs(60 + config.tokens.key_refresh_seconds);
        let keys = KeyRing::open(
            store.clone(),
            master.sealer(),
            config.signing_algorithm()?,
            keep_retired,
            publish_lead,
            now(),
        )
        .await?;
        let passwords = Passwords::new(&config.argon2)?;
        let passkeys = crate::relying_party::Relying::new(&config.mfa, &issuer, config.dev)
            .map_err(|e| Error::Invalid(format!("webauthn: {e}")))?;
        let sms = crate::sms::Sender::new(&config.mfa).map_err(Error::Invalid)?;
        let audit = crate::audit::AuditLog::start(store.clone());
        Ok(Self {
            issuer,
            store,
            ephemeral,
            keys,
            passwords,
            secrets: master.secret_digester(),
            sealer: master.sealer(),
            passkeys,
            sms,
            outbound: crate::outbound::client().map_err(Error::Invalid)?,
            upstreams: crate::upstream::Upstreams::new(&config.federation),
            mac: master.mac_key(),
            cookies: Cookies::new(issuer_is_https),
            metrics: Metrics::new(
                config.tokens.access_seconds,
                config.tokens.refresh_seconds,
                config.login.session_seconds,
                now(),
            ),
            trusted_proxies: config.proxies()?,
            audit,
            feed_newest: tokio::sync::watch::channel(0).0,
            clients: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(CLIENT_CACHE_TTL)
                .build(),
            config,
        })
    }
}

/// How long a client read from the database is reused.
pub const CLIENT_CACHE_TTL: Duration = Duration::from_secs(5);

impl App {
    /// A registered client, cached briefly (see `clients`).
    pub async fn client(
        &self,
        id: &str,
    ) -> Result<Option<std::sync::Arc<crate::model::Client>>, crate::store::StoreError> {
        if let Some(c) = self.clients.get(id) {
            return Ok(Some(c));
        }
        let Some(client) = self.store.client(id).await? else {
            return Ok(None);
        };
        let client = std::sync::Arc::new(client);
        self.clients.insert(id.to_owned(), client.clone());
        Ok(Some(client))
    }

    /// Counts a session that ended before it expired.
    pub fn session_ended(&self, session: &crate::session::Session) {
        let lifetime = i64::try_from(self.config.login.session_seconds).unwrap_or(0);
        self.metrics.sessions.end(session.auth_time + lifetime);
    }

    /// Drops a client from the cache after it changed here.
    pub fn forget_client(&self, id: &str) {
        self.clients.invalidate(id);
    }
}

/// Unix milliseconds (sliding windows).
pub use bootstrap::clock::unix_millis as now_ms;
/// Unix seconds, read at the edge and passed into the domain as `now`.
pub use bootstrap::clock::unix_seconds as now;
