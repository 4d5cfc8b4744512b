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
use serde_json::{Map, Value, json};
use tokens::Verifier;

use crate::config::{SessionConfig, SessionStore};
use crate::now_secs;
use crate::refusal::{Refusal, refuse};
use crate::reply::{Reply, reply};
use crate::seal::{Mac, Sealer};
use crate::sha256;

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
}

/// What the session cookie (or Redis) holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    sid: String,
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
    access_expires_at: u64,
    /// The session ends here, refreshed or not.
    expires_at: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
enum CookieValue {
    Inline(Stored),
    /// The session lives in Redis under this id.
    Remote {
        sid: String,
    },
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
    /// The access token's payload: what policies and identity headers read.
    pub payload: Map<String, Value>,
    pub claims: decision::Claims,
    /// The ID token's payload, for `/_auth/userinfo`.
    profile: Map<String, Value>,
    /// After a sign-in or refresh: the cookie value to send back.
    renewed_cookie: Option<String>,
}

impl Active {
    pub fn access_token(&self) -> &str {
        &self.stored.access_token
    }

    /// When the identity stops being valid: the access token's expiry.
    pub fn expires_at(&self) -> u64 {
        self.stored.access_expires_at.min(self.stored.expires_at)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Provider {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    end_session_endpoint: Option<String>,
    revocation_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    id_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
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
        redis: Option<(&str, &str)>,
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
            session_sealer: Sealer::new(secret, "session")?,
            login_sealer: Sealer::new(secret, "login")?,
            logout_token: Mac::new(secret, "logout")?,
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
            redis: redis.map(|(url, prefix)| RedisSessions::new(url, prefix)),
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
        }
    }

    /// The request's session, refreshed when its access token is about to
    /// expire. `None`: no session, or one that can no longer be used.
    pub async fn lookup(&self, req: &RequestHeader) -> Option<Arc<Active>> {
        let value = crate::cookie::find(&req.headers, &self.cookie)?;
        let key = sha256(value.as_bytes());
        let active = match self.cache.get(&key) {
            Some(a) => a,
            None => {
                let a = Arc::new(self.open(value).await?);
                self.cache.insert(key, a.clone());
                a
            }
        };
        let now = now_secs();
        if active.stored.expires_at <= now || self.ended.contains_key(&active.stored.sid) {
            return None;
        }
        if active.stored.access_expires_at > now + self.config.refresh_before_secs {
            return Some(active);
        }
        let refreshed = match &active.stored.refresh_token {
            Some(_) => {
                let cell = self
                    .refreshes
                    .get_with(sha256(active.stored.access_token.as_bytes()), || {
                        Arc::new(tokio::sync::OnceCell::new())
                    });
                cell.get_or_init(|| async {
                    match self.refresh(&active).await {
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
        let req = session.req_header();
        let wants_page = matches!(req.method, http::Method::GET | http::Method::HEAD)
            && req.headers.get("x-requested-with").is_none()
            && req
                .headers
                .get(http::header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_none_or(|accept| accept.contains("text/html"));
        if !wants_page {
            return refuse(
                session,
                Refusal::NoSession("sign in first (no valid session)"),
            )
            .await;
        }
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
            .finish();
        let sep = if provider.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!("{}{sep}{query}", provider.authorization_endpoint);
        let sealed = serde_json::to_vec(&state)
            .map_err(|e| e.to_string())
            .and_then(|plain| self.login_sealer.seal(&self.login_cookie, &plain));
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

    async fn callback(&self, session: &mut Downstream) -> pingora::Result<bool> {
        let req = session.req_header();
        let params: Vec<(String, String)> =
            form_urlencoded::parse(req.uri.query().unwrap_or_default().as_bytes())
                .into_owned()
                .collect();
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let login = crate::cookie::find(&req.headers, &self.login_cookie)
            .and_then(|v| self.login_sealer.open(&self.login_cookie, v))
            .and_then(|plain| serde_json::from_slice::<LoginState>(&plain).ok())
            .filter(|l| l.expires_at > now_secs());
        let clear_login = self.set_cookie(&self.login_cookie, "", 0);
        let Some(login) = login else {
            let refusal = Refusal::BadRequest(
                "no sign-in is in progress in this browser, or it took longer than 10 minutes; start again".into(),
            );
            return reply(session, refusal.reply().cookie(clear_login)).await;
        };
        let state_ok = param("state").is_some_and(|s| {
            aws_lc_rs::constant_time::verify_slices_are_equal(s.as_bytes(), login.state.as_bytes())
                .is_ok()
        });
        if !state_ok {
            let refusal =
                Refusal::BadRequest("`state` does not match this browser's sign-in".into());
            return reply(session, refusal.reply().cookie(clear_login)).await;
        }
        if let Some(error) = param("error") {
            let refusal = Refusal::SignInRefused {
                error: error.to_owned(),
                description: param("error_description").map(str::to_owned),
            };
            return reply(session, refusal.reply().cookie(clear_login)).await;
        }
        let provider = match self.provider().await {
            Ok(p) => p,
            Err(e) => return self.unavailable(session, &e).await,
        };
        // RFC 9207: a response from another issuer is a mix-up attack.
        if param("iss").is_some_and(|iss| iss != provider.issuer) {
            let refusal = Refusal::BadRequest("`iss` names another issuer".into());
            return reply(session, refusal.reply().cookie(clear_login)).await;
        }
        let Some(code) = param("code") else {
            let refusal = Refusal::BadRequest("`code` is missing".into());
            return reply(session, refusal.reply().cookie(clear_login)).await;
        };
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.config.redirect_uri.as_str()),
            ("code_verifier", login.verifier.as_str()),
        ];
        let result = async {
            let tokens = self.token_request(provider, &form).await?;
            self.establish(tokens, Some(&login.nonce), None).await
        }
        .await;
        let (active, cookie_value) = match result {
            Ok(ok) => ok,
            Err(e) => {
                tracing::warn!(error = %e, "sign-in failed");
                let status = match e {
                    SessionError::Refused(_) | SessionError::Token(_) => 401,
                    // The provider failed us.
                    SessionError::Provider(_) => 502,
                    // Our own store (Redis down, or none for a big session).
                    SessionError::Store(_) => 503,
                };
                let refusal = Refusal::SignInFailed {
                    status,
                    message: e.to_string(),
                };
                return reply(session, refusal.reply().cookie(clear_login)).await;
            }
        };
        tracing::info!(sid = %active.stored.sid, "session started");
        let session_cookie =
            self.set_cookie(&self.cookie, &cookie_value, self.config.lifetime_secs);
        reply(
            session,
            Reply::redirect(302, safe_return(&login.return_to).to_owned())
                .cookie(session_cookie)
                .cookie(clear_login),
        )
        .await
    }

    async fn userinfo(&self, session: &mut Downstream) -> pingora::Result<bool> {
        let Some(active) = self.lookup(session.req_header()).await else {
            return refuse(session, Refusal::NoSession("no valid session")).await;
        };
        let mut info = Map::new();
        for (k, v) in active.profile.iter().chain(active.payload.iter()) {
            let protocol = matches!(
                k.as_str(),
                "iss"
                    | "aud"
                    | "exp"
                    | "iat"
                    | "nbf"
                    | "jti"
                    | "nonce"
                    | "at_hash"
                    | "c_hash"
                    | "sid"
                    | "auth_time"
            );
            if !protocol && !info.contains_key(k) {
                info.insert(k.clone(), v.clone());
            }
        }
        info.insert("session_expires_at".into(), json!(active.stored.expires_at));
        let mut r = Reply::json(200, Value::Object(info).to_string());
        if let Some(c) = self.renewed_cookie(&active) {
            r = r.cookie(c);
        }
        reply(session, r).await
    }

    /// `/_auth/logout`: a GET shows a confirmation page; a POST from this
    /// site with the page's token signs out.
    async fn logout(&self, session: &mut Downstream) -> pingora::Result<bool> {
        let req = session.req_header();
        match req.method {
            http::Method::GET | http::Method::HEAD => return self.logout_page(session).await,
            http::Method::POST => {}
            _ => {
                let refusal = Refusal::MethodNotAllowed {
                    message: "sign out with GET (a confirmation page) then POST",
                    allow: "GET, HEAD, POST",
                };
                return refuse(session, refusal).await;
            }
        }
        if self.cross_site(req) {
            let refusal = Refusal::Forbidden("sign-out is accepted from this site only");
            return refuse(session, refusal).await;
        }
        let active = self.lookup(session.req_header()).await;
        let Some(form) = read_form(session).await? else {
            let refusal = Refusal::PayloadTooLarge("the sign-out form is larger than 4 KiB");
            return refuse(session, refusal).await;
        };
        let token = form_urlencoded::parse(&form)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if let Some(a) = &active
            && !self.logout_token.verify(&a.stored.sid, &token)
        {
            let refusal = Refusal::Forbidden(
                "the sign-out form's token is missing or wrong: sign out from the page at /_auth/logout",
            );
            return refuse(session, refusal).await;
        }
        let provider = self.provider().await.ok();
        let mut location = self
            .config
            .post_logout_redirect_uri
            .clone()
            .unwrap_or_else(|| "/".into());
        if let Some(active) = &active {
            self.ended.insert(active.stored.sid.clone(), ());
            if let Some(redis) = &self.redis
                && let Err(e) = redis.delete(&active.stored.sid).await
            {
                tracing::warn!(error = %e, "session not deleted from Redis");
            }
            if let (Some(p), Some(rt)) = (provider, &active.stored.refresh_token)
                && let Some(endpoint) = &p.revocation_endpoint
            {
                let revoked = self
                    .http
                    .post(endpoint)
                    .basic_auth(
                        form_encode(&self.config.client_id),
                        Some(form_encode(&self.config.client_secret)),
                    )
                    .form(&[("token", rt.as_str()), ("token_type_hint", "refresh_token")])
                    .send()
                    .await;
                if let Err(e) = revoked {
                    tracing::warn!(error = %e, "refresh token not revoked");
                }
            }
            if let Some(p) = provider
                && let Some(end) = &p.end_session_endpoint
            {
                let mut q = form_urlencoded::Serializer::new(String::new());
                q.append_pair("client_id", &self.config.client_id);
                if let Some(it) = &active.stored.id_token {
                    q.append_pair("id_token_hint", it);
                }
                if let Some(after) = &self.config.post_logout_redirect_uri {
                    q.append_pair("post_logout_redirect_uri", after);
                }
                let sep = if end.contains('?') { '&' } else { '?' };
                location = format!("{end}{sep}{}", q.finish());
            }
            tracing::info!(sid = %active.stored.sid, "session ended");
        }
        let clear = self.set_cookie(&self.cookie, "", 0);
        reply(session, Reply::redirect(302, location).cookie(clear)).await
    }

    /// The confirmation page: a form that POSTs back with this session's
    /// token. Framing is refused, so no other site can dress up the button.
    async fn logout_page(&self, session: &mut Downstream) -> pingora::Result<bool> {
        let active = self.lookup(session.req_header()).await;
        let body = match &active {
            Some(a) => format!(
                "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sign out</title></head>\
                 <body><main><h1>Sign out?</h1><p>This ends your session here and at the identity provider.</p>\
                 <form method=\"post\" action=\"{LOGOUT_PATH}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">Sign out</button></form></main></body></html>",
                self.logout_token.tag(&a.stored.sid)
            ),
            None => "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed out</title></head>\
                     <body><main><h1>You are not signed in</h1><p><a href=\"/\">Continue</a></p></main></body></html>"
                .to_owned(),
        };
        // The form's POST ends in a redirect to the provider: allowed too.
        let provider = self.provider().await.ok().map_or_else(
            || self.config.issuer.clone(),
            |p| {
                p.end_session_endpoint
                    .clone()
                    .unwrap_or_else(|| p.issuer.clone())
            },
        );
        let csp = format!(
            "default-src 'none'; form-action 'self' {} {}; frame-ancestors 'none'; base-uri 'none'",
            origin_of(&provider),
            self.config
                .post_logout_redirect_uri
                .as_deref()
                .map_or_else(String::new, origin_of),
        );
        let r = Reply::html(200, body)
            .header("content-security-policy", csp)
            .header("x-frame-options", "DENY".into());
        reply(session, r).await
    }

    /// A request another site made the browser send: `Sec-Fetch-Site`
    /// says so, or `Origin` names another origin.
    fn cross_site(&self, req: &RequestHeader) -> bool {
        let header = |name: &str| req.headers.get(name).map(http::HeaderValue::as_bytes);
        matches!(header("sec-fetch-site"), Some(b"cross-site" | b"same-site"))
            || header("origin").is_some_and(|o| o != self.origin.as_bytes())
    }

    async fn provider(&self) -> Result<&Provider, SessionError> {
        self.provider
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    self.config.issuer.trim_end_matches('/')
                );
                let provider: Provider = self
                    .http
                    .get(&url)
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| SessionError::Provider(format!("{url}: {e}")))?
                    .json()
                    .await
                    .map_err(|e| SessionError::Provider(format!("{url}: {e}")))?;
                if provider.issuer != self.config.issuer {
                    return Err(SessionError::Provider(format!(
                        "discovery names issuer `{}`, not `{}`",
                        provider.issuer, self.config.issuer
                    )));
                }
                Ok(provider)
            })
            .await
    }

    async fn token_request(
        &self,
        provider: &Provider,
        form: &[(&str, &str)],
    ) -> Result<TokenResponse, SessionError> {
        let resp = self
            .http
            .post(&provider.token_endpoint)
            .basic_auth(
                form_encode(&self.config.client_id),
                Some(form_encode(&self.config.client_secret)),
            )
            .form(form)
            .send()
            .await
            .map_err(|e| SessionError::Provider(e.to_string()))?;
        let status = resp.status();
        let body: Value = resp
            .json()
            .await
            .map_err(|e| SessionError::Provider(format!("token response: {e}")))?;
        if !status.is_success() {
            return Err(SessionError::Refused(
                body["error"].as_str().unwrap_or("unknown error").to_owned(),
            ));
        }
        serde_json::from_value(body)
            .map_err(|e| SessionError::Provider(format!("token response: {e}")))
    }

    /// Verify fresh tokens and seal them. `nonce` for a sign-in; `previous`
    /// for a refresh (same session id, subject and absolute expiry).
    async fn establish(
        &self,
        tokens: TokenResponse,
        nonce: Option<&str>,
        previous: Option<&Stored>,
    ) -> Result<(Active, String), SessionError> {
        let access = self
            .verifier
            .verify(&tokens.access_token)
            .await
            .map_err(|e| SessionError::Token(format!("access token: {e}")))?;
        if !audience_has(&access.claims, &self.config.access_audience) {
            return Err(SessionError::Token(format!(
                "access token is not for audience `{}`",
                self.config.access_audience
            )));
        }
        let id_token = match (&tokens.id_token, previous) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(p)) => p.id_token.clone(),
            (None, None) => {
                return Err(SessionError::Token(
                    "no ID token (is `openid` in scopes?)".into(),
                ));
            }
        };
        if let Some(t) = &tokens.id_token {
            let id = self
                .verifier
                .verify(t)
                .await
                .map_err(|e| SessionError::Token(format!("ID token: {e}")))?;
            if !audience_has(&id.claims, &self.config.client_id) {
                return Err(SessionError::Token("ID token is for another client".into()));
            }
            if let Some(expected) = nonce
                && id.claims.get("nonce").and_then(Value::as_str) != Some(expected)
            {
                return Err(SessionError::Token(
                    "ID token `nonce` does not match".into(),
                ));
            }
            if id.claims.get("sub") != access.claims.get("sub") {
                return Err(SessionError::Token(
                    "ID and access tokens name different subjects".into(),
                ));
            }
        }
        let now = now_secs();
        let stored = Stored {
            sid: previous.map_or_else(random, |p| p.sid.clone()),
            access_token: tokens.access_token,
            refresh_token: tokens
                .refresh_token
                .or_else(|| previous.and_then(|p| p.refresh_token.clone())),
            id_token,
            access_expires_at: tokens
                .expires_in
                .map_or(access.expires_at, |s| access.expires_at.min(now + s)),
            expires_at: previous.map_or(now + self.config.lifetime_secs, |p| p.expires_at),
        };
        // Both as issued (the verified claims carry the subject prefix).
        let issued_sub = |token: &str| jwt_payload(token).and_then(|c| c.get("sub").cloned());
        if let Some(p) = previous
            && issued_sub(&p.access_token) != issued_sub(&stored.access_token)
        {
            return Err(SessionError::Token(
                "refresh returned another subject".into(),
            ));
        }
        let mut active = decode(stored, self.subject_prefix.as_deref())
            .ok_or_else(|| SessionError::Token("unreadable token".into()))?;
        let cookie_value = self.seal(&active.stored).await?;
        active.renewed_cookie = Some(cookie_value.clone());
        Ok((active, cookie_value))
    }

    async fn refresh(&self, active: &Active) -> Result<Active, SessionError> {
        let Some(rt) = &active.stored.refresh_token else {
            return Err(SessionError::Refused("no refresh token".into()));
        };
        let provider = self.provider().await?;
        let tokens = self
            .token_request(
                provider,
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
            .await?;
        let (fresh, _) = self.establish(tokens, None, Some(&active.stored)).await?;
        tracing::debug!(sid = %fresh.stored.sid, "session refreshed");
        Ok(fresh)
    }

    /// The cookie value for `stored`: inline when it fits, else a pointer
    /// to Redis (where the session is sealed too).
    async fn seal(&self, stored: &Stored) -> Result<String, SessionError> {
        let plain = serde_json::to_vec(&CookieValue::Inline(stored.clone()))
            .map_err(|e| SessionError::Store(e.to_string()))?;
        let inline = self
            .session_sealer
            .seal(&self.cookie, &plain)
            .map_err(SessionError::Store)?;
        let too_large = inline.len() > MAX_COOKIE_BYTES;
        let server_side = match self.config.store {
            SessionStore::Cookie => false,
            SessionStore::Auto => too_large,
            SessionStore::Redis => true,
        };
        let redis = match (&self.redis, server_side) {
            (_, false) if !too_large => return Ok(inline),
            (Some(redis), true) => redis,
            _ => {
                return Err(SessionError::Store(format!(
                    "the session is {} bytes sealed, more than a cookie holds; set `redis_url` and `session.store`",
                    inline.len()
                )));
            }
        };
        let ttl = stored.expires_at.saturating_sub(now_secs()).max(1);
        redis.put(&stored.sid, &inline, ttl).await?;
        let pointer = serde_json::to_vec(&CookieValue::Remote {
            sid: stored.sid.clone(),
        })
        .map_err(|e| SessionError::Store(e.to_string()))?;
        let sealed = self
            .session_sealer
            .seal(&self.cookie, &pointer)
            .map_err(SessionError::Store)?;
        Ok(format!("{POINTER_MARK}{sealed}"))
    }

    async fn open(&self, value: &str) -> Option<Active> {
        let (value, pointer) = match value.strip_prefix(POINTER_MARK) {
            Some(v) => (v, true),
            None => (value, false),
        };
        let plain = self.session_sealer.open(&self.cookie, value)?;
        let stored = match serde_json::from_slice::<CookieValue>(&plain).ok()? {
            CookieValue::Inline(s) if !pointer => s,
            CookieValue::Remote { sid } if pointer => {
                let inline = self.redis.as_ref()?.get(&sid).await.ok()??;
                let plain = self.session_sealer.open(&self.cookie, &inline)?;
                match serde_json::from_slice::<CookieValue>(&plain).ok()? {
                    CookieValue::Inline(s) if s.sid == sid => s,
                    _ => return None,
                }
            }
            _ => return None,
        };
        decode(stored, self.subject_prefix.as_deref())
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
fn origin_of(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| String::new(), |u| u.origin().ascii_serialization())
}

/// A form body of at most 4 KiB; `None` when larger.
async fn read_form(session: &mut Downstream) -> pingora::Result<Option<Vec<u8>>> {
    const MAX: usize = 4096;
    let mut body = Vec::new();
    while let Some(chunk) = session.read_request_body().await? {
        if body.len() + chunk.len() > MAX {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// Cookie values pointing into Redis start with this (never base64url).
const POINTER_MARK: &str = "r.";

/// A path on this site only: no scheme, no `//host`, no backslashes or
/// control characters (which some browsers turn into `//host`).
fn safe_return(target: &str) -> &str {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target.bytes().any(|b| b.is_ascii_control());
    if ok { target } else { "/" }
}

/// A stored session's tokens read back (they were verified when stored;
/// the sealed cookie vouches for them), subjects qualified as verified.
fn decode(stored: Stored, subject_prefix: Option<&str>) -> Option<Active> {
    let mut payload = jwt_payload(&stored.access_token)?;
    tokens::qualify(&mut payload, subject_prefix);
    let claims = decision::Claims::from_json(&payload).ok()?;
    let profile = stored
        .id_token
        .as_deref()
        .and_then(jwt_payload)
        .unwrap_or_default();
    Some(Active {
        stored,
        payload,
        claims,
        profile,
        renewed_cookie: None,
    })
}

/// The payload of a JWT verified earlier (the sealed cookie vouches for it).
fn jwt_payload(token: &str) -> Option<Map<String, Value>> {
    let payload = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
}

fn audience_has(claims: &Map<String, Value>, audience: &str) -> bool {
    match claims.get("aud") {
        Some(Value::String(a)) => a == audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

/// RFC 6749 §2.3.1: client credentials are form-encoded before Basic.
fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn random() -> String {
    let mut bytes = [0u8; 32];
    // A failing system RNG is not survivable for sign-in state.
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        std::process::abort();
    }
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Sessions too large for a cookie, sealed, in Redis.
struct RedisSessions {
    url: String,
    prefix: String,
    conn: tokio::sync::OnceCell<redis::aio::ConnectionManager>,
}

impl RedisSessions {
    fn new(url: &str, prefix: &str) -> Self {
        Self {
            url: url.to_owned(),
            prefix: format!("{prefix}session:"),
            conn: tokio::sync::OnceCell::new(),
        }
    }

    async fn conn(&self) -> Result<redis::aio::ConnectionManager, SessionError> {
        self.conn
            .get_or_try_init(|| async {
                let client = redis::Client::open(self.url.as_str())
                    .map_err(|e| SessionError::Store(e.to_string()))?;
                redis::aio::ConnectionManager::new(client)
                    .await
                    .map_err(|e| SessionError::Store(e.to_string()))
            })
            .await
            .cloned()
    }

    async fn put(&self, sid: &str, value: &str, ttl_secs: u64) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(format!("{}{sid}", self.prefix))
            .arg(value)
            .arg("EX")
            .arg(ttl_secs)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    async fn get(&self, sid: &str) -> Result<Option<String>, SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("GET")
            .arg(format!("{}{sid}", self.prefix))
            .query_async(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }

    async fn delete(&self, sid: &str) -> Result<(), SessionError> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(format!("{}{sid}", self.prefix))
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| SessionError::Store(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_this_site() {
        for ok in ["/", "/app?x=1", "/a/b#c"] {
            assert_eq!(safe_return(ok), ok);
        }
        for bad in [
            "//evil.example",
            "https://evil.example/",
            "/\\evil.example",
            "/\tevil",
            "evil",
            "",
        ] {
            assert_eq!(safe_return(bad), "/", "{bad:?}");
        }
    }
}
