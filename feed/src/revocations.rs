//! The revocations that still matter: users who may not sign in (until
//! the feed says they may again), and sessions and tokens until they
//! would have expired. A set is immutable once shared; a batch of changes
//! makes a new one, swapped in whole, so readers never wait.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    users: HashSet<String>,
    /// Users made active again: `sub` → (tokens issued before this are
    /// refused, until when that matters).
    reinstated: HashMap<String, (i64, i64)>,
    /// `sid` → when tokens carrying it expire.
    sessions: HashMap<String, i64>,
    /// `jti` → the token's `exp`.
    tokens: HashMap<String, i64>,
}

impl Revocations {
    /// Applies one revocation as the feed carries it; anything else is
    /// ignored (a newer authserver may add kinds).
    pub fn apply(&mut self, body: &Value) {
        let text = |k: &str| body[k].as_str().map(str::to_owned);
        match body["revocation"].as_str() {
            Some("user") => {
                let Some(sub) = text("sub") else { return };
                if body["revoked"] == true {
                    self.users.insert(sub);
                    return;
                }
                self.users.remove(&sub);
                if let (Some(not_before), Some(exp)) =
                    (body["not_before"].as_i64(), body["exp"].as_i64())
                {
                    self.reinstated.insert(sub, (not_before, exp));
                }
            }
            Some("session") => {
                if let (Some(sid), Some(exp)) = (text("sid"), body["exp"].as_i64()) {
                    self.sessions.insert(sid, exp);
                }
            }
            Some("token") => {
                if let (Some(jti), Some(exp)) = (text("jti"), body["exp"].as_i64()) {
                    self.tokens.insert(jti, exp);
                }
            }
            _ => {}
        }
    }

    /// Forgets what expired before `now`.
    pub fn prune(&mut self, now: i64) {
        self.sessions.retain(|_, exp| *exp >= now);
        self.tokens.retain(|_, exp| *exp >= now);
        self.reinstated.retain(|_, (_, exp)| *exp >= now);
    }

    /// Whether a token with these claims is revoked: its user is
    /// inactive, or was made active again after it was issued (a token
    /// without `iat` cannot show it is newer), or its session or itself
    /// was revoked. `iat` counts whole seconds: a token issued in the very
    /// second of the reactivation passes (so one made just after does);
    /// its session's revocation, when the session was known, still
    /// refuses it.
    pub fn refuses(&self, token: &TokenFacts<'_>) -> bool {
        token.sub.is_some_and(|s| {
            self.users.contains(s)
                || self
                    .reinstated
                    .get(s)
                    .is_some_and(|(not_before, _)| token.iat.is_none_or(|i| i < *not_before))
        }) || token.sid.is_some_and(|s| self.sessions.contains_key(s))
            || token.jti.is_some_and(|j| self.tokens.contains_key(j))
    }

    pub fn len(&self) -> usize {
        self.users.len() + self.reinstated.len() + self.sessions.len() + self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a revocation may name in a verified token.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenFacts<'a> {
    pub sub: Option<&'a str>,
    pub sid: Option<&'a str>,
    pub jti: Option<&'a str>,
    pub iat: Option<i64>,
}

/// The current set, shared by every request.
#[derive(Debug, Default)]
pub struct SharedRevocations(ArcSwap<Revocations>);

impl SharedRevocations {
    pub fn load(&self) -> Arc<Revocations> {
        self.0.load_full()
    }

    /// Whether a token of the feed's issuer with these claims is revoked.
    pub fn refuses(&self, token: &TokenFacts<'_>) -> bool {
        self.0.load().refuses(token)
    }

    pub(crate) fn store(&self, next: Revocations) {
        self.0.store(Arc::new(next));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn users_sessions_and_tokens() {
        let token = |sub, sid, jti| TokenFacts {
            sub,
            sid,
            jti,
            iat: Some(10),
        };
        let mut r = Revocations::default();
        r.apply(&json!({"revocation": "user", "sub": "u1", "revoked": true}));
        r.apply(&json!({"revocation": "session", "sid": "s1", "exp": 100}));
        r.apply(&json!({"revocation": "token", "jti": "t1", "exp": 50}));
        r.apply(&json!({"revocation": "weather", "sub": "u2"}));
        assert!(r.refuses(&token(Some("u1"), None, None)));
        assert!(r.refuses(&token(Some("u9"), Some("s1"), None)));
        assert!(r.refuses(&token(None, None, Some("t1"))));
        assert!(!r.refuses(&token(Some("u2"), Some("s2"), Some("t2"))));
        r.prune(60);
        assert!(!r.refuses(&token(None, None, Some("t1"))), "expired");
        assert!(r.refuses(&token(None, Some("s1"), None)));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn a_user_made_active_again_keeps_older_tokens_refused() {
        let mut r = Revocations::default();
        r.apply(&json!({"revocation": "user", "sub": "u1", "revoked": true}));
        r.apply(&json!({"revocation": "user", "sub": "u1", "revoked": false, "not_before": 100, "exp": 5000}));
        let issued = |iat| TokenFacts {
            sub: Some("u1"),
            iat,
            ..TokenFacts::default()
        };
        assert!(r.refuses(&issued(Some(99))), "issued while it was revoked");
        assert!(r.refuses(&issued(None)), "no iat: cannot show it is newer");
        assert!(!r.refuses(&issued(Some(100))), "issued since");
        r.prune(5001);
        assert!(
            !r.refuses(&issued(Some(99))),
            "every such token has expired"
        );
        // Disabled again, it is disabled, whatever came before.
        r.apply(&json!({"revocation": "user", "sub": "u1", "revoked": true}));
        assert!(r.refuses(&issued(Some(6000))));
    }
}

/// What [`Guard::check`] says of a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Its user, session or itself was revoked.
    Revoked,
    /// The feed is stale and told to fail closed: nobody can say.
    Unknown,
}

/// Refuses the revoked tokens of the feed's issuer (and, past the
/// staleness bound when failing closed, every token of it). Tokens of other
/// issuers pass: their revocations are not this feed's to know.
#[derive(Debug, Clone)]
pub struct Guard {
    pub revocations: Arc<SharedRevocations>,
    pub status: Arc<crate::Status>,
    pub issuer: String,
    /// The issuer's `subject_prefix`: verified subjects carry it, the
    /// feed's do not.
    pub prefix: Option<String>,
    pub on_stale: crate::OnStale,
}

impl Guard {
    /// Whether a verified token (its claims as policies read them, with
    /// `iss`, `sid` and `jti`) may be used.
    pub fn check(&self, claims: &decision::Claims) -> Verdict {
        let iss = claims.iss.as_deref().map(|i| i.trim_end_matches('/'));
        if iss != Some(self.issuer.trim_end_matches('/')) {
            return Verdict::Pass;
        }
        // Before the first snapshot nothing is known of what was revoked.
        if self.on_stale == crate::OnStale::FailClosed && self.status.unknown() {
            return Verdict::Unknown;
        }
        let sub = claims.sub.as_deref();
        let sub = match (sub, &self.prefix) {
            (Some(s), Some(p)) => Some(s.strip_prefix(p.as_str()).unwrap_or(s)),
            (s, _) => s,
        };
        if self.revocations.refuses(&TokenFacts {
            sub,
            sid: claims.sid.as_deref(),
            jti: claims.jti.as_deref(),
            iat: claims.iat,
        }) {
            Verdict::Revoked
        } else {
            Verdict::Pass
        }
    }
}
