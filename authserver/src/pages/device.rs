//! The pages of a device's sign-in (RFC 8628): entering the user code, and
//! the end, after which the person goes back to the device.

use std::fmt::Write as _;

use super::{esc, hidden, layout};

/// `/device`: the code the device shows. A code from the device's link is
/// filled in, and still shown to be compared and confirmed.
pub fn device_entry(csrf: &str, code: &str, error: Option<&str>) -> String {
    let mut body = String::from("<h1>Connect a device</h1>");
    if code.is_empty() {
        body.push_str("<p>Enter the code your device shows.</p>");
    } else {
        body.push_str(
            "<p>Check that this is the code your device shows. Continue only if you started this sign-in yourself.</p>",
        );
    }
    if let Some(error) = error {
        let _ = write!(body, "<p class=\"error\" role=\"alert\">{}</p>", esc(error));
    }
    body.push_str("<form method=\"post\" action=\"/device\">");
    hidden(&mut body, "csrf", csrf);
    let _ = write!(
        body,
        "<label for=\"user_code\">Code</label>\
         <input type=\"text\" id=\"user_code\" name=\"user_code\" value=\"{}\" autocomplete=\"off\" \
         autocapitalize=\"characters\" spellcheck=\"false\" required autofocus>\
         <button type=\"submit\">Continue</button></form>",
        esc(code)
    );
    layout("Connect a device", &body)
}

/// The end of a device's sign-in.
pub fn device_done(client_name: &str, approved: bool) -> String {
    let body = if approved {
        format!(
            "<h1>Device connected</h1><p class=\"notice\"><strong>{}</strong> is signed in. You can go back to your device and close this window.</p>",
            esc(client_name)
        )
    } else {
        format!(
            "<h1>Device refused</h1><p><strong>{}</strong> was not given access. You can close this window.</p>",
            esc(client_name)
        )
    };
    layout("Connect a device", &body)
}
