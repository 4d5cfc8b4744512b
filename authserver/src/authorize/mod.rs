//! The authorization endpoint's logic (RFC 6749 §4.1, RFC 7636, OIDC Core
//! §3.1.2): validate the request, then decide what the browser sees next:
//! the login page, the consent page, or a redirect back with a code or an
//! error. No HTTP types; `http.rs` renders the outcome.
//!
//! Until the client and redirect URI are known to be registered, errors are
//! shown on our own page: we never redirect to an unregistered URI.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::App;
use crate::config::MfaConfig;
use crate::crypto::{digest, random_token};
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::{Client, GrantType, MfaPolicy, User};
use crate::session::Session;

mod start;

pub use start::{LOCAL_NAME, start, start_device, start_local};

/// How long a user has to finish logging in and consenting.
pub const REQUEST_TTL: Duration = Duration::from_secs(600);

/// A validated authorization request, kept while the user logs in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthRequest {
    pub client_id: String,
    pub redirect_uri: String,
    /// Whether the request named the redirect URI (then the token request
    /// must name it too).
    pub redirect_uri_given: bool,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt: Option<String>,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    /// The digest of the session that logged in within this request: only
    /// that session (its handle) satisfies `prompt=login` and `max_age` on resume.
    #[serde(default)]
    pub fresh_session: Option<String>,
    /// A sign-in for our own pages (the account page): no client, no
    /// code; after sign-in the browser goes to `redirect_uri`, a local path.
    #[serde(default)]
    pub local: bool,
    /// `acr_values` as requested, in order of preference.
    #[serde(default)]
    pub acr_values: Vec<String>,
    /// A device's sign-in (RFC 8628), by the device's handle: it ends by
    /// settling the device's record, not with a code.
    #[serde(default)]
    pub device: Option<String>,
    /// An upstream identity to link to the account the person signs in to
    /// next (its key in the ephemeral store): set when a federated sign-in
    /// found no linked account and must not guess one.
    #[serde(default)]
    pub pending_link: Option<String>,
}

impl AuthRequest {
    /// Whether the request asks for a second factor: it names the
    /// multi-factor `acr` and not the password one (`acr_values` lists
    /// what would do; values we do not know are ignored, OIDC Core §3.1.2.1).
    pub fn wants_mfa(&self, mfa: &MfaConfig) -> bool {
        self.acr_values.contains(&mfa.acr) && !self.acr_values.contains(&mfa.password_acr)
    }
}

/// What the code stands for at the token endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub redirect_uri: String,
    pub redirect_uri_given: bool,
    pub user_id: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
    pub acr: String,
    /// The session's `sid` (none for sessions from before it existed).
    #[serde(default)]
    pub sid: Option<String>,
}

/// Why an authorization request cannot go on.
#[derive(Debug)]
pub enum Refusal {
    /// Shown on our error page as a bad request (client or redirect URI
    /// not established, request expired).
    Page(String),
    /// Shown on our error page with its status: a failure on our side
    /// (store unavailable), not the request's fault.
    Failed { status: u16, message: String },
    /// Sent back to the client's redirect URI.
    Redirect(String),
}

/// What the browser gets next.
#[derive(Debug)]
pub enum Next {
    Login {
        request_id: String,
        client: Client,
        hint: Option<String>,
    },
    Consent {
        request_id: String,
        client: Client,
        user: User,
        scopes: Vec<String>,
    },
    Redirect(String),
    /// Signed in, but without the second factor this request needs (its
    /// `acr_values`, or `mfa = required` of the user or the client): ask
    /// for it on top of the session.
    StepUp {
        request_id: String,
        client_name: String,
        user: User,
        /// What the session proved already.
        amr: Vec<String>,
    },
    /// A device's sign-in is settled: the person may go back to the device.
    DeviceDone {
        client_name: String,
        approved: bool,
    },
}

impl From<OAuthError> for Refusal {
    fn from(e: OAuthError) -> Self {
        if e.status >= 500 {
            Self::Failed {
                status: e.status,
                message: e.description,
            }
        } else {
            Self::Page(e.description)
        }
    }
}

/// `redirect_uri` with the response parameters appended to its query.
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = String::from(redirect_uri);
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    out.push(if redirect_uri.contains('?') { '&' } else { '?' });
    out.push_str(&query.finish());
    out
}

pub fn error_redirect(app: &App, req: &AuthRequest, error: &str, description: &str) -> String {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = &req.state {
        params.push(("state", state));
    }
    // RFC 9207: say who answered, against mix-up attacks.
    params.push(("iss", &app.issuer));
    redirect_with(&req.redirect_uri, &params)
}

/// A PKCE code challenge or verifier: 43–128 unreserved characters.
pub fn pkce_shaped(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

pub fn s256(verifier: &str) -> String {
    digest(verifier)
}

pub async fn load(app: &App, id: &str) -> Result<AuthRequest, Refusal> {
    app.ephemeral
        .get(&keys::auth_request(id))
        .await
        .map_err(OAuthError::from)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| {
            Refusal::Page(
                "this sign-in request has expired; go back to the application and start again"
                    .into(),
            )
        })
}

pub async fn save(app: &App, id: &str, req: &AuthRequest) -> Result<(), Refusal> {
    let bytes = serde_json::to_vec(req).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(&keys::auth_request(id), &bytes, REQUEST_TTL)
        .await
        .map_err(OAuthError::from)?;
    Ok(())
}

fn has_prompt(req: &AuthRequest, value: &str) -> bool {
    req.prompt
        .as_deref()
        .is_some_and(|p| p.split(' ').any(|v| v == value))
}

/// Decides what comes next for request `id`, given the browser's session
/// (its id and record). `consented` is true right after "Allow".
pub async fn resume(
    app: &App,
    id: &str,
    session: Option<(&str, &Session)>,
    consented: bool,
    now: i64,
) -> Result<Next, Refusal> {
    let req = load(app, id).await?;
    let client = if req.local {
        local_client(&req)
    } else {
        app.store
            .client(&req.client_id)
            .await
            .map_err(OAuthError::from)?
            .ok_or_else(|| Refusal::Page("the client of this request no longer exists".into()))?
    };
    let login = |app: &App, req: &AuthRequest| {
        if has_prompt(req, "none") {
            Err(Refusal::Redirect(error_redirect(
                app,
                req,
                "login_required",
                "the user is not signed in",
            )))
        } else {
            Ok(Next::Login {
                request_id: id.to_owned(),
                client: client.clone(),
                hint: req.login_hint.clone(),
            })
        }
    };
    let Some((session_id, session)) = session else {
        return login(app, &req);
    };
    let fresh = req.fresh_session.as_deref() == Some(crate::session::handle(session_id).as_str());
    // max_age=0 means "authenticate now", as prompt=login.
    let too_old = req
        .max_age
        .is_some_and(|m| m == 0 || now - session.auth_time > m);
    // An upstream identity waiting to be linked is linked only by a fresh
    // sign-in (a first factor) in this request, never by the session.
    if !fresh && (has_prompt(&req, "login") || too_old || req.pending_link.is_some()) {
        return login(app, &req);
    }
    let user = match app
        .store
        .user_by_id(&session.user_id)
        .await
        .map_err(OAuthError::from)?
    {
        Some(u) if !u.disabled => u,
        _ => return login(app, &req),
    };
    let needs_mfa = req.wants_mfa(&app.config.mfa)
        || user.mfa == MfaPolicy::Required
        || client.mfa == MfaPolicy::Required;
    if needs_mfa && session.acr != app.config.mfa.acr {
        if has_prompt(&req, "none") {
            return Err(Refusal::Redirect(error_redirect(
                app,
                &req,
                "interaction_required",
                "this request needs a second factor",
            )));
        }
        return Ok(Next::StepUp {
            request_id: id.to_owned(),
            client_name: client.name.clone(),
            user,
            amr: session.amr.clone(),
        });
    }
    if req.local {
        app.ephemeral
            .delete(&keys::auth_request(id))
            .await
            .map_err(OAuthError::from)?;
        return Ok(Next::Redirect(req.redirect_uri));
    }
    // A device's sign-in always asks: the code may have come from someone
    // else's device (RFC 8628 §5.4, remote phishing).
    if (client.require_consent || req.device.is_some()) && !consented {
        let granted = app
            .store
            .consent(&user.id, &client.id)
            .await
            .map_err(OAuthError::from)?;
        let missing: Vec<String> = req
            .scopes
            .iter()
            .filter(|s| !granted.contains(s))
            .cloned()
            .collect();
        if !missing.is_empty() || has_prompt(&req, "consent") {
            if has_prompt(&req, "none") {
                return Err(Refusal::Redirect(error_redirect(
                    app,
                    &req,
                    "consent_required",
                    "the user has not consented",
                )));
            }
            return Ok(Next::Consent {
                request_id: id.to_owned(),
                client,
                user,
                scopes: req.scopes.clone(),
            });
        }
    }
    if let Some(handle) = &req.device {
        let auth = crate::issue::AuthFacts {
            auth_time: session.auth_time,
            amr: session.amr.clone(),
            acr: session.acr.clone(),
            sid: Some(session.sid.clone()).filter(|s| !s.is_empty()),
        };
        crate::device::approve(app, &req.client_id, handle, &user.id, auth, now).await?;
        app.ephemeral
            .delete(&keys::auth_request(id))
            .await
            .map_err(OAuthError::from)?;
        return Ok(Next::DeviceDone {
            client_name: client.name,
            approved: true,
        });
    }
    let code = random_token::<32>();
    let grant = CodeGrant {
        client_id: client.id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_given: req.redirect_uri_given,
        user_id: user.id.clone(),
        scopes: req.scopes.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: session.auth_time,
        amr: session.amr.clone(),
        acr: session.acr.clone(),
        sid: Some(session.sid.clone()).filter(|s| !s.is_empty()),
    };
    let bytes = serde_json::to_vec(&grant).map_err(|e| OAuthError::server_error(&e))?;
    let ttl = Duration::from_secs(app.config.tokens.code_seconds);
    app.ephemeral
        .put(&keys::code(&code), &bytes, ttl)
        .await
        .map_err(OAuthError::from)?;
    // The request is spent: a reload of the page cannot mint another code.
    app.ephemeral
        .delete(&keys::auth_request(id))
        .await
        .map_err(OAuthError::from)?;
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = &req.state {
        params.push(("state", state));
    }
    params.push(("iss", &app.issuer));
    Ok(Next::Redirect(redirect_with(&req.redirect_uri, &params)))
}

/// What a local request's pages show in place of a client.
fn local_client(req: &AuthRequest) -> Client {
    Client {
        id: req.client_id.clone(),
        name: LOCAL_NAME.into(),
        secret_digest: None,
        auth_method: crate::model::ClientAuth::None,
        redirect_uris: vec![req.redirect_uri.clone()],
        post_logout_redirect_uris: Vec::new(),
        grant_types: Vec::new(),
        scopes: Vec::new(),
        jwks: None,
        require_consent: false,
        introspect: false,
        mfa: MfaPolicy::Optional,
        created_at: 0,
        backchannel_logout_uri: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_matches_rfc_7636_appendix_b() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(pkce_shaped(verifier));
        assert_eq!(
            s256(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(!pkce_shaped("short"));
        assert!(!pkce_shaped(&"a".repeat(129)));
        assert!(!pkce_shaped(&format!("{}+", "a".repeat(43))));
    }

    #[test]
    fn redirects_append_to_existing_queries() {
        assert_eq!(
            redirect_with("https://app/cb", &[("code", "a b"), ("state", "x&y")]),
            "https://app/cb?code=a+b&state=x%26y"
        );
        assert_eq!(
            redirect_with("https://app/cb?t=1", &[("code", "c")]),
            "https://app/cb?t=1&code=c"
        );
    }
}
