//! Session mode for browsers, as oauth2-proxy does it: the gateway is a
//! confidential OpenID Connect client of the authserver.
//!
//! - An unauthenticated page request is redirected to `/authorize` (code +
//!   PKCE S256); `state`, `nonce`, the verifier and the return path travel
//!   in a sealed, ten-minute login cookie. API requests get a 401 instead.
//! - The callback checks `state` (and RFC 9207 `iss`), exchanges the code,
//!   verifies the ID token (`nonce`) and the access token, and keeps the
//!   tokens sealed (AES-256-GCM) in the session cookie, or in Redis when
//!   they would not fit in one.
//! - Before the access token expires it is refreshed; concurrent requests
//!   of one session share one refresh.
//! - `/_auth/userinfo` describes the session; `/_auth/logout` revokes the
//!   refresh token, clears the cookie and ends the authserver's session.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pingora::http::RequestHeader;
use pingora::proxy::Session as Downstream;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokens::Verifier;

use crate::config::{SessionConfig, SessionStore};
use crate::now_secs;
use crate::refusal::{Refusal, refuse};
use crate::reply::{Reply, reply};
use crate::seal::{Mac, Sealer};
use crate::sha256;

mod backchannel;
mod endpoints;
mod oidc;
mod store;

pub use backchannel::BACKCHANNEL_LOGOUT_PATH;

use endpoints::safe_return;
use oidc::{Provider, form_encode, jwt_payload};
use store::{RedisSessions, Stored, decode};

const LOGIN_TTL_SECS: u64 = 600;
/// Larger sealed sessions go to Redis (browsers cap a cookie near 4 KiB).
const MAX_COOKIE_BYTES: usize = 3_800;
pub const LOGOUT_PATH: &str = "/_auth/logout";
pub const USERINFO_PATH: &str = "/_auth/userinfo";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Callback,
    Logout,
    Userinfo,
    BackchannelLogout,
}

#[derive(Debug, Serialize, Deserialize)]
struct LoginState {
    state: String,
    nonce: String,
    verifier: String,
    return_to: String,
    expires_at: u64,
}

/// A live session, decoded once and cached by its cookie.
#[derive(Debug)]
pub struct Active {
    stored: Stored,
    /// SHA-256 of the access token: it fixes the claims, so it keys
    /// decisions and refreshes.
    access_digest: [u8; 32],
    /// The access token's payload: what policies and identity headers read.
    pub payload: Map<String, Value>,
    pub claims: decision::Claims,
    /// The ID token's payload, for `/_auth/userinfo`.
    profile: Map<String, Value>,
    /// After a sign-in or refresh: the cookie value to send back.
    renewed_cookie: Option<String>,
    /// The provider's sign-in behind the session (`backchannel`): keys of
    /// its `sid` and `sub`, and when it began.
    upstream_sid: Option<[u8; 32]>,
    upstream_sub: Option<[u8; 32]>,
    began_at: u64,
}

impl Active {
    pub fn access_token(&self) -> &str {
        &self.stored.access_token
    }

    pub fn access_digest(&self) -> &[u8; 32] {
        &self.access_digest
    }

    /// When the identity stops being valid: the access token's expiry.
    pub fn expires_at(&self) -> u64 {
        self.stored.access_expires_at.min(self.stored.expires_at)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the authorization server is unreachable: {0}")]
    Provider(String),
    #[error("the authorization server refused: {0}")]
    Refused(String),
    #[error("a token from the authorization server was not valid: {0}")]
    Token(String),
    #[error("session store: {0}")]
    Store(String),
}

/// The outcome of one refresh, awaited by every request that needs it.
type Refresh = tokio::sync::OnceCell<Option<Arc<Active>>>;

pub struct Sessions {
    config: SessionConfig,
    http: reqwest::Client,
    provider: tokio::sync::OnceCell<Provider>,
    /// Verifies both the ID token (audience: our client id) and the access
    /// token (audience: `access_audience`) of the configured issuer.
    verifier: Arc<Verifier>,
    session_sealer: Sealer,
    login_sealer: Sealer,
    /// Tags a session id: the logout form's anti-forgery token.
    logout_token: Mac,
    /// `scheme://host[:port]` of this site: same-site requests' `Origin`.
    origin: String,
    cookie: String,
    login_cookie: String,
    secure: bool,
    callback_path: String,
    cache: moka::sync::Cache<[u8; 32], Arc<Active>>,
    /// One refresh per access token, shared by every request that needs it.
    /// Keyed by the access token being replaced.
    refreshes: moka::sync::Cache<[u8; 32], Arc<Refresh>>,
    /// Sessions logged out here (stateless cookies cannot be recalled).
    ended: moka::sync::Cache<String, ()>,
    /// Sign-ins the provider ended (back-channel logout), by `sid` or
    /// `sub` key: the time of the logout (`u64::MAX` for a `sid`).
    ended_upstream: moka::sync::Cache<[u8; 32], u64>,
    /// Logout tokens already used (their `jti` digests).
    seen_logout_tokens: moka::sync::Cache<[u8; 32], ()>,
    redis: Option<RedisSessions>,
    subject_prefix: Option<String>,
}

impl Sessions {
    /// `subject_prefix`: the issuer's (`[[issuers]]`), applied to the
    /// subjects of stored sessions as the verifier applies it to tokens.
    pub fn new(
        config: &SessionConfig,
        verifier: Arc<Verifier>,
        subject_prefix: Option<String>,
        redis: Option<(Arc<bootstrap::redis::Redis>, &str)>,
    ) -> Result<Self, String> {
        let redirect = url::Url::parse(&config.redirect_uri)
            .map_err(|e| format!("session.redirect_uri: {e}"))?;
        let secure = redirect.scheme() == "https";
        // `__Host-` needs Secure, which plain-HTTP development cannot send.
        let cookie = if secure {
            format!("__Host-{}", config.cookie_name)
        } else {
            config.cookie_name.clone()
        };
        let secret = config.cookie_secret.as_bytes();
        let lifetime = Duration::from_secs(config.lifetime_secs);
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .connect_timeout(Duration::from_secs(3))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("session HTTP client: {e}"))?,
            provider: tokio::sync::OnceCell::new(),
            verifier,
            session_sealer: Sealer::new(secret, "session"),
            login_sealer: Sealer::new(secret, "login"),
            logout_token: Mac::new(secret, "logout"),
            origin: redirect.origin().ascii_serialization(),
            login_cookie: format!("{cookie}_login"),
            cookie,
            secure,
            callback_path: redirect.path().to_owned(),
            // Sessions in Redis can be ended by another replica: look
            // again soon. Cookie sessions only end here or by expiring.
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(if redis.is_some() { 5 } else { 60 }))
                .build(),
            refreshes: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
            ended: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(lifetime)
                .build(),
            ended_upstream: backchannel::ended_cache(lifetime),
            seen_logout_tokens: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(backchannel::REMEMBER_LOGOUT_TOKENS)
                .build(),
            redis: redis.map(|(redis, prefix)| RedisSessions::new(redis, prefix)),
            subject_prefix,
            config: config.clone(),
        })
    }

    pub fn endpoint(&self, path: &str) -> Option<Endpoint> {
        if path == self.callback_path {
            Some(Endpoint::Callback)
        } else if path == LOGOUT_PATH {
            Some(Endpoint::Logout)
        } else if path == USERINFO_PATH {
            Some(Endpoint::Userinfo)
        } else if path == BACKCHANNEL_LOGOUT_PATH {
            Some(Endpoint::BackchannelLogout)
        } else {
            None
        }
    }

    pub async fn serve(
        &self,
        endpoint: Endpoint,
        session: &mut Downstream,
    ) -> pingora::Result<bool> {
        match endpoint {
            Endpoint::Callback => self.callback(session).await,
            Endpoint::Logout => self.logout(session).await,
            Endpoint::Userinfo => self.userinfo(session).await,
            Endpoint::BackchannelLogout => self.backchannel_logout(session).await,
        }
    }

    /// The request's session, refreshed when its access token is about to
    /// expire. `None`: no session, or one that can no longer be used; an
    /// error: Redis cannot say which (the caller fails closed).
    pub async fn lookup(&self, req: &RequestHeader) -> Result<Option<Arc<Active>>, SessionError> {
        let Some(value) = crate::cookie::find(&req.headers, &self.cookie) else {
            return Ok(None);
        };
        let key = sha256(value.as_bytes());
        let active = match self.cache.get(&key) {
            Some(a) => a,
            None => {
                let Some(a) = self.open(value).await? else {
                    return Ok(None);
                };
                let a = Arc::new(a);
                if self.ended_upstream_anywhere(&a).await? {
                    return Ok(None);
                }
                self.cache.insert(key, a.clone());
                a
            }
        };
        Ok(self.usable(active, key).await)
    }

    /// `active` as it may be used now: `None` once expired or ended,
    /// refreshed when its access token is about to expire.
    async fn usable(&self, active: Arc<Active>, key: [u8; 32]) -> Option<Arc<Active>> {
        let now = now_secs();
        if active.stored.expires_at <= now
            || self.ended.contains_key(&active.stored.sid)
            || self.ended_upstream_here(&active)
        {
            return None;
        }
        if active.stored.access_expires_at > now + self.config.refresh_before_secs {
            return Some(active);
        }
        let refreshed = match &active.stored.refresh_token {
            Some(_) => {
                let cell = self.refreshes.get_with(active.access_digest, || {
                    Arc::new(tokio::sync::OnceCell::new())
                });
                // Boxed: a refresh is a large future, and rare.
                cell.get_or_init(|| async {
                    match Box::pin(self.refresh(&active)).await {
                        Ok(a) => Some(Arc::new(a)),
                        Err(e) => {
                            tracing::warn!(error = %e, "session refresh failed");
                            None
                        }
                    }
                })
                .await
                .clone()
            }
            None => None,
        };
        match refreshed {
            Some(fresh) => {
                // Requests still carrying the old cookie get the refreshed
                // session too (in Redis mode the old cookie is the current one).
                self.cache.insert(key, fresh.clone());
                Some(fresh)
            }
            // Not refreshed: usable until the access token itself expires.
            None => (active.stored.access_expires_at > now).then_some(active),
        }
    }

    /// A session that ended (signed out here, or at the authserver as the
    /// change feed says): never served again by this gateway, and deleted
    /// from Redis so that no replica serves it.
    pub async fn forget(&self, active: &Active) {
        self.ended.insert(active.stored.sid.clone(), ());
        if let Some(redis) = &self.redis
            && let Err(e) = redis.delete(&active.stored.sid).await
        {
            tracing::warn!(error = %e, "session not deleted from Redis");
        }
    }

    /// The `Set-Cookie` a refreshed session sends back (cookie mode).
    pub fn renewed_cookie(&self, active: &Active) -> Option<String> {
        active
            .renewed_cookie
            .as_ref()
            .map(|v| self.set_cookie(&self.cookie, v, self.config.lifetime_secs))
    }

    /// No usable session: a page request goes to the login; anything else
    /// (API calls, XHR, non-GET) gets a 401.
    pub async fn challenge(&self, session: &mut Downstream) -> pingora::Result<bool> {
        if !wants_page(session.req_header()) {
            return refuse(
                session,
                Refusal::NoSession("sign in first (no valid session)"),
            )
            .await;
        }
        self.sign_in(session, None).await
    }

    /// A page the policies reserve for a stronger sign-in than the
    /// session's (RFC 9470): through the authserver again, asking for
    /// `acr_values` (and `max_age`), and back to the page.
    pub async fn step_up(
        &self,
        session: &mut Downstream,
        acr_values: &str,
        max_age: Option<u64>,
    ) -> pingora::Result<bool> {
        self.sign_in(session, Some((acr_values, max_age))).await
    }

    async fn sign_in(
        &self,
        session: &mut Downstream,
        step_up: Option<(&str, Option<u64>)>,
    ) -> pingora::Result<bool> {
        let req = session.req_header();
        let return_to = req
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let provider = match self.provider().await {
            Ok(p) => p,
            Err(e) => return self.unavailable(session, &e).await,
        };
        let state = LoginState {
            state: random(),
            nonce: random(),
            verifier: random(),
            return_to: safe_return(&return_to).to_owned(),
            expires_at: now_secs() + LOGIN_TTL_SECS,
        };
        let challenge = URL_SAFE_NO_PAD.encode(sha256(state.verifier.as_bytes()));
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.config.client_id)
            .append_pair("redirect_uri", &self.config.redirect_uri)
            .append_pair("scope", &self.config.scopes.join(" "))
            .append_pair("state", &state.state)
            .append_pair("nonce", &state.nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .extend_pairs(step_up.map(|(acr, _)| ("acr_values", acr)))
            .extend_pairs(
                step_up
                    .and_then(|(_, age)| age)
                    .map(|age| ("max_age", age.to_string())),
            )
            .finish();
        let sep = if provider.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{query}", provider.authorization_endpoint);
        let sealed = serde_json::to_vec(&state)
            .map(|plain| self.login_sealer.seal(&self.login_cookie, &plain))
            .map_err(|e| e.to_string());
        let sealed = match sealed {
            Ok(s) => s,
            Err(e) => return self.unavailable(session, &SessionError::Store(e)).await,
        };
        let login_cookie = self.set_cookie(&self.login_cookie, &sealed, LOGIN_TTL_SECS);
        reply(session, Reply::redirect(302, location).cookie(login_cookie)).await
    }

    /// The session's cookies, which the upstream never sees.
    pub fn cookie_names(&self) -> [&str; 2] {
        [&self.cookie, &self.login_cookie]
    }

    fn set_cookie(&self, name: &str, value: &str, max_age: u64) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!("{name}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
    }

    async fn unavailable(
        &self,
        session: &mut Downstream,
        e: &SessionError,
    ) -> pingora::Result<bool> {
        tracing::warn!(error = %e, "session mode unavailable");
        refuse(session, Refusal::Unavailable(e.to_string().into())).await
    }
}

/// `scheme://host[:port]` of a URL (empty when it has none).
/// A browser asking for a page (not an API call, XHR or form post): it
/// can be sent through a sign-in and back.
pub fn wants_page(req: &RequestHeader) -> bool {
    matches!(req.method, http::Method::GET | http::Method::HEAD)
        && req.headers.get("x-requested-with").is_none()
        && req
            .headers
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|accept| accept.contains("text/html"))
}

fn origin_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| String::new(), |u| u.origin().ascii_serialization())
}

fn random() -> String {
    URL_SAFE_NO_PAD.encode(bootstrap::random::bytes::<32>())
}
