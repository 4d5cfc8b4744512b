//! Responses the gateway writes itself (refusals, redirects, its own
//! endpoints): never cached, always with a length.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Bytes,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
        }
    }

    pub fn html(status: u16, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            headers: vec![("content-type", "text/html; charset=utf-8".into())],
            body: body.into(),
        }
    }

    pub fn redirect(status: u16, location: String) -> Self {
        Self {
            status,
            headers: vec![("location", location)],
            body: Bytes::new(),
        }
    }

    pub fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn cookie(self, set_cookie: String) -> Self {
        self.header("set-cookie", set_cookie)
    }

    #[cfg(test)]
    pub fn into_parts(self) -> (u16, Vec<(&'static str, String)>, Bytes) {
        (self.status, self.headers, self.body)
    }
}

/// Write `r` as the whole response; `Ok(true)` tells Pingora the request
/// is answered.
pub async fn reply(session: &mut Session, r: Reply) -> pingora::Result<bool> {
    let mut header = ResponseHeader::build(r.status, Some(r.headers.len() + 2))?;
    for (name, value) in r.headers {
        header.append_header(name, value)?;
    }
    header.insert_header("cache-control", "no-store")?;
    header.insert_header("content-length", r.body.len().to_string())?;
    session
        .write_response_header(Box::new(header), r.body.is_empty())
        .await?;
    if !r.body.is_empty() {
        session.write_response_body(Some(r.body), true).await?;
    }
    Ok(true)
}
