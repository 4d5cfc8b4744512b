//! The consent step: the signed-in user allows or denies what a client
//! asked for. Allowing remembers the grant (audited in the same
//! transaction) and goes on with the authorization request; denying ends
//! the request with `access_denied` at the client.

use crate::app::App;
use crate::authorize::{self, Next, Refusal};
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::model::AuditEvent;
use crate::session::Session;

/// What the user chose on the consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    Allow,
    Deny,
}

impl Choice {
    /// The form's `decision` field.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            _ => None,
        }
    }
}

/// The user's choice for request `request_id`, made in session
/// `session_id`.
pub async fn decide(
    app: &App,
    request_id: &str,
    (session_id, session): (&str, &Session),
    choice: Choice,
    now: i64,
) -> Result<Next, Refusal> {
    let req = authorize::load(app, request_id).await?;
    match choice {
        Choice::Allow => {
            let event = AuditEvent::new(now, session.user_id.clone(), "consent.grant")
                .client(req.client_id.clone())
                .detail(serde_json::json!({"scopes": req.scopes}));
            app.store
                .grant_consent(&session.user_id, &req.client_id, &req.scopes, &event)
                .await
                .map_err(OAuthError::from)?;
            authorize::resume(app, request_id, Some((session_id, session)), true, now).await
        }
        Choice::Deny => {
            app.ephemeral
                .delete(&keys::auth_request(request_id))
                .await
                .map_err(OAuthError::from)?;
            let event = AuditEvent::new(now, session.user_id.clone(), "consent.deny")
                .client(req.client_id.clone());
            app.audit.record(event).await.map_err(OAuthError::from)?;
            if let Some(handle) = &req.device {
                crate::device::deny(app, &req.client_id, handle, now).await?;
                let client_name = match app.client(&req.client_id).await {
                    Ok(Some(c)) => c.name.clone(),
                    _ => req.client_id.clone(),
                };
                return Ok(Next::DeviceDone {
                    client_name,
                    approved: false,
                });
            }
            Ok(Next::Redirect(authorize::error_redirect(
                app,
                &req,
                "access_denied",
                "the user denied the request",
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::testing::{self, NOW};

    async fn signed_in(app: &App) -> (String, String, Session) {
        let alice = testing::alice_and_client(app).await;
        let id = testing::request(app, "").await;
        let session = testing::session(&alice.id, NOW);
        (id, "sid".into(), session)
    }

    #[tokio::test]
    async fn a_new_client_asks_and_allowing_remembers_the_grant() {
        let app = testing::app().await;
        let (id, sid, session) = signed_in(&app).await;
        let next = authorize::resume(&app, &id, Some((&sid, &session)), false, NOW)
            .await
            .unwrap();
        assert!(
            matches!(&next, Next::Consent { scopes, .. } if scopes.len() == 2),
            "{next:?}"
        );
        let next = decide(&app, &id, (&sid, &session), Choice::Allow, NOW)
            .await
            .unwrap();
        let Next::Redirect(location) = next else {
            panic!("allowing did not redirect: {next:?}");
        };
        assert!(location.starts_with(testing::REDIRECT), "{location}");
        assert!(
            location.contains("code=") && location.contains("state=s1"),
            "{location}"
        );
        let granted = app
            .store
            .consent(&session.user_id, testing::CLIENT)
            .await
            .unwrap();
        assert_eq!(granted.len(), 2);
        // The next request of this client goes straight through.
        let again = testing::request(&app, "").await;
        let next = authorize::resume(&app, &again, Some((&sid, &session)), false, NOW)
            .await
            .unwrap();
        assert!(matches!(next, Next::Redirect(_)), "{next:?}");
    }

    #[tokio::test]
    async fn denying_ends_the_request_with_access_denied() {
        let app = testing::app().await;
        let (id, sid, session) = signed_in(&app).await;
        let next = decide(&app, &id, (&sid, &session), Choice::Deny, NOW)
            .await
            .unwrap();
        let Next::Redirect(location) = next else {
            panic!("denying did not redirect: {next:?}");
        };
        assert!(location.contains("error=access_denied"), "{location}");
        assert!(
            location.contains("iss=https%3A%2F%2Fauth.test"),
            "{location}"
        );
        assert!(
            authorize::load(&app, &id).await.is_err(),
            "the request is spent"
        );
        assert!(
            app.store
                .consent(&session.user_id, testing::CLIENT)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(Choice::parse("allow"), Some(Choice::Allow));
        assert_eq!(Choice::parse("Allow"), None);
    }
}
