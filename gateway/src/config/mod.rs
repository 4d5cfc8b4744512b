//! The gateway's configuration: `gateway.toml`, then `PORTCULLIS_GATEWAY__*`
//! variables. Every key is documented in `gateway/gateway.example.toml`.
//! This file holds the top level, its checks across sections, and name
//! resolution (after validation); sections with rules of their own have
//! a module each: [`upstream`], [`route`], [`session`].

use std::collections::HashSet;
use std::net::SocketAddr;

use bootstrap::ConfigError;
use bootstrap::telemetry::{LogFormat, TracingConfig};
use serde::Deserialize;

mod route;
mod session;
mod upstream;

pub use route::{AuthMode, RateLimitConfig, RateLimitKey, RateLimitScope, Route};
pub use session::{SessionConfig, SessionStore};
pub use upstream::{Balance, HashOn, HealthCheckConfig, UpstreamConfig};
use upstream::{check_address, resolve};

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Plain-HTTP listener.
    pub listen: SocketAddr,
    /// `/healthz`, `/readyz`, `/metrics`.
    pub admin: SocketAddr,
    /// Accept HTTP/2 without TLS (prior knowledge, h2c) on `listen`, e.g.
    /// for gRPC clients.
    pub h2c: bool,
    /// The HTTPS listener (TLS 1.2 and 1.3; HTTP/2 and HTTP/1.1 by ALPN).
    pub tls: Option<TlsConfig>,
    /// Worker threads of the proxy.
    pub threads: usize,
    /// Requests whose header block (names and values) is larger are
    /// refused with 431 before any other work.
    pub max_request_header_bytes: usize,
    /// From a request's first byte to the end of its header, at most this
    /// long (slow clients get 408); 0 turns the deadline off.
    pub request_header_timeout_secs: u64,
    /// Let idle worker threads take work queued on busy ones. Off (the
    /// default), each thread serves its own connections and reuses its own
    /// upstream connections, as nginx and Envoy workers do: fewer
    /// cross-thread wake-ups (`loadtest/reports/gateway.md`).
    pub work_stealing: bool,
    /// Who forwards HTTP/1.1 requests to HTTP/1.1 upstreams: the gateway
    /// itself (`direct`, the default: `crate::direct`) or pingora-proxy
    /// (`pingora`), which always forwards HTTP/2, upgrades, `Expect` and
    /// HTTP/1.0. Both behave the same (`tests/it/differential/`);
    /// `direct` costs less CPU per request (`loadtest/reports/gateway.md`).
    pub forwarding: Forwarding,
    /// After SIGTERM (or handing the listeners over), requests in flight
    /// get this long to finish.
    pub shutdown_grace_secs: u64,
    /// Unix socket over which a running gateway hands its listening
    /// sockets to its successor (`gateway serve --upgrade`, then SIGQUIT
    /// to the old one): a binary or config change without refusing a
    /// single connection.
    pub upgrade_sock: std::path::PathBuf,
    pub log_level: String,
    pub log_format: LogFormat,
    /// OpenTelemetry export (off by default).
    pub tracing: TracingConfig,
    /// One JSON line per request (never tokens, cookies or query strings).
    pub access_log: crate::access_log::AccessLogConfig,
    /// Headers the gateway owns: removed from every incoming request
    /// before the verified ones are added (prefix match, lower case), in
    /// every spelling an upstream may read as the same: `X_Auth_Subject`
    /// is `x-auth-subject` to CGI, PHP, WSGI and Rack.
    pub owned_header_prefix: String,
    /// Peers whose `X-Forwarded-For` and `X-Forwarded-Proto` are believed
    /// (addresses or CIDR blocks, e.g. the ingress in front of the
    /// gateway). The client address found through them is the one rate
    /// limits, policies (`source_ip`) and the access log use. Empty: the
    /// TCP peer is the client.
    pub trusted_proxies: Vec<bootstrap::net::Cidr>,
    /// Forwarding headers the upstream gets, set from what the gateway saw
    /// (whatever the client sent under these names is removed):
    /// `x_forwarded` (`X-Forwarded-For`, `-Proto`, `-Host`, `X-Real-IP`),
    /// `forwarded` (RFC 7239) or `both`.
    pub forwarded_headers: ForwardedHeaders,
    /// Bearer tokens that fail verification, per client address: past this
    /// budget a client's unknown tokens get 429 without being checked, so
    /// a flood of random opaque tokens cannot become a flood of
    /// introspection calls.
    pub failed_auth_limit: FailedAuthLimit,
    /// Cookies the upstream never sees, besides the gateway's own session
    /// cookies: e.g. the identity provider's, when it shares the host.
    pub private_cookies: Vec<String>,
    pub issuers: Vec<tokens::IssuerConfig>,
    /// A policy directory evaluated in-process (the sidecar's engine
    /// linked in: same decisions, no network hop) for routes with `policy`.
    pub policies: Option<std::path::PathBuf>,
    /// Browser sign-in through an OpenID Connect provider, for `session`
    /// routes.
    pub session: Option<SessionConfig>,
    /// The sidecar, asked over ext_authz gRPC for routes with `policy`
    /// (instead of `policies`).
    pub sidecar: Option<SidecarConfig>,
    /// PEM file of the CAs that TLS upstreams' certificates must chain to
    /// (instead of the system roots), for proxying and health checks alike.
    pub upstream_ca_file: Option<std::path::PathBuf>,
    /// Redis for `global` rate limits, sessions stored server-side and
    /// back-channel logout marks, shared by every gateway replica:
    /// `redis://host:port` or `redis-cluster://host:port,host:port,…`.
    pub redis_url: Option<String>,
    /// Prefix of every key the gateway writes to Redis.
    pub redis_prefix: String,
    /// The authserver's change feed: revocations refuse its tokens and
    /// sessions (users made inactive, sessions ended, tokens revoked)
    /// within a second; users and groups join the embedded engine's
    /// entities (`policies`), or, with a sidecar (which follows them
    /// itself), tell which cached sidecar verdicts are outdated; without
    /// a decider they are not followed.
    pub feed: feed::FeedConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routes: Vec<Route>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardedHeaders {
    #[default]
    XForwarded,
    Forwarded,
    Both,
}

/// See [`Config::forwarding`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Forwarding {
    Direct,
    Pingora,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailedAuthLimit {
    /// Sustained failures per second per client address.
    pub requests_per_second: f64,
    /// Failures allowed at once on top of the rate.
    pub burst: u32,
    /// IPv6 clients share a budget per prefix of this length.
    pub ipv6_prefix: u8,
}

impl Default for FailedAuthLimit {
    fn default() -> Self {
        Self {
            requests_per_second: 1.0,
            burst: 20,
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: SocketAddr,
    /// Chosen by SNI from each certificate's DNS names; the first also
    /// serves clients without SNI or with an unknown name.
    pub certificates: Vec<CertificateConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM chain, leaf first.
    pub cert: std::path::PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: std::path::PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SidecarConfig {
    /// The sidecar's gRPC listener, `http://host:port`.
    pub address: String,
    /// Longest wait for a decision; past it the request fails closed (503).
    pub deadline_ms: u64,
    pub connect_timeout_ms: u64,
    /// HTTP/2 connections, each multiplexing many checks.
    pub connections: usize,
    /// Decisions remembered (0 turns the cache off).
    pub cache_entries: u64,
    /// How long a decision is reused, never past the token's `exp`.
    pub cache_ttl_secs: u64,
}

impl Default for SidecarConfig {
    fn default() -> Self {
        Self {
            address: "http://127.0.0.1:9191".into(),
            deadline_ms: 5,
            connect_timeout_ms: 250,
            connections: 2,
            cache_entries: 100_000,
            cache_ttl_secs: 5,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            admin: SocketAddr::from(([127, 0, 0, 1], 9000)),
            h2c: true,
            tls: None,
            threads: 2,
            max_request_header_bytes: 32 * 1024,
            request_header_timeout_secs: 10,
            work_stealing: false,
            forwarding: Forwarding::Direct,
            shutdown_grace_secs: 10,
            upgrade_sock: std::path::PathBuf::from("/tmp/portcullis-gateway-upgrade.sock"),
            log_level: "info".into(),
            log_format: LogFormat::Json,
            tracing: TracingConfig::default(),
            access_log: crate::access_log::AccessLogConfig::default(),
            owned_header_prefix: "x-auth-".into(),
            trusted_proxies: Vec::new(),
            forwarded_headers: ForwardedHeaders::default(),
            failed_auth_limit: FailedAuthLimit::default(),
            private_cookies: Vec::new(),
            issuers: Vec::new(),
            policies: None,
            sidecar: None,
            session: None,
            upstream_ca_file: None,
            redis_url: None,
            redis_prefix: "portcullis:gateway:".into(),
            feed: feed::FeedConfig::default(),
            upstreams: Vec::new(),
            routes: Vec::new(),
        }
    }
}

impl Config {
    /// Read, validate, then resolve the upstreams' names.
    pub fn load(file: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let mut config: Self = bootstrap::load("GATEWAY", file, std::env::vars())?;
        config.validate()?;
        config.resolve()?;
        Ok(config)
    }

    /// Every upstream's addresses, names resolved through the system's
    /// resolver (duplicates dropped).
    pub fn resolve(&mut self) -> Result<(), ConfigError> {
        for (i, u) in self.upstreams.iter_mut().enumerate() {
            u.resolved.clear();
            for address in &u.addresses {
                let found = resolve(address)
                    .map_err(|e| ConfigError::invalid(format!("upstreams[{i}].addresses"), e))?;
                for addr in found {
                    if !u.resolved.contains(&addr) {
                        u.resolved.push(addr);
                    }
                }
            }
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.tracing.validate()?;
        if !(1..=256).contains(&self.threads) {
            return Err(ConfigError::invalid("threads", "must be 1..=256"));
        }
        if self.request_header_timeout_secs > 300 {
            return Err(ConfigError::invalid(
                "request_header_timeout_secs",
                "must be 0 (off) to 300",
            ));
        }
        if self.owned_header_prefix.is_empty()
            || self.owned_header_prefix != self.owned_header_prefix.to_ascii_lowercase()
        {
            return Err(ConfigError::invalid(
                "owned_header_prefix",
                "must be a non-empty lower-case header prefix",
            ));
        }
        // A cookie name is an RFC 6265 token.
        let token = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
        if let Some((i, name)) = self
            .private_cookies
            .iter()
            .enumerate()
            .find(|(_, n)| n.is_empty() || !n.chars().all(token))
        {
            return Err(ConfigError::invalid(
                format!("private_cookies[{i}]"),
                format!("{name:?} is not a cookie name"),
            ));
        }
        let limit = &self.failed_auth_limit;
        if !(limit.requests_per_second.is_finite() && limit.requests_per_second > 0.0)
            || limit.burst == 0
        {
            return Err(ConfigError::invalid(
                "failed_auth_limit",
                "`requests_per_second` and `burst` must be greater than 0",
            ));
        }
        if limit.ipv6_prefix > 128 {
            return Err(ConfigError::invalid(
                "failed_auth_limit.ipv6_prefix",
                "must be 0..=128",
            ));
        }
        if let Err(e) = tokens::IssuerConfig::check_all(&self.issuers) {
            return Err(ConfigError::invalid(
                format!("issuers[{}].{}", e.index, e.field),
                e.message,
            ));
        }
        self.feed
            .validate()
            .map_err(|e| ConfigError::invalid(format!("feed.{}", e.key), e.message))?;
        if self.policies.is_some() && self.sidecar.is_some() {
            return Err(ConfigError::invalid(
                "sidecar",
                "choose one decider: `policies` (embedded) or `[sidecar]`",
            ));
        }
        if let Some(s) = &self.sidecar {
            if !(s.address.starts_with("http://") || s.address.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "sidecar.address",
                    "must be an http:// or https:// URL",
                ));
            }
            if s.deadline_ms == 0 || s.connect_timeout_ms == 0 {
                return Err(ConfigError::invalid(
                    "sidecar",
                    "`deadline_ms` and `connect_timeout_ms` must be greater than 0",
                ));
            }
            if !(1..=64).contains(&s.connections) {
                return Err(ConfigError::invalid(
                    "sidecar.connections",
                    "must be 1..=64",
                ));
            }
        }
        if let Some(tls) = &self.tls {
            if tls.certificates.is_empty() {
                return Err(ConfigError::invalid(
                    "tls.certificates",
                    "needs at least one certificate",
                ));
            }
            if tls.listen == self.listen || tls.listen == self.admin {
                return Err(ConfigError::invalid(
                    "tls.listen",
                    "must differ from `listen` and `admin`",
                ));
            }
        }
        if let Some(url) = &self.redis_url
            && let Err(e) = bootstrap::redis::Redis::new(url, std::time::Duration::from_secs(1))
        {
            return Err(ConfigError::invalid("redis_url", e.to_string()));
        }
        if let Some(s) = &self.session {
            s.validate()?;
            if s.store == SessionStore::Redis && self.redis_url.is_none() {
                return Err(ConfigError::invalid(
                    "session.store",
                    "`redis` needs `redis_url`",
                ));
            }
        }
        if let Some(ca) = &self.upstream_ca_file
            && std::fs::metadata(ca).is_err()
        {
            return Err(ConfigError::invalid(
                "upstream_ca_file",
                format!("`{}` cannot be read", ca.display()),
            ));
        }
        let mut names = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            if !names.insert(u.name.as_str()) {
                return Err(ConfigError::invalid(
                    format!("upstreams[{i}].name"),
                    format!("`{}` is defined twice", u.name),
                ));
            }
            if u.connect_timeout_ms == 0 || u.read_timeout_ms == 0 || u.write_timeout_ms == 0 {
                return Err(ConfigError::invalid(
                    format!("upstreams[{i}]"),
                    "timeouts must be greater than 0",
                ));
            }
            if let Some(h) = &u.health_check
                && (!h.path.starts_with('/')
                    || h.interval_ms == 0
                    || h.timeout_ms == 0
                    || h.unhealthy_threshold == 0
                    || h.healthy_threshold == 0)
            {
                return Err(ConfigError::invalid(
                    format!("upstreams[{i}].health_check"),
                    "`path` must start with `/`; intervals, timeouts and thresholds must be greater than 0",
                ));
            }
            if u.tls && u.sni.is_empty() {
                return Err(ConfigError::invalid(
                    format!("upstreams[{i}].sni"),
                    "a TLS upstream needs the server name to verify",
                ));
            }
            if let Some(e) = u.addresses.iter().find_map(|a| check_address(a).err()) {
                return Err(ConfigError::invalid(format!("upstreams[{i}].addresses"), e));
            }
            if u.addresses.is_empty() {
                return Err(ConfigError::invalid(
                    format!("upstreams[{i}].addresses"),
                    "needs at least one address",
                ));
            }
        }
        if self.routes.is_empty() {
            return Err(ConfigError::invalid(
                "routes",
                "at least one route is needed",
            ));
        }
        for (i, r) in self.routes.iter().enumerate() {
            match decision::path::normalize(&r.path_prefix) {
                Ok(p) if p == r.path_prefix => {}
                Ok(p) => {
                    return Err(ConfigError::invalid(
                        format!("routes[{i}].path_prefix"),
                        format!("`{}` is not canonical: write `{p}`", r.path_prefix),
                    ));
                }
                Err(e) => {
                    return Err(ConfigError::invalid(
                        format!("routes[{i}].path_prefix"),
                        format!("`{}`: {e}", r.path_prefix),
                    ));
                }
            }
            if let Some(host) = &r.host {
                match decision::host::normalize(host) {
                    Ok(h) if decision::host::name(&h) == h => {}
                    Ok(_) => {
                        return Err(ConfigError::invalid(
                            format!("routes[{i}].host"),
                            format!("`{host}`: a route names a host without a port"),
                        ));
                    }
                    Err(e) => {
                        return Err(ConfigError::invalid(
                            format!("routes[{i}].host"),
                            format!("`{host}`: {e}"),
                        ));
                    }
                }
            }
            if let Some(other) = self
                .routes
                .iter()
                .find(|o| o.upstream == r.upstream && o.case_insensitive != r.case_insensitive)
                && r.case_insensitive
            {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].case_insensitive"),
                    format!(
                        "upstream `{}` ignores case for this route but not for `{}`: every route to it must agree",
                        r.upstream, other.path_prefix
                    ),
                ));
            }
            if r.case_insensitive && decision::path::lower_case(&r.path_prefix) != r.path_prefix {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].path_prefix"),
                    "a `case_insensitive` route's prefix is written in lower case",
                ));
            }
            if r.forward_authorization && r.auth == AuthMode::Public {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].forward_authorization"),
                    "only a verified credential is forwarded, and a `public` route verifies none",
                ));
            }
            if !names.contains(r.upstream.as_str()) {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].upstream"),
                    format!("no upstream named `{}`", r.upstream),
                ));
            }
            if r.policy && self.policies.is_none() && self.sidecar.is_none() {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].policy"),
                    "needs `policies` (a policy directory) or `[sidecar]`",
                ));
            }
            if let Some(limit) = &r.rate_limit {
                let field = |f: &str| format!("routes[{i}].rate_limit.{f}");
                if !(limit.requests_per_second.is_finite() && limit.requests_per_second > 0.0) {
                    return Err(ConfigError::invalid(
                        field("requests_per_second"),
                        "must be a number greater than 0",
                    ));
                }
                if limit.burst == 0 {
                    return Err(ConfigError::invalid(field("burst"), "must be at least 1"));
                }
                if limit.ipv6_prefix > 128 {
                    return Err(ConfigError::invalid(
                        field("ipv6_prefix"),
                        "must be 0..=128",
                    ));
                }
                if limit.scope == RateLimitScope::Global && self.redis_url.is_none() {
                    return Err(ConfigError::invalid(
                        field("scope"),
                        "`global` needs `redis_url`",
                    ));
                }
            }
            if r.auth == AuthMode::Session && self.session.is_none() {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].auth"),
                    "`session` needs a `[session]` table",
                ));
            }
            if r.auth == AuthMode::Jwt && self.issuers.is_empty() {
                return Err(ConfigError::invalid(
                    format!("routes[{i}].auth"),
                    "`jwt` needs at least one `[[issuers]]`",
                ));
            }
        }
        Ok(())
    }
}
