//! Gateway configurations as values. Tests and the load runner describe
//! issuers, upstreams and routes; the TOML the gateway reads is written in
//! one place. Raw TOML stays for tests of the config parser itself.

use std::fmt::{Display, Write as _};

/// A TOML string (JSON's string escapes are TOML's basic-string escapes).
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| quoted(i)).collect();
    format!("[{}]", quoted.join(", "))
}

/// How a route authenticates (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Public,
    Jwt,
    Session,
}

impl Auth {
    fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Jwt => "jwt",
            Self::Session => "session",
        }
    }
}

/// One `[[routes]]` entry.
#[derive(Debug, Clone)]
pub struct Route {
    path_prefix: String,
    upstream: String,
    auth: Auth,
    scopes: Vec<String>,
    keys: Vec<(String, String)>,
}

impl Route {
    pub fn new(path_prefix: &str, upstream: &str, auth: Auth) -> Self {
        Self {
            path_prefix: path_prefix.into(),
            upstream: upstream.into(),
            auth,
            scopes: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// The scopes a token must carry.
    #[must_use]
    pub fn scopes(mut self, scopes: &[&str]) -> Self {
        self.scopes = scopes.iter().map(|s| (*s).to_owned()).collect();
        self
    }

    /// Any other key of the route, its value written as TOML
    /// (`.set("policy", true)`, `.set("host", "\"a.test\"")`).
    #[must_use]
    pub fn set(mut self, key: &str, toml_value: impl Display) -> Self {
        self.keys.push((key.into(), toml_value.to_string()));
        self
    }
}

/// A whole gateway configuration, written by [`GatewayConfig::to_toml`].
#[derive(Debug, Clone, Default)]
pub struct GatewayConfig {
    keys: Vec<(String, String)>,
    issuers: Vec<(String, Vec<String>)>,
    upstreams: Vec<(String, Vec<String>)>,
    routes: Vec<Route>,
    tables: Vec<String>,
}

impl GatewayConfig {
    pub fn new() -> Self {
        Self::default()
    }

    /// A top-level key, its value written as TOML.
    #[must_use]
    pub fn set(mut self, key: &str, toml_value: impl Display) -> Self {
        self.keys.push((key.into(), toml_value.to_string()));
        self
    }

    /// A trusted issuer (keys from its discovery document).
    #[must_use]
    pub fn issuer(mut self, issuer: &str, audiences: &[&str]) -> Self {
        let audiences = audiences.iter().map(|a| (*a).to_owned()).collect();
        self.issuers.push((issuer.into(), audiences));
        self
    }

    #[must_use]
    pub fn upstream(mut self, name: &str, addresses: &[impl Display]) -> Self {
        let addresses = addresses.iter().map(ToString::to_string).collect();
        self.upstreams.push((name.into(), addresses));
        self
    }

    #[must_use]
    pub fn route(mut self, route: Route) -> Self {
        self.routes.push(route);
        self
    }

    /// A table written as given (`[session]`, `[sidecar]`, …), after the
    /// routes.
    #[must_use]
    pub fn table(mut self, toml: &str) -> Self {
        self.tables.push(toml.into());
        self
    }

    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (key, value) in &self.keys {
            let _ = writeln!(out, "{key} = {value}");
        }
        for (issuer, audiences) in &self.issuers {
            let _ = write!(
                out,
                "\n[[issuers]]\nissuer = {}\naudiences = {}\n",
                quoted(issuer),
                list(audiences)
            );
        }
        for (name, addresses) in &self.upstreams {
            let _ = write!(
                out,
                "\n[[upstreams]]\nname = {}\naddresses = {}\n",
                quoted(name),
                list(addresses)
            );
        }
        for route in &self.routes {
            let _ = write!(
                out,
                "\n[[routes]]\npath_prefix = {}\nupstream = {}\nauth = {}\n",
                quoted(&route.path_prefix),
                quoted(&route.upstream),
                quoted(route.auth.as_str())
            );
            if !route.scopes.is_empty() {
                let _ = writeln!(out, "scopes = {}", list(&route.scopes));
            }
            for (key, value) in &route.keys {
                let _ = writeln!(out, "{key} = {value}");
            }
        }
        for table in &self.tables {
            let _ = write!(out, "\n{}\n", table.trim());
        }
        out
    }
}

impl Display for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_toml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_the_toml_the_gateway_reads() {
        let config = GatewayConfig::new()
            .set("threads", 1)
            .issuer("http://127.0.0.1:9000", &["api"])
            .upstream("app", &["127.0.0.1:3000"])
            .route(Route::new("/public", "app", Auth::Public))
            .route(
                Route::new("/api", "app", Auth::Jwt)
                    .scopes(&["orders:read"])
                    .set("policy", true),
            )
            .table("[sidecar]\naddress = \"127.0.0.1:9191\"");
        assert_eq!(
            config.to_toml(),
            r#"threads = 1

[[issuers]]
issuer = "http://127.0.0.1:9000"
audiences = ["api"]

[[upstreams]]
name = "app"
addresses = ["127.0.0.1:3000"]

[[routes]]
path_prefix = "/public"
upstream = "app"
auth = "public"

[[routes]]
path_prefix = "/api"
upstream = "app"
auth = "jwt"
scopes = ["orders:read"]
policy = true

[sidecar]
address = "127.0.0.1:9191"
"#
        );
        let quote = Route::new("/a\"b", "app", Auth::Session);
        let text = GatewayConfig::new().route(quote).to_toml();
        assert!(text.contains(r#"path_prefix = "/a\"b""#), "{text}");
    }
}
