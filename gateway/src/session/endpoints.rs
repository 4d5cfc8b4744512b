//! The gateway's own session endpoints: the sign-in callback,
//! `/_auth/userinfo`, and sign-out (a confirmation page, then a same-site
//! POST with the page's token).

use pingora::http::RequestHeader;
use pingora::proxy::Session as Downstream;
use serde_json::{Map, Value, json};

use crate::now_secs;
use crate::refusal::{Refusal, refuse};
use crate::reply::{Reply, reply};

use super::*;

impl Sessions {
    pub(super) async fn callback(&self, session: &mut Downstream) -> pingora::Result<bool> {
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

    pub(super) async fn userinfo(&self, session: &mut Downstream) -> pingora::Result<bool> {
        let active = match self.lookup(session.req_header()).await {
            Ok(Some(active)) => active,
            Ok(None) => return refuse(session, Refusal::NoSession("no valid session")).await,
            Err(_) => return refuse(session, crate::refusal::session_store_down()).await,
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
    pub(super) async fn logout(&self, session: &mut Downstream) -> pingora::Result<bool> {
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
        // Unreadable counts as none: signing out never needs the store.
        let active = self.lookup(session.req_header()).await.ok().flatten();
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
            self.forget(active).await;
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
    pub(super) async fn logout_page(&self, session: &mut Downstream) -> pingora::Result<bool> {
        // Unreadable counts as none: signing out never needs the store.
        let active = self.lookup(session.req_header()).await.ok().flatten();
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
    pub(super) fn cross_site(&self, req: &RequestHeader) -> bool {
        let header = |name: &str| req.headers.get(name).map(http::HeaderValue::as_bytes);
        matches!(header("sec-fetch-site"), Some(b"cross-site" | b"same-site"))
            || header("origin").is_some_and(|o| o != self.origin.as_bytes())
    }
}

/// A form body of at most 4 KiB; `None` when larger.
pub(super) async fn read_form(session: &mut Downstream) -> pingora::Result<Option<Vec<u8>>> {
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

/// A path on this site only: no scheme, no `//host`, no backslashes or
/// control characters (which some browsers turn into `//host`).
pub(super) fn safe_return(target: &str) -> &str {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.contains('\\')
        && !target.bytes().any(|b| b.is_ascii_control());
    if ok { target } else { "/" }
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
