//! A scripted browser for the login pages: keeps cookies, does not follow
//! redirects (tests look at each hop), reads hidden form fields.

use std::collections::BTreeMap;

use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

pub struct Browser {
    http: reqwest::Client,
    base: String,
    pub cookies: BTreeMap<String, String>,
}

pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of hidden input `name`.
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

    /// The target of the link `<a href="…" id="{id}">`.
    pub fn link(&self, id: &str) -> String {
        let end = self
            .body
            .find(&format!("\" id=\"{id}\""))
            .unwrap_or_else(|| panic!("no link #{id} in {}", self.body));
        let start = self.body[..end].rfind("href=\"").unwrap() + "href=\"".len();
        self.body[start..end].replace("&amp;", "&")
    }

    /// A query parameter of the redirect target.
    pub fn redirect_param(&self, name: &str) -> Option<String> {
        let query = self.location().split_once('?')?.1;
        form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }
}

impl Browser {
    pub fn new(base: &str) -> Self {
        Self::with_user_agent(base, "portcullis-test-browser")
    }

    /// A browser that names itself `user_agent`.
    pub fn with_user_agent(base: &str, user_agent: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(user_agent)
                .build()
                .unwrap(),
            base: base.to_owned(),
            cookies: BTreeMap::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn page(&mut self, resp: reqwest::Response) -> Page {
        for value in resp.headers().get_all(SET_COOKIE) {
            let value = value.to_str().unwrap();
            let pair = value.split(';').next().unwrap();
            let (name, v) = pair.split_once('=').unwrap();
            if v.is_empty() || value.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), v.to_owned());
            }
        }
        Page {
            status: resp.status().as_u16(),
            headers: resp.headers().clone(),
            body: resp.text().await.unwrap(),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let resp = self
            .http
            .get(self.url(path))
            .header(COOKIE, self.cookie_header())
            .send()
            .await
            .unwrap();
        self.page(resp).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let resp = self
            .http
            .post(self.url(path))
            .header(COOKIE, self.cookie_header())
            .form(fields)
            .send()
            .await
            .unwrap();
        self.page(resp).await
    }
}
