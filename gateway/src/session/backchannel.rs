//! Back-channel logout, the receiving side (OpenID Connect Back-Channel
//! Logout 1.0 §2.5–2.8): the provider POSTs a logout token to
//! `/_auth/backchannel-logout`. Once it verifies, the sessions it names
//! end: the one sign-in of its `sid`, or every session of its `sub` begun
//! before it. On this replica at once; with `redis_url` set, a mark in
//! Redis ends them on every replica when it next opens the session (its
//! cache keeps a session five seconds at most in that mode).

use std::time::Duration;

use serde_json::{Map, Value};

use super::oidc::audience_has;
use super::*;

pub const BACKCHANNEL_LOGOUT_PATH: &str = "/_auth/backchannel-logout";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";
/// A logout token older than this is refused, whatever its `exp`.
const MAX_AGE_SECS: u64 = 300;
/// Used logout tokens are remembered as long as they could be accepted.
pub(super) const REMEMBER_LOGOUT_TOKENS: Duration = Duration::from_secs(2 * MAX_AGE_SECS);

/// What a verified logout token ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ended {
    pub(super) sid: Option<String>,
    pub(super) sub: Option<String>,
    /// When it was issued: sessions of `sub` begun later live on.
    pub(super) at: u64,
}

/// Where ended sign-ins are remembered: keys are digests of the
/// provider's `sid` or `sub`, so a request's check allocates nothing.
pub(super) fn sid_key(sid: &str) -> [u8; 32] {
    sha256(format!("sid\0{sid}").as_bytes())
}

pub(super) fn sub_key(sub: &str) -> [u8; 32] {
    sha256(format!("sub\0{sub}").as_bytes())
}

impl Sessions {
    pub(super) async fn backchannel_logout(
        &self,
        session: &mut Downstream,
    ) -> pingora::Result<bool> {
        if session.req_header().method != http::Method::POST {
            let refusal = Refusal::MethodNotAllowed {
                message: "the provider POSTs logout tokens here",
                allow: "POST",
            };
            return refuse(session, refusal).await;
        }
        let Some(form) = endpoints::read_form(session).await? else {
            return refuse(
                session,
                Refusal::PayloadTooLarge("a logout token form is at most 4 KiB"),
            )
            .await;
        };
        let token = form_urlencoded::parse(&form)
            .find(|(k, _)| k == "logout_token")
            .map(|(_, v)| v.into_owned());
        let Some(token) = token else {
            let refusal = Refusal::BadRequest("`logout_token` is missing".into());
            return refuse(session, refusal).await;
        };
        let (ended, jti) = match self.verify_logout_token(&token).await {
            Ok(v) => v,
            Err(why) => {
                tracing::warn!(error = %why, "logout token refused");
                return refuse(session, Refusal::BadRequest(why.into())).await;
            }
        };
        // Used once; remembered only after the sessions ended, so a retry
        // after a failure here is not called a replay.
        match self.used_before(&jti).await {
            Ok(false) => {}
            Ok(true) => {
                let refusal = Refusal::BadRequest("this logout token was used before".into());
                return refuse(session, refusal).await;
            }
            Err(e) => return refuse(session, Refusal::Unavailable(e.to_string().into())).await,
        }
        if let Err(e) = self.end_upstream(&ended).await {
            // Ended here; other replicas did not hear it: the provider's
            // retry may reach one that can tell them.
            tracing::warn!(error = %e, "back-channel logout not shared");
            return refuse(session, Refusal::Unavailable(e.to_string().into())).await;
        }
        self.remember_used(&jti).await;
        tracing::info!(sid = ?ended.sid, "back-channel logout");
        reply(session, Reply::json(200, "{}")).await
    }

    /// §2.6: the token's signature, issuer, audience and time as every
    /// token's, then what makes it a logout token and not another JWT of
    /// the same issuer: its `typ`, the event, no `nonce`, a `sid` or `sub`,
    /// and a `jti` (returned: the caller checks it was not used before).
    pub(super) async fn verify_logout_token(&self, token: &str) -> Result<(Ended, String), String> {
        let header = token
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Map<String, Value>>(&h).ok())
            .ok_or("the logout token is not a JWT")?;
        let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
        if !matches!(
            typ.to_ascii_lowercase().as_str(),
            "logout+jwt" | "application/logout+jwt"
        ) {
            return Err(format!("the token's `typ` is `{typ}`, not `logout+jwt`"));
        }
        let verified = self
            .verifier
            .verify(token)
            .await
            .map_err(|e| format!("logout token: {e}"))?;
        // The claims as signed: subjects are compared qualified, as the
        // sessions' own are.
        let claims = &verified.claims;
        if claims.get("iss").and_then(Value::as_str) != Some(self.config.issuer.as_str()) {
            return Err("the logout token is from another issuer".into());
        }
        if !audience_has(claims, &self.config.client_id) {
            return Err("the logout token is for another client".into());
        }
        if !claims
            .get("events")
            .and_then(|e| e.get(EVENT))
            .is_some_and(Value::is_object)
        {
            return Err("the token has no back-channel logout event".into());
        }
        if claims.contains_key("nonce") {
            return Err("a logout token carries no `nonce`".into());
        }
        let now = now_secs();
        let iat = claims
            .get("iat")
            .and_then(Value::as_u64)
            .ok_or("the logout token has no `iat`")?;
        if iat + MAX_AGE_SECS < now || iat > now + 60 {
            return Err("the logout token's `iat` is not recent".into());
        }
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_owned);
        let jti = text("jti").ok_or("the logout token has no `jti`")?;
        let ended = Ended {
            sid: text("sid"),
            sub: text("sub"),
            at: iat,
        };
        if ended.sid.is_none() && ended.sub.is_none() {
            return Err("the logout token names neither `sid` nor `sub`".into());
        }
        Ok((ended, jti))
    }

    /// Whether `jti` was used here, or (with Redis) on any replica.
    async fn used_before(&self, jti: &str) -> Result<bool, SessionError> {
        let key = sha256(jti.as_bytes());
        if self.seen_logout_tokens.contains_key(&key) {
            return Ok(true);
        }
        match &self.redis {
            Some(redis) => redis.marked(&format!("jti:{}", hex(&key))).await,
            None => Ok(false),
        }
    }

    /// Remembers `jti` as used (a failure to tell Redis is only logged:
    /// the logout itself took effect).
    async fn remember_used(&self, jti: &str) {
        let key = sha256(jti.as_bytes());
        self.seen_logout_tokens.insert(key, ());
        if let Some(redis) = &self.redis
            && let Err(e) = redis
                .mark(
                    &format!("jti:{}", hex(&key)),
                    1,
                    REMEMBER_LOGOUT_TOKENS.as_secs(),
                )
                .await
        {
            tracing::warn!(error = %e, "used logout token not shared");
        }
    }

    /// Remembers what ended, here and (with Redis) for every replica.
    pub(super) async fn end_upstream(&self, ended: &Ended) -> Result<(), SessionError> {
        let lifetime = self.config.lifetime_secs;
        if let Some(sid) = &ended.sid {
            self.ended_upstream.insert(sid_key(sid), u64::MAX);
        }
        if let Some(sub) = &ended.sub
            && ended.sid.is_none()
        {
            self.ended_upstream.insert(sub_key(sub), ended.at);
        }
        let Some(redis) = &self.redis else {
            return Ok(());
        };
        if let Some(sid) = &ended.sid {
            redis.mark(&hex(&sid_key(sid)), u64::MAX, lifetime).await?;
        } else if let Some(sub) = &ended.sub {
            redis.mark(&hex(&sub_key(sub)), ended.at, lifetime).await?;
        }
        Ok(())
    }

    /// Whether the provider ended this session's sign-in (seen here).
    pub(super) fn ended_upstream_here(&self, active: &Active) -> bool {
        let by_sid = active
            .upstream_sid
            .is_some_and(|k| self.ended_upstream.contains_key(&k));
        by_sid
            || active.upstream_sub.is_some_and(|k| {
                self.ended_upstream
                    .get(&k)
                    .is_some_and(|at| active.began_at <= at)
            })
    }

    /// The same, asking Redis (when a session is opened, not per request).
    /// Redis unreadable is an error, not a "no": a logout another replica
    /// received may be there.
    pub(super) async fn ended_upstream_anywhere(
        &self,
        active: &Active,
    ) -> Result<bool, SessionError> {
        if self.ended_upstream_here(active) {
            return Ok(true);
        }
        let Some(redis) = &self.redis else {
            return Ok(false);
        };
        let sid = active.upstream_sid.map(|k| hex(&k));
        let sub = active.upstream_sub.map(|k| hex(&k));
        let (sid_mark, sub_mark) = redis.marks(sid.as_deref(), sub.as_deref()).await?;
        if sid_mark.is_some()
            && let Some(k) = active.upstream_sid
        {
            self.ended_upstream.insert(k, u64::MAX);
        }
        Ok(sid_mark.is_some() || sub_mark.is_some_and(|at| active.began_at <= at))
    }
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ended sign-ins, remembered for a session's lifetime.
pub(super) fn ended_cache(lifetime: Duration) -> moka::sync::Cache<[u8; 32], u64> {
    moka::sync::Cache::builder()
        .max_capacity(1_000_000)
        .time_to_live(lifetime)
        .build()
}

/// The provider's `sid` and `sub` of a session, and when it began: from
/// the ID token (the access token's as a fallback).
pub(super) fn upstream_of(
    profile: &Map<String, Value>,
    payload: &Map<String, Value>,
) -> (Option<[u8; 32]>, Option<[u8; 32]>, u64) {
    let text = |name: &str| {
        profile
            .get(name)
            .or_else(|| payload.get(name))
            .and_then(Value::as_str)
    };
    let began = ["auth_time", "iat"]
        .iter()
        .find_map(|n| {
            profile
                .get(*n)
                .or_else(|| payload.get(*n))
                .and_then(Value::as_u64)
        })
        .unwrap_or(0);
    // The access token's subject is qualified as logout tokens' are.
    let sub = payload.get("sub").and_then(Value::as_str);
    (text("sid").map(sid_key), sub.map(sub_key), began)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sid_and_sub_keys_never_collide() {
        assert_ne!(sid_key("x"), sub_key("x"));
        assert_eq!(hex(&sid_key("x")).len(), 64);
    }

    #[test]
    fn a_session_is_known_by_its_id_token_first() {
        let profile: Map<String, Value> =
            serde_json::from_str(r#"{"sid":"s1","sub":"raw","auth_time":100,"iat":200}"#).unwrap();
        let payload: Map<String, Value> =
            serde_json::from_str(r#"{"sid":"s2","sub":"p:raw","iat":300}"#).unwrap();
        let (sid, sub, began) = upstream_of(&profile, &payload);
        assert_eq!(sid, Some(sid_key("s1")));
        assert_eq!(sub, Some(sub_key("p:raw")));
        assert_eq!(began, 100);
    }
}
