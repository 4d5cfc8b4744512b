//! Signing in with an upstream identity provider, as a step of the sign-in
//! state machine: [`begin`] sends the browser to the provider for a
//! pending authorization request (code + PKCE + `state` + `nonce`, or a
//! SAML AuthnRequest with `state` as its RelayState; the `state` kept
//! server-side and bound to this browser by a cookie); [`finish`] checks
//! the answer (redeems the code and verifies the ID token, or verifies the
//! SAML response and refuses a replayed assertion), finds the local account
//! (`accounts.rs`) and ends in `login::proven`, like every other first
//! factor. `amr` is what the provider reported plus `fed`; `acr` is the
//! password level, so step-up still applies at our side.

use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::CoreProviderMetadata;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::app::App;
use crate::authorize::{self, Refusal};
use crate::crypto::{digest, random_token};
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::login::Browser;

mod accounts;

use crate::config::{ProviderConfig, ProviderKind};
use crate::model::UpstreamIdentity as Identity;
use crate::upstream::{Upstream, github, oidc, saml};

/// How long a person has at the provider.
const AT_PROVIDER: Duration = Duration::from_secs(600);

/// The provider `id`, or the page that says there is none.
fn provider<'a>(app: &'a App, id: &str) -> Result<&'a Upstream, Refusal> {
    app.upstreams
        .get(id)
        .ok_or_else(|| Refusal::Page(format!("there is no sign-in provider `{id}`")))
}

async fn metadata(app: &App, provider: &Upstream) -> Result<Arc<CoreProviderMetadata>, Refusal> {
    provider
        .metadata(&app.outbound, app.config.dev)
        .await
        .map_err(|e| unavailable(provider, &e))
}

/// Where the provider answers (for SAML: the assertion consumer service).
fn redirect_uri(app: &App, provider: &str) -> String {
    format!("{}/login/federated/{provider}/callback", app.issuer)
}

/// Our service provider for a SAML provider.
async fn saml_sp(
    app: &App,
    provider: &Upstream,
) -> Result<Arc<samael::service_provider::ServiceProvider>, Refusal> {
    let acs = redirect_uri(app, &provider.config.id);
    provider
        .saml(&app.outbound, &app.issuer, &acs)
        .await
        .map_err(|e| unavailable(provider, &e))
}

fn unavailable(provider: &Upstream, error: &str) -> Refusal {
    tracing::warn!(provider = %provider.config.id, error = %error, "upstream provider unavailable");
    Refusal::Failed {
        status: 502,
        message: format!(
            "{} cannot be reached right now; try again, or sign in another way",
            provider.config.name
        ),
    }
}

/// Our SAML metadata for provider `provider_id`, for its IdP's
/// administrator.
pub async fn saml_metadata(app: &App, provider_id: &str) -> Result<String, Refusal> {
    let provider = provider(app, provider_id)?;
    if provider.config.kind != ProviderKind::Saml {
        return Err(Refusal::Page(format!(
            "`{provider_id}` is not a SAML provider"
        )));
    }
    let acs = redirect_uri(app, provider_id);
    saml::metadata(&provider.config, &app.issuer, &acs).map_err(|e| Refusal::Failed {
        status: 500,
        message: e,
    })
}

/// A sign-in underway at a provider, kept under the digest of its `state`.
#[derive(Debug, Serialize, Deserialize)]
struct Underway {
    provider: String,
    request_id: String,
    /// OpenID Connect's `nonce`; SAML: the AuthnRequest's id, which the
    /// answer must be `InResponseTo`.
    nonce: String,
    verifier: String,
    /// The digest of the cookie value that ties it to one browser.
    browser: String,
    /// The browser's session when it left, as `(user, handle)`: a SAML
    /// answer comes by a cross-site POST, without the session cookie, yet
    /// the old session must end when the new one begins.
    #[serde(default)]
    previous: Option<(String, String)>,
}

/// Where to send the browser, and the value of the cookie that binds the
/// sign-in to it.
#[derive(Debug)]
pub struct Begun {
    pub location: String,
    pub browser_binding: String,
    /// The provider answers with a cross-site POST (SAML): the cookie must
    /// be sent with it.
    pub posts_back: bool,
}

/// Sends the browser of request `request_id` to provider `provider_id`;
/// `previous`: the browser's session, `(id, user)`, if it has one.
pub async fn begin(
    app: &App,
    provider_id: &str,
    request_id: &str,
    previous: Option<(&str, &str)>,
) -> Result<Begun, Refusal> {
    let provider = provider(app, provider_id)?;
    let req = authorize::load(app, request_id).await?;
    let fresh = req.max_age.is_some() || req.prompt.as_deref().is_some_and(|p| p.contains("login"));
    let state = random_token::<32>();
    let binding = random_token::<24>();
    let mut underway = Underway {
        provider: provider_id.to_owned(),
        request_id: request_id.to_owned(),
        nonce: random_token::<32>(),
        verifier: random_token::<32>(),
        browser: digest(&binding),
        previous: previous.map(|(id, user)| (user.to_owned(), crate::session::handle(id))),
    };
    let redirect = redirect_uri(app, provider_id);
    let location = match provider.config.kind {
        ProviderKind::Oidc | ProviderKind::Google | ProviderKind::Entra => oidc::authorization_url(
            metadata(app, provider).await?.as_ref(),
            &provider.config,
            &redirect,
            &state,
            &underway.nonce,
            &underway.verifier,
        )
        .map_err(|e| Refusal::Page(format!("provider `{provider_id}`: {e}")))?,
        ProviderKind::Github => {
            github::authorization_url(&provider.config, &redirect, &state, &underway.verifier)
        }
        ProviderKind::Saml => {
            let request = saml::request(&*saml_sp(app, provider).await?, &state, fresh)
                .map_err(|e| Refusal::Page(format!("provider `{provider_id}`: {e}")))?;
            underway.nonce = request.id;
            request.location
        }
    };
    let bytes = serde_json::to_vec(&underway).map_err(|e| OAuthError::server_error(&e))?;
    app.ephemeral
        .put(&keys::federated_login(&state), &bytes, AT_PROVIDER)
        .await
        .map_err(OAuthError::from)?;
    Ok(Begun {
        location,
        browser_binding: binding,
        posts_back: provider.config.kind == ProviderKind::Saml,
    })
}

/// The provider's answer at our callback.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub state: Option<&'a str>,
    pub code: Option<&'a str>,
    pub error: Option<&'a str>,
    pub error_description: Option<&'a str>,
    /// SAML: the base64 `SAMLResponse` (`state` is its RelayState).
    pub saml_response: Option<&'a str>,
    /// The binding cookie this browser sent.
    pub browser_binding: Option<&'a str>,
}

/// Where a federated sign-in ended.
#[derive(Debug)]
pub enum Finished {
    /// The upstream sign-in was a first factor: a second one next, or a
    /// session began (as after a password).
    Step(crate::login::LoginStep),
    /// No account is linked and none may be guessed: the person signs in
    /// to an existing account here, in this browser (the binding cookie),
    /// which links it.
    ProveAccount {
        request_id: String,
        browser_binding: String,
    },
}

/// Checks the provider's answer and signs the person in (or asks them to
/// prove the account to link).
pub async fn finish(
    app: &App,
    provider_id: &str,
    answer: Answer<'_>,
    browser: &Browser<'_>,
    now: i64,
) -> Result<Finished, Refusal> {
    let provider = provider(app, provider_id)?;
    let name = &provider.config.name;
    let expired = || {
        Refusal::Page(format!(
            "This sign-in with {name} has expired or was not started in this browser. Go back to the application and start again."
        ))
    };
    let state = answer.state.ok_or_else(expired)?;
    let underway: Underway = app
        .ephemeral
        .take(&keys::federated_login(state))
        .await
        .map_err(OAuthError::from)?
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(expired)?;
    let same_browser = answer
        .browser_binding
        .is_some_and(|b| digest(b) == underway.browser);
    if underway.provider != provider_id || !same_browser {
        return Err(expired());
    }
    if let Some(error) = answer.error {
        return Err(Refusal::Page(format!(
            "{name} did not sign you in ({error}{}).",
            answer
                .error_description
                .map(|d| format!(": {d}"))
                .unwrap_or_default()
        )));
    }
    let code = || {
        answer
            .code
            .ok_or_else(|| Refusal::Page(format!("{name} sent no authorization code")))
    };
    let redirect = redirect_uri(app, provider_id);
    let refused = |e: String| {
        tracing::warn!(provider = %provider_id, error = %e, "federated sign-in refused");
        Refusal::Page(format!(
            "The sign-in with {name} could not be verified: {e}"
        ))
    };
    let identity = match provider.config.kind {
        ProviderKind::Oidc | ProviderKind::Google | ProviderKind::Entra => {
            let claims = oidc::redeem(
                &app.outbound,
                metadata(app, provider).await?.as_ref(),
                &provider.config,
                &redirect,
                code()?,
                &underway.verifier,
                &underway.nonce,
            )
            .await
            .map_err(refused)?;
            identity(&provider.config, &claims)?
        }
        ProviderKind::Github => github::identity(
            &app.outbound,
            &provider.config,
            &redirect,
            code()?,
            &underway.verifier,
        )
        .await
        .map_err(refused)?,
        ProviderKind::Saml => {
            let encoded = answer
                .saml_response
                .ok_or_else(|| Refusal::Page(format!("{name} sent no SAMLResponse")))?
                .to_owned();
            let sp = saml_sp(app, provider).await?;
            let cfg = provider.config.clone();
            let request_id = underway.nonce.clone();
            // xmlsec is CPU work: off the async workers.
            let accepted =
                tokio::task::spawn_blocking(move || saml::accept(&sp, &cfg, &encoded, &request_id))
                    .await
                    .map_err(|e| OAuthError::server_error(&e))?
                    .map_err(refused)?;
            // An assertion is good once: remembered while it could be
            // taken (samael refuses one issued more than 90 s ago, with up
            // to 180 s of clock skew, whatever its NotOnOrAfter says).
            let left = u64::try_from(accepted.expires - now).unwrap_or(0);
            let ttl = Duration::from_secs(left.min(600) + 300);
            let fresh = app
                .ephemeral
                .put_new(
                    &keys::saml_assertion(provider_id, &accepted.assertion_id),
                    b"1",
                    ttl,
                )
                .await
                .map_err(OAuthError::from)?;
            if !fresh {
                return Err(refused("this assertion was used before".into()));
            }
            accepted.identity
        }
    };
    let mut req = authorize::load(app, &underway.request_id).await?;
    match accounts::resolve(app, &provider.config, &identity, now).await? {
        accounts::Resolved::User(user) => {
            accounts::sync_groups(app, &provider.config, &user.id, &identity, now).await?;
            let mut amr = identity.amr.clone();
            amr.retain(|a| a != "fed");
            amr.push("fed".into());
            // A federated sign-in never completes a link by proof.
            req.pending_link = None;
            let client = if req.local {
                None
            } else {
                app.client(&req.client_id).await.map_err(OAuthError::from)?
            };
            let client_name = client
                .as_ref()
                .map_or_else(|| authorize::LOCAL_NAME.to_owned(), |c| c.name.clone());
            // The session the browser left with, when its cookie did not
            // come back (a cross-site POST): it ends here, as `proven`
            // ends the one that did.
            if browser.previous_session.is_none()
                && let Some((user_id, handle)) = &underway.previous
                && let Ok(Some(ended)) =
                    crate::session::end_by_handle(&app.ephemeral, user_id, handle).await
            {
                crate::logout::ended(app, &[ended], now).await;
            }
            // The account's own second factor still applies.
            let step = crate::login::proven(
                app,
                &underway.request_id,
                req,
                client.as_deref(),
                client_name,
                user,
                amr,
                browser,
                now,
            )
            .await?;
            Ok(Finished::Step(step))
        }
        accounts::Resolved::ProveAccount => {
            let holding = crate::linking::hold(app, &identity).await?;
            req.pending_link = Some(holding.token);
            authorize::save(app, &underway.request_id, &req).await?;
            Ok(Finished::ProveAccount {
                request_id: underway.request_id,
                browser_binding: holding.browser_binding,
            })
        }
    }
}

/// The identity in verified claims.
fn identity(cfg: &ProviderConfig, claims: &Map<String, Value>) -> Result<Identity, Refusal> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let list = |k: &str| -> Vec<String> {
        match claims.get(k) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        }
    };
    let missing = |what: &str| Refusal::Page(format!("{} sent no {what}", cfg.name));
    // Entra: the object id within its tenant names the account (`sub` is
    // per application, `email` and `upn` can change hands); Entra sends
    // no `email_verified`, so its address is never taken as verified.
    let (subject, email_verified) = if cfg.kind == ProviderKind::Entra {
        let tid = text("tid").ok_or_else(|| missing("tenant (`tid`)"))?;
        let oid = text("oid").ok_or_else(|| missing("object id (`oid`)"))?;
        (format!("{tid}:{oid}"), false)
    } else {
        let sub = text("sub")
            .filter(|s| !s.is_empty())
            .ok_or_else(|| missing("subject"))?;
        let verified = claims.get("email_verified").and_then(Value::as_bool) == Some(true);
        (sub, verified)
    };
    Ok(Identity {
        provider: cfg.id.clone(),
        subject,
        email: text("email"),
        email_verified,
        name: text("name"),
        username: text("preferred_username"),
        groups: list(&cfg.groups_claim),
        // Entra's overage: the groups are elsewhere (`_claim_names`).
        groups_complete: claims
            .get("_claim_names")
            .and_then(|n| n.get(&cfg.groups_claim))
            .is_none(),
        hosted_domain: text("hd"),
        amr: list("amr"),
    })
}
