//! OpenID Connect Back-Channel Logout 1.0, the sending side. Each grant
//! that issues tokens in a browser session records the client under the
//! session's `sid` ([`issued_in`]); when the session ends, however it ends
//! (sign-out, the account page, an administrator, the user disabled),
//! `logout::ended` calls [`notify`], and every such client with a
//! `backchannel_logout_uri` gets a logout token. Deliveries run in the
//! background with retries: a slow or absent client never holds up a
//! sign-out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::app::App;
use crate::crypto::random_token;
use crate::ephemeral::{EphemeralError, keys};
use crate::error::OAuthError;
use crate::session::Session;

/// The `events` member that makes a JWT a logout token (§2.4).
pub const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// The `typ` header of a logout token (§2.4, recommended explicit typing).
pub const TYP: &str = "logout+jwt";
/// How long a logout token is good for: long enough for retries and clock
/// skew, short enough that a captured one is soon worthless.
const LIFETIME: i64 = 120;
/// Delivery attempts, the first at once, then after 1, 2 and 4 seconds.
const ATTEMPTS: u32 = 4;

/// Remembers that `client_id` was issued tokens in the session `sid`.
pub async fn issued_in(app: &App, sid: &str, client_id: &str) -> Result<(), EphemeralError> {
    let lifetime = Duration::from_secs(app.config.login.session_seconds);
    app.ephemeral
        .add_member(&keys::clients_of_session(sid), client_id, lifetime)
        .await
}

/// The claims of a logout token for `client_id` about the session `sid`
/// of `sub` (§2.4): no `nonce`, a fresh `jti`, a short `exp`.
pub fn logout_claims(issuer: &str, client_id: &str, sub: &str, sid: &str, now: i64) -> Value {
    json!({
        "iss": issuer,
        "aud": client_id,
        "iat": now,
        "exp": now + LIFETIME,
        "jti": random_token::<16>(),
        "sub": sub,
        "sid": sid,
        "events": {EVENT: {}},
    })
}

/// Tells the clients of each ended session. Failures are logged: the
/// sessions are over whatever a client hears.
pub async fn notify(app: &App, sessions: &[Session], now: i64) {
    for session in sessions.iter().filter(|s| !s.sid.is_empty()) {
        if let Err(e) = notify_one(app, session, now).await {
            tracing::warn!(error = %e.description, "back-channel logout not sent");
        }
    }
}

async fn notify_one(app: &App, session: &Session, now: i64) -> Result<(), OAuthError> {
    let key = keys::clients_of_session(&session.sid);
    let clients = app.ephemeral.members(&key).await?;
    app.ephemeral.delete(&key).await?;
    for client_id in clients {
        let Some(client) = app.client(&client_id).await? else {
            continue;
        };
        let Some(uri) = client.backchannel_logout_uri.clone() else {
            continue;
        };
        let claims = logout_claims(&app.issuer, &client.id, &session.user_id, &session.sid, now);
        let token = app
            .keys
            .current()
            .signer
            .sign(TYP, &claims)
            .map_err(|e| OAuthError::server_error(&e))?;
        let http = app.outbound.clone();
        let counter = app.metrics.backchannel_logouts.clone();
        tokio::spawn(async move {
            let result = deliver(&http, &uri, &token).await;
            let label = match &result {
                Ok(()) => "delivered",
                Err(why) => {
                    tracing::warn!(client = %client_id, error = %why, "back-channel logout failed");
                    "failed"
                }
            };
            counter.with_label_values(&[label]).inc();
        });
    }
    Ok(())
}

/// POSTs `logout_token` (§2.5); a 2xx ends it, anything else is tried again.
async fn deliver(http: &reqwest::Client, uri: &str, token: &str) -> Result<(), String> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
        let sent = http
            .post(uri)
            .header("cache-control", "no-store")
            .form(&[("logout_token", token)])
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("{uri} answered {}", r.status()),
            Err(e) => last = format!("{uri} unreachable: {e}"),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_logout_token_names_the_session_and_is_no_id_token() {
        let claims = logout_claims("https://auth.test", "web", "user-1", "sid-1", 1000);
        assert_eq!(claims["aud"], "web");
        assert_eq!(
            (claims["sub"].as_str(), claims["sid"].as_str()),
            (Some("user-1"), Some("sid-1"))
        );
        assert_eq!(claims["events"][EVENT], json!({}));
        assert_eq!(claims["exp"], 1000 + LIFETIME);
        assert!(
            claims.get("nonce").is_none(),
            "§2.4: a logout token has no nonce"
        );
        let other = logout_claims("https://auth.test", "web", "user-1", "sid-1", 1000);
        assert_ne!(claims["jti"], other["jti"]);
    }
}
