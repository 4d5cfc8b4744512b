//! `[[routes]]`: prefix, host, authentication mode, scopes, policy, and
//! `rate_limit`.

use super::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    /// No credentials needed (identity headers are still stripped).
    Public,
    /// A bearer JWT from a configured issuer.
    Jwt,
    /// A browser session (`[session]`): sign-in by redirect, 401 for API
    /// requests.
    Session,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Exact `Host` (without port); unset matches any host.
    pub host: Option<String>,
    /// A canonical path (`policies/README.md`, "The path rule"), matched on
    /// segment boundaries.
    pub path_prefix: String,
    /// For upstreams that ignore letter case (IIS, Windows file systems):
    /// the prefix matches in any case, and the request's path is lower-cased
    /// before policy and upstream see it, so `/ADMIN/x` is `/admin/x` to
    /// all three. Every route to one upstream must agree.
    #[serde(default)]
    pub case_insensitive: bool,
    pub upstream: String,
    pub auth: AuthMode,
    /// Scopes the token must all carry.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Pass the client's `Authorization` header upstream (default: drop it).
    #[serde(default)]
    pub forward_authorization: bool,
    /// Ask the policy engine; a deny is a 403.
    #[serde(default)]
    pub policy: bool,
    /// When the sidecar cannot answer, let the request through (without
    /// decision headers) instead of failing closed with a 503.
    #[serde(default)]
    pub policy_fail_open: bool,
    pub rate_limit: Option<RateLimitConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Sustained rate per key.
    pub requests_per_second: f64,
    /// Requests allowed at once on top of the rate (bucket size).
    pub burst: u32,
    /// What a bucket belongs to. Without that identity (e.g. no token on a
    /// public route) the source address is used.
    #[serde(default)]
    pub key: RateLimitKey,
    #[serde(default)]
    pub scope: RateLimitScope,
    /// Keys remembered by a `local` limiter.
    #[serde(default = "default_max_keys")]
    pub max_keys: u64,
    /// IPv6 source addresses share a bucket per prefix of this length (a
    /// client holds a whole /64).
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
}

pub(super) fn default_ipv6_prefix() -> u8 {
    64
}

pub(super) fn default_max_keys() -> u64 {
    100_000
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitKey {
    ClientId,
    Subject,
    #[default]
    Source,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitScope {
    /// Buckets in this process.
    #[default]
    Local,
    /// Buckets in Redis (`redis_url`), shared by every replica.
    Global,
}
