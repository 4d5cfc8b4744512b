//! The second-factor pages: asking for a code, enrolling an app (also on
//! the account page), and showing new recovery codes once.

use std::fmt::Write as _;

use super::{esc, hidden, layout};
use crate::mfa::{Ceremony, Enrolment, Method};

/// What a WebAuthn form does (the static script's `data-webauthn`).
#[derive(Debug, Clone, Copy)]
pub enum PasskeyMode {
    Register,
    Authenticate,
    Discover,
}

/// A form the static script completes: the ceremony's options in a JSON
/// data block (not script: the CSP allows only our file), its id and the
/// browser's answer as fields, `fields` besides.
pub fn passkey_form(
    mode: PasskeyMode,
    action: &str,
    csrf: &str,
    ceremony: &Ceremony,
    fields: &[(&str, &str)],
    button: &str,
) -> String {
    let mode = match mode {
        PasskeyMode::Register => "register",
        PasskeyMode::Authenticate => "authenticate",
        PasskeyMode::Discover => "discover",
    };
    let id = format!("webauthn-{mode}");
    // `<` escaped as JSON allows, so the block cannot be closed early.
    let options = ceremony.options.replace('<', "\\u003c");
    let mut out = format!(
        "<script type=\"application/json\" id=\"{id}\">{options}</script>\
         <form method=\"post\" action=\"{}\" data-webauthn=\"{mode}\" data-options=\"{id}\">",
        esc(action)
    );
    hidden(&mut out, "csrf", csrf);
    hidden(&mut out, "ceremony", &ceremony.id);
    hidden(&mut out, "credential", "");
    for (name, value) in fields {
        hidden(&mut out, name, value);
    }
    let _ = write!(
        out,
        "<button type=\"button\" data-webauthn-start id=\"{id}-start\">{}</button>\
         <p class=\"status\" data-webauthn-status role=\"status\"></p></form>\
         <script src=\"/static/webauthn.js\" defer></script>",
        esc(button)
    );
    out
}

pub struct FactorPage<'a> {
    pub client_name: &'a str,
    pub csrf: &'a str,
    pub method: Method,
    /// Every method the user has, strongest first.
    pub methods: &'a [Method],
    /// The WebAuthn ceremony, when `method` is WebAuthn.
    pub ceremony: Option<&'a Ceremony>,
    pub error: Option<&'a str>,
}

pub fn factor(p: &FactorPage<'_>) -> String {
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>Two-step verification</h1><p>to continue to <strong>{}</strong></p>",
        esc(p.client_name)
    );
    if let Some(error) = p.error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(error));
    }
    if let (Method::WebAuthn, Some(ceremony)) = (p.method, p.ceremony) {
        body.push_str("<p>Use your passkey or security key.</p>");
        body.push_str(&passkey_form(
            PasskeyMode::Authenticate,
            "/login/factor",
            p.csrf,
            ceremony,
            &[("method", "webauthn")],
            "Use passkey",
        ));
    } else {
        code_form(&mut body, p);
    }
    body.push_str("<nav class=\"methods\">");
    for other in p.methods.iter().filter(|m| **m != p.method) {
        let _ = write!(
            body,
            "<a href=\"/login/factor?method={}\">Use {} instead</a>",
            other.as_str(),
            esc(&other.title().to_lowercase())
        );
    }
    body.push_str("</nav>");
    layout("Two-step verification", &body)
}

fn code_form(body: &mut String, p: &FactorPage<'_>) {
    body.push_str("<form method=\"post\" action=\"/login/factor\">");
    hidden(body, "csrf", p.csrf);
    hidden(body, "method", p.method.as_str());
    if let (Method::Sms, Some(sent)) = (p.method, p.ceremony) {
        hidden(body, "ceremony", &sent.id);
        let _ = write!(
            body,
            "<label for=\"code\">Enter the code we sent to {}</label>\
             <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" maxlength=\"8\" required autofocus>\
             <button type=\"submit\">Verify</button></form>\
             <p><a href=\"/login/factor?method=sms&amp;resend=1\">Send a new code</a></p>",
            esc(&sent.options)
        );
        return;
    }
    match p.method {
        Method::Totp => body.push_str(
            "<label for=\"code\">Enter the 6-digit code from your authenticator app</label>\
             <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
             autocomplete=\"one-time-code\" maxlength=\"8\" required autofocus>",
        ),
        Method::Recovery | Method::WebAuthn | Method::Sms => body.push_str(
            "<label for=\"code\">Enter one of your recovery codes</label>\
             <input type=\"text\" id=\"code\" name=\"code\" autocomplete=\"off\" \
             maxlength=\"16\" required autofocus>",
        ),
    }
    body.push_str("<button type=\"submit\">Verify</button></form>");
}

/// The QR code, the key for manual entry and the confirming form, posting
/// to `action` (the sign-in's or the account page's).
pub fn enrol_form(e: &Enrolment, csrf: &str, action: &str, error: Option<&str>) -> String {
    let mut body = String::new();
    if let Some(error) = error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(error));
    }
    // The SVG is ours (built from the URI by the QR encoder), not input.
    let _ = write!(
        body,
        "<p>Scan this code with your authenticator app to add <strong>{}</strong>:</p>\
         <div class=\"qr\">{}</div><p>or enter this key: <code class=\"secret\" \
         id=\"secret\">{}</code> (<a href=\"{}\">open in an app on this device</a>)</p>\
         <form method=\"post\" action=\"{}\">",
        esc(&e.label),
        e.qr_svg,
        esc(&e.secret),
        esc(&e.uri),
        esc(action)
    );
    hidden(&mut body, "csrf", csrf);
    hidden(&mut body, "enrolment", &e.id);
    body.push_str(
        "<label for=\"code\">Then enter the code the app shows</label>\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
         autocomplete=\"one-time-code\" maxlength=\"8\" required>\
         <button type=\"submit\">Confirm</button></form>",
    );
    body
}

/// Enrolment forced at sign-in.
/// The code sent to a number being added (the account page).
pub fn sms_form(sent: &Ceremony, csrf: &str, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Add a phone</h1>");
    if let Some(error) = error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(error));
    }
    body.push_str("<form method=\"post\" action=\"/account/sms-confirm\">");
    hidden(&mut body, "csrf", csrf);
    hidden(&mut body, "ceremony", &sent.id);
    let _ = write!(
        body,
        "<label for=\"code\">Enter the code we sent to {}</label>\
         <input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" \
         autocomplete=\"one-time-code\" maxlength=\"8\" required autofocus>\
         <button type=\"submit\">Confirm</button></form><p><a href=\"/account\">Cancel</a></p>",
        esc(&sent.options)
    );
    layout("Add a phone", &body)
}

pub fn enrol(client_name: &str, form: &str) -> String {
    let body = format!(
        "<h1>Set up two-step verification</h1><p>Signing in to <strong>{}</strong> needs a \
         second factor. Add an authenticator app to your account.</p>{form}",
        esc(client_name)
    );
    layout("Set up two-step verification", &body)
}

pub struct RecoveryCodesPage<'a> {
    pub codes: &'a [String],
    /// Where "Continue" goes.
    pub next: &'a str,
}

pub fn recovery_codes(p: &RecoveryCodesPage<'_>) -> String {
    let mut body = String::from(
        "<h1>Save your recovery codes</h1><p>If you lose your authenticator, each of these \
         codes signs you in once. They are shown only now: print them or keep them in a \
         password manager.</p><ol class=\"codes\" id=\"recovery-codes\">",
    );
    for code in p.codes {
        let _ = write!(body, "<li>{}</li>", esc(code));
    }
    let _ = write!(
        body,
        "</ol><p><a href=\"{}\" id=\"continue\">Continue</a></p>",
        esc(p.next)
    );
    layout("Recovery codes", &body)
}
