//! A browser without JavaScript for the authserver's real sign-in pages:
//! the session-mode tests sign in through the gateway with it, the
//! introspection test to obtain tokens of its own, and the stack tests
//! (`tests/stack`, which include this file) through `portcullis up`.

use std::collections::BTreeMap;

use reqwest::header::{ACCEPT, COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

/// A browser without JavaScript: one cookie jar (cookies ignore ports, so
/// the gateway and the authserver on 127.0.0.1 share it, as in a browser),
/// no automatic redirects.
pub struct Browser {
    pub http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> String {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    pub fn hidden(&self, name: &str) -> String {
        let needle = format!("name=\"{name}\" value=\"");
        let start = self
            .body
            .find(&needle)
            .unwrap_or_else(|| panic!("no field {name} in {}", self.body))
            + needle.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].replace("&amp;", "&")
    }

    #[allow(
        dead_code,
        reason = "the stack tests, which include this file, read no JSON pages"
    )]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("not JSON: {}", self.body))
    }
}

#[allow(
    dead_code,
    reason = "used by the gateway tests, not by the stack tests that include this file"
)]
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: BTreeMap::new(),
        }
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    pub fn keep_cookies(&mut self, headers: &reqwest::header::HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let (name, v) = value.split(';').next().unwrap().split_once('=').unwrap();
            if v.is_empty() || value.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), v.to_owned());
            }
        }
    }

    pub async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let resp = request
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.keep_cookies(resp.headers());
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn page(&mut self, url: &str) -> Page {
        let request = self.http.get(url).header(ACCEPT, "text/html");
        self.send(request).await
    }

    pub async fn post(&mut self, url: &str, fields: &[(&str, &str)]) -> Page {
        let request = self.http.post(url).form(fields);
        self.send(request).await
    }
}

/// Sign in as `username` on the pages of the authserver at `issuer`, allow
/// consent (unless given before), and return the callback URL it
/// redirects to.
pub async fn through_the_authserver_as(
    browser: &mut Browser,
    issuer: &str,
    authorize: &str,
    username: &str,
    password: &str,
) -> String {
    let login = browser.page(authorize).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let after = browser
        .post(
            &format!("{issuer}/login"),
            &[
                ("request", &login.hidden("request")),
                ("csrf", &login.hidden("csrf")),
                ("username", username),
                ("password", password),
            ],
        )
        .await;
    assert_eq!(after.status, 303, "{}", after.body);
    let consent = browser.page(&format!("{issuer}{}", after.location())).await;
    // Consent given before: straight back to the client.
    if consent.status == 303 {
        return consent.location();
    }
    let back = browser
        .post(
            &format!("{issuer}/consent"),
            &[
                ("request", &consent.hidden("request")),
                ("csrf", &consent.hidden("csrf")),
                ("decision", "allow"),
            ],
        )
        .await;
    assert_eq!(back.status, 303, "{}", back.body);
    back.location()
}
