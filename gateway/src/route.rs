//! Routes: the request's host (exact; host-specific routes first), then
//! the longest path prefix on a segment boundary, compared in any case for
//! `case_insensitive` routes. A path that would fall to a less specific
//! route only because of letter case is refused. Each route carries what
//! the proxy does for its requests.

use std::sync::Arc;

use crate::config::{AuthMode, Config, RateLimitKey};
use crate::metrics::{Metrics, RouteMetrics};
use crate::ratelimit::Limiter;

pub struct Route {
    /// Normalised host name (no port); `None` matches any host.
    pub host: Option<String>,
    pub prefix: String,
    pub case_insensitive: bool,
    pub upstream: usize,
    pub auth: AuthMode,
    pub scopes: Vec<String>,
    pub forward_authorization: bool,
    pub policy: bool,
    pub policy_fail_open: bool,
    pub rate_limit: Option<RouteLimit>,
    pub metrics: RouteMetrics,
    /// The prefix, for the access log.
    pub label: Arc<str>,
}

pub struct RouteLimit {
    pub limiter: Limiter,
    pub key: RateLimitKey,
    /// IPv6 sources share a bucket per prefix of this length.
    pub ipv6_prefix: u8,
}

pub struct Routes {
    /// Host-specific routes first, then longest prefix: the first match
    /// is the most specific.
    routes: Vec<Route>,
    host_specific: bool,
}

impl Routes {
    pub fn new(
        config: &Config,
        metrics: &Metrics,
        redis: Option<&Arc<bootstrap::redis::Redis>>,
    ) -> Self {
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .map(|r| Route {
                metrics: RouteMetrics::new(metrics, &r.path_prefix),
                label: Arc::from(r.path_prefix.as_str()),
                host: r.host.as_deref().map(|h| {
                    decision::host::normalize(h)
                        .map_or_else(|_| h.to_ascii_lowercase(), |n| n.into_owned())
                }),
                prefix: r.path_prefix.clone(),
                case_insensitive: r.case_insensitive,
                upstream: config
                    .upstreams
                    .iter()
                    .position(|u| u.name == r.upstream)
                    .unwrap_or(0),
                auth: r.auth,
                scopes: r.scopes.clone(),
                forward_authorization: r.forward_authorization,
                policy: r.policy,
                policy_fail_open: r.policy_fail_open,
                rate_limit: r.rate_limit.as_ref().map(|l| RouteLimit {
                    limiter: Limiter::new(
                        l,
                        redis,
                        &format!("{}rl:{}:", config.redis_prefix, r.path_prefix),
                    ),
                    key: l.key,
                    ipv6_prefix: l.ipv6_prefix,
                }),
            })
            .collect();
        routes.sort_by(|a, b| {
            b.host
                .is_some()
                .cmp(&a.host.is_some())
                .then(b.prefix.len().cmp(&a.prefix.len()))
        });
        let host_specific = routes.iter().any(|r| r.host.is_some());
        Self {
            routes,
            host_specific,
        }
    }

    /// Some route names a host, so every request must name one.
    pub fn host_specific(&self) -> bool {
        self.host_specific
    }

    pub fn get(&self, index: usize) -> Option<&Route> {
        self.routes.get(index)
    }

    /// The route for a settled host name (no port) and canonical path.
    /// `Err(prefix)`: the path would be a more specific route's but for
    /// letter case, which many upstreams ignore (Express, ASP.NET Core,
    /// IIS): refused rather than sent to a less specific route.
    pub fn find(&self, host: Option<&str>, path: &str) -> Result<Option<usize>, &str> {
        for (i, r) in self.routes.iter().enumerate() {
            if r.host.as_deref().is_some_and(|h| host != Some(h)) {
                continue;
            }
            if prefix_matches(path, &r.prefix, r.case_insensitive) {
                return Ok(Some(i));
            }
            if prefix_matches(path, &r.prefix, true) {
                return Err(&r.prefix);
            }
        }
        Ok(None)
    }
}

/// `prefix` starts `path` and ends on a segment boundary.
fn prefix_matches(path: &str, prefix: &str, case_insensitive: bool) -> bool {
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    let same = if case_insensitive {
        head.eq_ignore_ascii_case(prefix)
    } else {
        head == prefix
    };
    same && (prefix.ends_with('/')
        || path.len() == prefix.len()
        || path.as_bytes()[prefix.len()] == b'/')
}

#[cfg(test)]
mod tests {
    use super::prefix_matches;

    #[test]
    fn prefixes_match_on_segment_boundaries() {
        assert!(prefix_matches("/api", "/api", false));
        assert!(prefix_matches("/api/x", "/api", false));
        assert!(!prefix_matches("/apix", "/api", false));
        assert!(prefix_matches("/anything", "/", false));
        assert!(!prefix_matches("/API/x", "/api", false));
        assert!(prefix_matches("/API/x", "/api", true));
        assert!(prefix_matches("/Api", "/api", true));
        assert!(!prefix_matches("/ap", "/api", true));
        // A multi-byte character across the prefix's end is no match.
        assert!(!prefix_matches("/ap\u{e9}", "/api", true));
    }
}
