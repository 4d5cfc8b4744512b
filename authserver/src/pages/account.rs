//! The account page: profile, password, second factors, recovery codes,
//! sessions and recent sign-ins, each change a CSRF-protected form of its
//! own.

use std::fmt::Write as _;

use super::{esc, hidden, layout};
use crate::model::{AuditEvent, SecondFactor, User};
use crate::session::Session;

pub struct AccountPage<'a> {
    pub user: &'a User,
    pub factors: &'a [SecondFactor],
    pub recovery_left: i64,
    /// Live sessions and their handles.
    pub sessions: &'a [(String, Session)],
    /// The handle of the session showing the page.
    pub current_session: &'a str,
    pub sign_ins: &'a [AuditEvent],
    /// Linked upstream accounts, with their provider's name.
    pub links: &'a [(crate::model::FederatedLink, String)],
    pub csrf: &'a str,
    /// Whether text-message codes are offered.
    pub sms: bool,
    /// A notice at the top: what just happened, or what went wrong.
    pub notice: Option<&'a str>,
    pub error: Option<&'a str>,
}

fn form(out: &mut String, action: &str, csrf: &str) {
    let _ = write!(out, "<form method=\"post\" action=\"{}\">", esc(action));
    hidden(out, "csrf", csrf);
}

/// Unix seconds as `YYYY-MM-DD HH:MM UTC` (civil from days, proleptic
/// Gregorian).
fn when(at: i64) -> String {
    let days = at.div_euclid(86_400);
    let secs = at.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        secs / 3600,
        secs % 3600 / 60
    )
}

pub fn account(p: &AccountPage<'_>) -> String {
    let mut b = String::from("<h1>Your account</h1>");
    if let Some(notice) = p.notice {
        let _ = write!(b, "<p class=\"notice\" role=\"status\">{}</p>", esc(notice));
    }
    if let Some(error) = p.error {
        let _ = write!(b, "<p class=\"error\" role=\"alert\">{}</p>", esc(error));
    }
    let u = p.user;
    let _ = write!(
        b,
        "<h2>Profile</h2><table><tr><th>Username</th><td id=\"username\">{}</td></tr>\
         <tr><th>Name</th><td>{}</td></tr><tr><th>Email</th><td>{}</td></tr></table>",
        esc(&u.username),
        esc(u.display_name.as_deref().unwrap_or("")),
        esc(u.email.as_deref().unwrap_or(""))
    );

    b.push_str("<h2>Password</h2>");
    form(&mut b, "/account/password", p.csrf);
    b.push_str(
        "<label for=\"current\">Current password</label>\
         <input type=\"password\" id=\"current\" name=\"current\" autocomplete=\"current-password\" required>\
         <label for=\"new\">New password</label>\
         <input type=\"password\" id=\"new\" name=\"new\" autocomplete=\"new-password\" required>\
         <label><input type=\"checkbox\" name=\"sign_out_others\" checked> \
         Sign out everywhere else</label>\
         <button type=\"submit\">Change password</button></form>",
    );

    b.push_str("<h2>Two-step verification</h2>");
    if p.factors.is_empty() {
        b.push_str("<p>No second factor yet.</p>");
    } else {
        b.push_str("<table id=\"factors\"><tr><th>Name</th><th>Kind</th><th>Added</th><th>Last used</th><th></th></tr>");
        for f in p.factors {
            let _ = write!(
                b,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
                esc(&f.label),
                f.kind.as_str(),
                when(f.created_at),
                f.last_used_at.map(when).unwrap_or_default()
            );
            form(&mut b, "/account/rename", p.csrf);
            hidden(&mut b, "factor", &f.id);
            let _ = write!(
                b,
                "<input type=\"text\" name=\"label\" value=\"{}\" aria-label=\"New name\" required>\
                 <button type=\"submit\" class=\"secondary\">Rename</button></form>",
                esc(&f.label)
            );
            form(&mut b, "/account/remove", p.csrf);
            hidden(&mut b, "factor", &f.id);
            b.push_str(
                "<button type=\"submit\" class=\"secondary\">Remove</button></form></td></tr>",
            );
        }
        b.push_str("</table>");
    }
    form(&mut b, "/account/totp", p.csrf);
    b.push_str(
        "<label for=\"label\">Add an authenticator app named</label>\
         <input type=\"text\" id=\"label\" name=\"label\" value=\"Authenticator app\" required>\
         <button type=\"submit\">Add</button></form>",
    );
    form(&mut b, "/account/passkey", p.csrf);
    b.push_str(
        "<label for=\"passkey-label\">Add a passkey or security key named</label>\
         <input type=\"text\" id=\"passkey-label\" name=\"label\" value=\"Passkey\" required>\
         <button type=\"submit\">Add</button></form>",
    );
    if p.sms {
        form(&mut b, "/account/sms", p.csrf);
        b.push_str(
            "<label for=\"phone\">Add a phone for text-message codes</label>\
             <input type=\"tel\" id=\"phone\" name=\"phone\" placeholder=\"+44 20 7946 0958\" \
             autocomplete=\"tel\" required><input type=\"hidden\" name=\"label\" value=\"Phone\">\
             <button type=\"submit\">Send a code</button></form>",
        );
    }
    if !p.factors.is_empty() {
        let _ = write!(
            b,
            "<h2>Recovery codes</h2><p id=\"recovery-left\">{} unused.</p>",
            p.recovery_left
        );
        form(&mut b, "/account/recovery", p.csrf);
        b.push_str("<button type=\"submit\">Make new codes</button></form>");
    }

    sessions(&mut b, p);
    links(&mut b, p);

    b.push_str("<h2>Recent sign-ins</h2><table id=\"sign-ins\"><tr><th>When</th><th>What</th><th>From</th></tr>");
    for e in p.sign_ins {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{} ({})</td><td>{}</td></tr>",
            when(e.at),
            esc(&e.action),
            esc(&e.outcome),
            esc(e.source_ip.as_deref().unwrap_or(""))
        );
    }
    b.push_str("</table>");
    layout("Your account", &b)
}

/// How a session signed in, in words (RFC 8176 `amr` values).
fn methods(amr: &[String]) -> String {
    let words: Vec<&str> = amr
        .iter()
        .filter_map(|m| match m.as_str() {
            "pwd" => Some("password"),
            "otp" => Some("authenticator app"),
            "sms" => Some("text message"),
            "hwk" => Some("security key"),
            "swk" => Some("passkey"),
            "mfa" | "user" => None,
            other => Some(other),
        })
        .collect();
    words.join(" + ")
}

fn sessions(b: &mut String, p: &AccountPage<'_>) {
    b.push_str(
        "<h2>Where you are signed in</h2><table id=\"sessions\"><tr><th>Since</th>\
         <th>With</th><th>From</th><th>Browser</th><th></th></tr>",
    );
    for (handle, s) in p.sessions {
        let this = handle == p.current_session;
        let _ = write!(
            b,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            if this { " class=\"current\"" } else { "" },
            when(s.auth_time),
            esc(&methods(&s.amr)),
            esc(s.address.as_deref().unwrap_or("")),
            esc(s.user_agent.as_deref().unwrap_or(""))
        );
        form(b, "/account/end-session", p.csrf);
        hidden(b, "session", handle);
        b.push_str(if this {
            "<button type=\"submit\" class=\"secondary\">Sign out here</button></form>"
        } else {
            "<button type=\"submit\" class=\"secondary\">End</button></form>"
        });
        b.push_str("</td></tr>");
    }
    b.push_str("</table>");
    if p.sessions.len() > 1 {
        form(b, "/account/end-others", p.csrf);
        b.push_str("<button type=\"submit\">Sign out everywhere else</button></form>");
    }
}

/// Adding an authenticator from the account page.
pub fn add_totp(form_html: &str) -> String {
    layout(
        "Add an authenticator app",
        &format!(
            "<h1>Add an authenticator app</h1>{form_html}<p><a href=\"/account\">Cancel</a></p>"
        ),
    )
}

/// Adding a passkey from the account page.
pub fn add_passkey(form_html: &str) -> String {
    layout(
        "Add a passkey",
        &format!(
            "<h1>Add a passkey</h1><p>Your browser asks your device or security key to create \
             one; it can then sign you in without a password.</p>{form_html}\
             <p><a href=\"/account\">Cancel</a></p>"
        ),
    )
}

/// Upstream accounts that sign in here, each removable.
fn links(b: &mut String, p: &AccountPage<'_>) {
    if p.links.is_empty() {
        return;
    }
    b.push_str(
        "<h2>Linked accounts</h2><table id=\"links\"><tr><th>Provider</th><th>Account</th>\
         <th>Linked</th><th>Last used</th><th></th></tr>",
    );
    for (link, provider) in p.links {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>",
            esc(provider),
            esc(link.email.as_deref().unwrap_or(&link.subject)),
            when(link.created_at),
            link.last_used_at.map(when).unwrap_or_default()
        );
        form(b, "/account/unlink", p.csrf);
        hidden(b, "provider", &link.provider);
        hidden(b, "subject", &link.subject);
        b.push_str("<button type=\"submit\" class=\"secondary\">Remove</button></form></td></tr>");
    }
    b.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::{methods, when};

    #[test]
    fn methods_read_as_words() {
        let amr = ["pwd", "otp", "mfa"].map(String::from);
        assert_eq!(methods(&amr), "password + authenticator app");
        let amr = ["swk", "user"].map(String::from);
        assert_eq!(methods(&amr), "passkey");
    }

    #[test]
    fn times_read_as_utc_dates() {
        assert_eq!(when(0), "1970-01-01 00:00 UTC");
        assert_eq!(when(1_800_000_000), "2027-01-15 08:00 UTC");
        assert_eq!(when(951_782_400), "2000-02-29 00:00 UTC");
    }
}
