//! RP-initiated logout (OIDC RP-Initiated Logout 1.0) as domain logic:
//! which redirect a logout request may end at, whether the user must
//! confirm, and ending the session. The HTTP layer renders the pages.

use crate::app::App;
use crate::authorize;
use crate::error::OAuthError;
use crate::form::Form;
use crate::model::AuditEvent;
use crate::session::{self, Session};

/// The parameters of a logout request.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogoutRequest<'a> {
    pub id_token_hint: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub post_logout_redirect_uri: Option<&'a str>,
    pub state: Option<&'a str>,
}

impl<'a> LogoutRequest<'a> {
    pub const FIELDS: [&'static str; 4] = [
        "post_logout_redirect_uri",
        "state",
        "client_id",
        "id_token_hint",
    ];

    pub fn from_form(form: &'a Form) -> Self {
        Self {
            id_token_hint: form.get("id_token_hint"),
            client_id: form.get("client_id"),
            post_logout_redirect_uri: form.get("post_logout_redirect_uri"),
            state: form.get("state"),
        }
    }
}

/// Why a logout request is refused.
#[derive(Debug, PartialEq, Eq)]
pub enum LogoutError {
    /// The request names something it may not (status 400).
    Invalid(String),
    /// A store failed (status 503).
    Unavailable(String),
}

/// What a valid logout request leads to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Where the browser goes afterwards: a registered post-logout
    /// redirect URI of the client the request identifies, with `state`.
    pub target: Option<String>,
    /// The subject of a valid `id_token_hint`.
    pub hinted_subject: Option<String>,
}

impl Plan {
    /// Whether the signed-in user must confirm: unless the request carries
    /// an ID token of that very user, a cross-site link could otherwise
    /// sign anyone out.
    pub fn needs_confirmation(&self, session: Option<&Session>) -> bool {
        session.is_some_and(|s| self.hinted_subject.as_deref() != Some(s.user_id.as_str()))
    }
}

/// Checks a logout request.
pub async fn plan(app: &App, req: &LogoutRequest<'_>) -> Result<Plan, LogoutError> {
    let invalid = |m: String| Err(LogoutError::Invalid(m));
    let (hinted_subject, hinted_audience) = match req.id_token_hint {
        None => (None, None),
        Some(hint) => {
            match crate::token::read_id_token_hint(&app.keys.current(), &app.issuer, hint) {
                Some((sub, aud)) => (Some(sub), Some(aud)),
                None => return invalid("`id_token_hint` is not an ID token issued here".into()),
            }
        }
    };
    if let (Some(aud), Some(client_id)) = (&hinted_audience, req.client_id)
        && aud != client_id
    {
        return invalid("`client_id` differs from the audience of `id_token_hint`".into());
    }
    let Some(uri) = req.post_logout_redirect_uri else {
        return Ok(Plan {
            target: None,
            hinted_subject,
        });
    };
    let Some(client_id) = hinted_audience.or_else(|| req.client_id.map(str::to_owned)) else {
        return invalid("`post_logout_redirect_uri` needs `id_token_hint` or `client_id`".into());
    };
    let client = match app.store.client(&client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return invalid(format!("unknown client `{client_id}`")),
        Err(e) => return Err(LogoutError::Unavailable(OAuthError::from(e).description)),
    };
    if !client.post_logout_redirect_uris.iter().any(|u| u == uri) {
        return invalid(format!(
            "`{uri}` is not a registered post-logout redirect URI of client `{client_id}`"
        ));
    }
    let target = match req.state {
        Some(state) => authorize::redirect_with(uri, &[("state", state)]),
        None => uri.to_owned(),
    };
    Ok(Plan {
        target: Some(target),
        hinted_subject,
    })
}

/// What ending sessions means beyond their records: counted, the
/// refresh-token families their sign-ins started revoked, a revocation in
/// the change feed for each (its `sid`), so gateways refuse the tokens
/// that carry it, and a logout token to each client they issued to that
/// asked for one (`backchannel`). A failure is logged: the sessions are
/// gone whatever follows.
pub async fn ended(app: &App, sessions: &[Session], now: i64) {
    let horizon = now + i64::try_from(app.config.tokens.access_seconds).unwrap_or(3600);
    let mut feed = Vec::new();
    for s in sessions {
        app.session_ended(s);
        if s.sid.is_empty() {
            continue;
        }
        if let Err(e) = crate::issue::end_session_families(app, &s.sid, now).await {
            tracing::warn!(error = %e, "refresh tokens of an ended session not revoked");
        }
        feed.push((
            serde_json::json!({"revocation": "session", "sid": s.sid, "exp": horizon}),
            horizon,
        ));
    }
    if !feed.is_empty()
        && let Err(e) = app.store.append_revocations(now, &feed).await
    {
        tracing::warn!(error = %e, "ended sessions not in the change feed");
    }
    crate::backchannel::notify(app, sessions, now).await;
}

/// Ends the browser's session (if any) and audits it.
pub async fn end(app: &App, session: Option<(&str, &Session)>, now: i64) -> Result<(), OAuthError> {
    let Some((session_id, session)) = session else {
        return Ok(());
    };
    // The session ends even if the audit write then fails: the user asked
    // to be signed out, and the error is reported.
    if let Some(ended) = session::end(&app.ephemeral, session_id)
        .await
        .map_err(|e| OAuthError::unavailable(&e))?
    {
        self::ended(app, &[ended], now).await;
    }
    let event =
        AuditEvent::new(now, session.user_id.clone(), "logout").target(session.user_id.clone());
    app.audit.record(event).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{self, AFTER_LOGOUT, CLIENT, NOW};

    #[tokio::test]
    async fn only_a_registered_target_of_the_named_client_is_followed() {
        let app = testing::app().await;
        testing::alice_and_client(&app).await;
        let none = plan(&app, &LogoutRequest::default()).await.unwrap();
        assert_eq!(none, Plan::default());
        let good = LogoutRequest {
            client_id: Some(CLIENT),
            post_logout_redirect_uri: Some(AFTER_LOGOUT),
            state: Some("x y"),
            ..LogoutRequest::default()
        };
        let p = plan(&app, &good).await.unwrap();
        assert_eq!(p.target.as_deref(), Some("https://app.test/bye?state=x+y"));
        for (bad, why) in [
            (
                LogoutRequest {
                    client_id: Some(CLIENT),
                    post_logout_redirect_uri: Some("https://evil.test/"),
                    ..good
                },
                "not a registered post-logout redirect URI",
            ),
            (
                LogoutRequest {
                    client_id: None,
                    ..good
                },
                "needs `id_token_hint` or `client_id`",
            ),
            (
                LogoutRequest {
                    client_id: Some("nobody"),
                    ..good
                },
                "unknown client `nobody`",
            ),
            (
                LogoutRequest {
                    id_token_hint: Some("not.a.token"),
                    ..good
                },
                "`id_token_hint` is not an ID token issued here",
            ),
        ] {
            let err = plan(&app, &bad).await.unwrap_err();
            assert!(
                matches!(&err, LogoutError::Invalid(m) if m.contains(why)),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_signed_in_user_confirms_unless_the_hint_is_theirs_and_ending_ends_the_session() {
        let app = testing::app().await;
        let alice = testing::alice_and_client(&app).await;
        let session = testing::session(&alice.id, NOW);
        let anonymous = Plan::default();
        assert!(!anonymous.needs_confirmation(None));
        assert!(anonymous.needs_confirmation(Some(&session)));
        let hinted = Plan {
            target: None,
            hinted_subject: Some(alice.id.clone()),
        };
        assert!(!hinted.needs_confirmation(Some(&session)));
        let someone_else = Plan {
            target: None,
            hinted_subject: Some("bob".into()),
        };
        assert!(someone_else.needs_confirmation(Some(&session)));

        let sid = session::create(&app.ephemeral, &session, std::time::Duration::from_secs(60))
            .await
            .unwrap();
        end(&app, Some((&sid, &session)), NOW).await.unwrap();
        assert!(session::load(&app.ephemeral, &sid).await.unwrap().is_none());
        end(&app, None, NOW).await.unwrap();
    }
}
