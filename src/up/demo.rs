//! What `up` configures from the authserver's fresh dev credentials: the
//! gateway in front of the demo upstream.

use super::*;

/// A TOML string literal.
pub(super) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// What the generated configs and the printed instructions need from the
/// authserver's dev credentials.
pub(super) struct Demo {
    pub(super) issuer: String,
    pub(super) admin_token: String,
    pub(super) username: String,
    pub(super) password: String,
    pub(super) web_secret: String,
    pub(super) service_id: String,
    pub(super) service_secret: String,
    /// A service token for `/feed/v1`: the sidecar and the gateway follow
    /// the change feed with it.
    pub(super) feed_token: String,
    /// A service token for SCIM provisioning (`/scim/v2`).
    pub(super) scim_token: String,
}

impl Demo {
    pub(super) fn read(credentials: &Value) -> anyhow::Result<Self> {
        let field = |pointer: &str| {
            credentials
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("the authserver's dev credentials lack `{pointer}`"))
        };
        Ok(Self {
            issuer: field("/issuer")?,
            admin_token: field("/admin_token")?,
            username: field("/user/username")?,
            password: field("/user/password")?,
            web_secret: field("/clients/web/client_secret")?,
            service_id: field("/clients/service/client_id")?,
            service_secret: field("/clients/service/client_secret")?,
            feed_token: field("/service_tokens/feed")?,
            scim_token: field("/service_tokens/scim")?,
        })
    }

    /// The `[feed]` table of the sidecar's and the gateway's configs.
    pub(super) fn feed_toml(&self) -> String {
        format!(
            "[feed]\nurl = {}\ntoken = {}\n",
            toml_string(&self.issuer),
            toml_string(&self.feed_token)
        )
    }

    /// One shell line needing only curl and sed: a fresh client_credentials
    /// token, then the protected API with it, so it never expires in the
    /// terminal's scrollback.
    pub(super) fn curl_line(&self) -> String {
        format!(
            "curl -s http://{GATEWAY}/api/orders -H \"authorization: Bearer $(curl -s -u {}:{} \
             -d grant_type=client_credentials -d scope=orders:read {}/token | sed -E \
             's/.*\"access_token\":\"([^\"]+)\".*/\\1/')\"",
            self.service_id, self.service_secret, self.issuer
        )
    }
}

/// The gateway in front of the demo upstream: `/public` for everyone,
/// `/api` for bearer tokens, everything else for signed-in browsers; the
/// sidecar decides both (so `/admin/*` needs the admin role).
pub(super) fn gateway_toml(
    demo: &Demo,
    data: &Path,
    redis_url: Option<&str>,
) -> anyhow::Result<String> {
    let cookie_secret = authserver::crypto::random_token::<32>();
    let s = toml_string;
    let redis = redis_url.map_or(String::new(), |url| format!("redis_url = {}\n", s(url)));
    Ok(format!(
        r#"# Written by `portcullis up` at every start; the secrets change each time.
listen = "{GATEWAY}"
admin = "{GATEWAY_ADMIN}"
shutdown_grace_secs = 2
upgrade_sock = {sock}
# The authserver shares the host 127.0.0.1, so the browser sends its cookies
# here too; the demo app never sees them.
private_cookies = [{auth_cookies}]
{redis}
[sidecar]
address = "http://{SIDECAR_GRPC}"
# Roomier than the 5 ms default: a dev stack may be a debug build, and the
# first check also opens the connection.
deadline_ms = 50

[[issuers]]
issuer = {issuer}
audiences = ["portcullis"]
token_type = "at+jwt"

# Revocations from the authserver: a disabled user's tokens, an ended
# session's cookie are refused at once (the sidecar follows users and groups).
{feed}
[session]
issuer = {issuer}
client_id = "demo-web"
client_secret = {web_secret}
redirect_uri = "http://{GATEWAY}/_auth/callback"
scopes = ["openid", "profile", "email", "groups", "offline_access", "orders:read"]
access_audience = "portcullis"
cookie_secret = {cookie_secret}
post_logout_redirect_uri = "http://{GATEWAY}/"

[[upstreams]]
name = "demo"
addresses = ["{UPSTREAM}"]
health_check = {{ path = "/healthz", interval_ms = 2000, timeout_ms = 1000, unhealthy_threshold = 2, healthy_threshold = 1 }}

[[routes]]
path_prefix = "/public"
upstream = "demo"
auth = "public"

[[routes]]
path_prefix = "/api"
upstream = "demo"
auth = "jwt"
policy = true

[[routes]]
path_prefix = "/"
upstream = "demo"
auth = "session"
policy = true
"#,
        sock = s(&data.join("gateway-upgrade.sock").display().to_string()),
        feed = demo.feed_toml(),
        issuer = s(&demo.issuer),
        web_secret = s(&demo.web_secret),
        cookie_secret = s(&cookie_secret),
        auth_cookies = {
            let names = authserver::session::Cookies::new(false);
            format!("{}, {}", s(names.session), s(names.csrf))
        },
    ))
}
