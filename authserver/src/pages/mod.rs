//! Server-rendered HTML: login, second-factor, account, consent, logout
//! and error pages. No inline script: the one script is a static file of
//! ours (WebAuthn), the style sheet another, so the CSP can forbid
//! everything else; every value is escaped; forms carry a CSRF token.

use std::fmt::Write as _;

mod account;
mod device;
mod factor;

pub use account::{AccountPage, account, add_passkey, add_totp};
pub use device::{device_done, device_entry};

pub use factor::{
    FactorPage, PasskeyMode, RecoveryCodesPage, enrol, enrol_form, factor, passkey_form,
    recovery_codes, sms_form,
};

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}\
main{max-width:24rem;margin:4rem auto;background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002}\
h1{font-size:1.4rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}\
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.5rem;border:1px solid #aab;border-radius:4px}\
button{margin-top:1.2rem;padding:.5rem 1.2rem;border:0;border-radius:4px;background:#2456c7;color:#fff;font-size:1rem;cursor:pointer}\
button.secondary{background:#dde;color:#1d2330;margin-left:.5rem}.error{color:#a31919;background:#fdecec;padding:.5rem;border-radius:4px}.notice{background:#e8f4ea;padding:.5rem;border-radius:4px}\
ul.scopes{padding-left:1.2rem}small{color:#556}\
.qr svg{width:200px;height:200px}code.secret{word-break:break-all}ol.codes{font-family:monospace;font-size:1.1rem}\
nav.methods a{display:block;margin-top:.6rem}table{width:100%;border-collapse:collapse}td,th{text-align:left;padding:.3rem}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Portcullis</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
         <body><main>{body}</main></body></html>",
        esc(title)
    )
}

fn hidden(out: &mut String, name: &str, value: &str) {
    let _ = write!(
        out,
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    );
}

pub struct LoginPage<'a> {
    pub client_name: &'a str,
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Shown above the form (why the person is asked to sign in here).
    pub notice: Option<&'a str>,
    /// A passwordless (discoverable passkey) ceremony offered beside the form.
    pub passkey: Option<&'a crate::mfa::Ceremony>,
    /// Upstream providers, `(id, name)`: a button each.
    pub providers: &'a [(&'a str, &'a str)],
}

pub fn login(p: &LoginPage<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Sign in</h1><p>to continue to <strong>{}</strong></p>",
        esc(p.client_name)
    );
    if let Some(notice) = p.notice {
        let _ = write!(body, "<p class=\"notice\">{}</p>", esc(notice));
    }
    if let Some(error) = p.error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(error));
    }
    body.push_str("<form method=\"post\" action=\"/login\">");
    hidden(&mut body, "request", p.request_id);
    hidden(&mut body, "csrf", p.csrf);
    let _ = write!(
        body,
        "<label for=\"username\">Username</label>\
         <input type=\"text\" id=\"username\" name=\"username\" value=\"{}\" autocomplete=\"username webauthn\" required autofocus>\
         <label for=\"password\">Password</label>\
         <input type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\" required>\
         <button type=\"submit\">Sign in</button></form>",
        esc(p.username)
    );
    if let Some(ceremony) = p.passkey {
        body.push_str(&passkey_form(
            PasskeyMode::Discover,
            "/login/passkey",
            p.csrf,
            ceremony,
            &[("request", p.request_id)],
            "Sign in with a passkey",
        ));
    }
    if !p.providers.is_empty() {
        body.push_str("<nav class=\"methods\">");
        for (id, name) in p.providers {
            let href: String = form_urlencoded::Serializer::new(format!("/login/federated/{id}?"))
                .append_pair("request", p.request_id)
                .finish();
            let _ = write!(
                body,
                "<a class=\"federated\" href=\"{}\" id=\"federated-{}\">Sign in with {}</a>",
                esc(&href),
                esc(id),
                esc(name)
            );
        }
        body.push_str("</nav>");
    }
    layout("Sign in", &body)
}

pub struct ConsentPage<'a> {
    pub client_name: &'a str,
    pub client_id: &'a str,
    pub username: &'a str,
    pub scopes: &'a [String],
    pub request_id: &'a str,
    pub csrf: &'a str,
}

pub fn consent(p: &ConsentPage<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Allow access?</h1><p><strong>{}</strong> <small>({})</small> asks to act as <strong>{}</strong> with:</p><ul class=\"scopes\">",
        esc(p.client_name),
        esc(p.client_id),
        esc(p.username)
    );
    for scope in p.scopes {
        let _ = write!(body, "<li>{}</li>", esc(&describe_scope(scope)));
    }
    body.push_str("</ul><form method=\"post\" action=\"/consent\">");
    hidden(&mut body, "request", p.request_id);
    hidden(&mut body, "csrf", p.csrf);
    body.push_str(
        "<button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></form>",
    );
    layout("Allow access", &body)
}

fn describe_scope(scope: &str) -> String {
    match scope {
        "openid" => "sign you in (your user id)".into(),
        "profile" => "your name and username".into(),
        "email" => "your email address".into(),
        "groups" => "the groups you belong to".into(),
        "offline_access" => "stay signed in when you are away (refresh tokens)".into(),
        other => format!("the permission `{other}`"),
    }
}

pub fn error(title: &str, message: &str) -> String {
    layout(
        title,
        &format!("<h1>{}</h1><p>{}</p>", esc(title), esc(message)),
    )
}

pub fn logout_confirm(csrf: &str, fields: &[(&str, &str)]) -> String {
    let mut body = String::from("<h1>Sign out?</h1><form method=\"post\" action=\"/logout\">");
    hidden(&mut body, "csrf", csrf);
    for (name, value) in fields {
        hidden(&mut body, name, value);
    }
    body.push_str("<button type=\"submit\">Sign out</button></form>");
    layout("Sign out", &body)
}

pub fn logged_out() -> String {
    layout(
        "Signed out",
        "<h1>Signed out</h1><p>You have been signed out.</p>",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_user_supplied_is_escaped() {
        let evil = "<script>alert('x')</script>\"&";
        let page = login(&LoginPage {
            client_name: evil,
            request_id: evil,
            csrf: "c",
            username: evil,
            error: Some(evil),
            notice: Some(evil),
            passkey: None,
            providers: &[(evil, evil)],
        });
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&quot;&amp;"));
        assert!(!page.contains(" on"), "no inline handlers");
        let page = consent(&ConsentPage {
            client_name: evil,
            client_id: evil,
            username: evil,
            scopes: &[evil.to_owned()],
            request_id: evil,
            csrf: evil,
        });
        assert!(!page.contains("<script>"));
        assert!(!error(evil, evil).contains("<script>"));
        assert!(!device_entry(evil, evil, Some(evil)).contains("<script>"));
        assert!(!device_done(evil, true).contains("<script>"));
    }
}
