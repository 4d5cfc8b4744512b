//! Password login with backoff and lockout. Failures are counted in
//! sliding windows per account and per source address (in the ephemeral
//! store, so all replicas share them). Unknown accounts, wrong passwords and
//! disabled accounts look alike from outside, in answer and in time.

use std::net::IpAddr;
use std::time::Duration;

use serde_json::json;

use crate::app::App;
use crate::ephemeral::keys;
use crate::error::OAuthError;
use crate::model::{AuditEvent, User};

/// The one message for every failed login.
pub const FAILED: &str = "Wrong username or password.";
pub const LOCKED: &str = "Too many failed sign-in attempts. Try again later.";

#[derive(Debug)]
pub enum Outcome {
    Success(User),
    Failed,
    Locked,
}

/// `a***e`: enough to correlate log lines, not enough to read the name.
pub fn mask(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    match chars.as_slice() {
        [] => String::new(),
        [one] => format!("{one}***"),
        [first, .., last] => format!("{first}***{last}"),
    }
}

fn account_key(username: &str) -> String {
    keys::login_failures_of_account(username)
}

/// Failures count per address; an IPv6 client holds a whole /64, so its
/// addresses count together.
fn address_key(ip: Option<IpAddr>) -> String {
    keys::login_failures_from(&ip.map_or_else(
        || "unknown".into(),
        |ip| bootstrap::net::bucket(ip, 64).to_string(),
    ))
}

pub async fn password(
    app: &App,
    username: &str,
    password: &str,
    client_id: &str,
    source: Option<IpAddr>,
    now_ms: i64,
) -> Result<Outcome, OAuthError> {
    let now = now_ms / 1000;
    let cfg = &app.config.login;
    let window = Duration::from_secs(cfg.window_seconds);
    let (account, address) = (account_key(username), address_key(source));
    // The attempt is counted before the password is checked, so parallel
    // guesses cannot all slip under the limit; a success clears it.
    let account_attempts = app.ephemeral.hit(&account, window, now_ms).await?;
    let address_failures = app.ephemeral.hits(&address, window, now_ms).await?;
    let audit = |action: &str| {
        AuditEvent::new(now, "anonymous", action)
            .source(source)
            .client(client_id)
            .detail(json!({"username": mask(username)}))
    };
    if account_attempts > cfg.max_failures_per_account
        || address_failures >= cfg.max_failures_per_address
    {
        app.audit.record(audit("login.locked").failed()).await?;
        app.metrics.logins.with_label_values(&["locked"]).inc();
        tracing::warn!(username = %mask(username), source = ?source, "login refused: locked out");
        return Ok(Outcome::Locked);
    }
    let user = app.store.user_by_username(username).await?;
    let passwords = app.passwords.clone();
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let given = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || passwords.verify(&given, stored.as_deref()))
        .await
        .map_err(|e| OAuthError::server_error(&e))?;
    match user {
        Some(user) if matches && !user.disabled => {
            app.ephemeral.delete(&account).await?;
            let event = AuditEvent::new(now, user.id.clone(), "login.success")
                .target(user.id.clone())
                .source(source)
                .client(client_id);
            app.audit.record(event).await?;
            app.metrics.logins.with_label_values(&["success"]).inc();
            rehash_if_needed(app, &user, password, now).await;
            Ok(Outcome::Success(user))
        }
        _ => {
            app.ephemeral.hit(&address, window, now_ms).await?;
            app.audit.record(audit("login.failure").failed()).await?;
            app.metrics.logins.with_label_values(&["failure"]).inc();
            // Backoff: each failure on an account costs the next try more.
            let exponent = u32::try_from(account_attempts.saturating_sub(1).min(5)).unwrap_or(5);
            tokio::time::sleep(
                Duration::from_millis(100 * 2u64.pow(exponent)).min(Duration::from_secs(2)),
            )
            .await;
            Ok(Outcome::Failed)
        }
    }
}

/// After a successful login, upgrade a hash made with older parameters.
/// A failure here only means the upgrade waits for the next login.
async fn rehash_if_needed(app: &App, user: &User, password: &str, now: i64) {
    let Some(hash) = &user.password_hash else {
        return;
    };
    if !app.passwords.needs_rehash(hash) {
        return;
    }
    if let Err(e) = crate::admin::set_password(
        app,
        user,
        password.to_owned(),
        crate::model::Actor::local("system"),
        now,
    )
    .await
    {
        tracing::warn!(error = %e, "password rehash failed");
    }
}

#[cfg(test)]
mod tests {
    use super::mask;

    #[test]
    fn masks_keep_only_the_ends() {
        assert_eq!(mask("alice"), "a***e");
        assert_eq!(mask("a"), "a***");
        assert_eq!(mask(""), "");
        assert_eq!(mask("zoë"), "z***ë");
    }
}
