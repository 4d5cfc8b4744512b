//! The one way a service reaches Redis: a single server (`redis://host:port`)
//! or a Redis Cluster (`redis-cluster://host:port,host:port,…`, any of its
//! nodes as seeds), both reconnecting by themselves.
//!
//! A cluster connection follows slot moves and replica promotions on its
//! own; a command keeps to one slot, so an operation that must touch
//! several keys at once puts them under one hash tag (`{…}`).

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

const CLUSTER_SCHEME: &str = "redis-cluster://";

/// A `redis_url` that names no Redis this module can reach.
#[derive(Debug, thiserror::Error)]
#[error("`{url}`: {reason}")]
pub struct UrlError {
    url: String,
    reason: String,
}

enum Target {
    Single(redis::Client),
    Cluster(Box<ClusterClient>),
}

/// A Redis server or cluster, connected on first use (on the runtime that
/// uses it) and shared by every caller. Cheap to share behind an `Arc`.
pub struct Redis {
    target: Target,
    timeout: Duration,
    conn: OnceCell<Connection>,
}

impl Redis {
    /// Checks `url` without connecting. `timeout` bounds connecting and
    /// each command, retries and redirections included.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, UrlError> {
        let invalid = |reason: &dyn std::fmt::Display| UrlError {
            url: crate::config::redact_url(url),
            reason: reason.to_string(),
        };
        let target = if let Some(nodes) = url.strip_prefix(CLUSTER_SCHEME) {
            let (credentials, nodes) = match nodes.rsplit_once('@') {
                Some((credentials, nodes)) => (format!("{credentials}@"), nodes),
                None => (String::new(), nodes),
            };
            let seeds: Vec<String> = nodes
                .trim_end_matches('/')
                .split(',')
                .map(|node| format!("redis://{credentials}{}", node.trim()))
                .collect();
            if seeds.iter().any(|s| s.ends_with("//") || s.ends_with('@')) {
                return Err(invalid(
                    &"a cluster URL lists host:port seeds, comma-separated",
                ));
            }
            let client = ClusterClientBuilder::new(seeds)
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .build()
                .map_err(|e| invalid(&e))?;
            Target::Cluster(Box::new(client))
        } else if url.starts_with("redis://") || url.starts_with("rediss://") {
            Target::Single(redis::Client::open(url).map_err(|e| invalid(&e))?)
        } else {
            return Err(invalid(
                &"must be a redis://, rediss:// or redis-cluster:// URL",
            ));
        };
        Ok(Self {
            target,
            timeout,
            conn: OnceCell::new(),
        })
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// The shared connection; a failed first connect is tried again by the
    /// next caller.
    pub async fn connection(&self) -> RedisResult<Connection> {
        self.conn
            .get_or_try_init(|| async {
                Ok(match &self.target {
                    Target::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(self.timeout))
                            .set_response_timeout(Some(self.timeout));
                        Connection::Single(
                            ConnectionManager::new_with_config(client.clone(), config).await?,
                        )
                    }
                    Target::Cluster(client) => {
                        Connection::Cluster(client.get_async_connection().await?)
                    }
                })
            })
            .await
            .cloned()
    }
}

/// A connection to either shape; commands route themselves.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_millis(500);

    #[test]
    fn urls_name_one_server_or_a_cluster() {
        assert!(
            !Redis::new("redis://127.0.0.1:6379/0", T)
                .unwrap()
                .is_cluster()
        );
        assert!(
            Redis::new("redis-cluster://127.0.0.1:7000,127.0.0.1:7001", T)
                .unwrap()
                .is_cluster()
        );
        assert!(
            Redis::new("redis-cluster://user:pw@10.0.0.1:7000/", T)
                .unwrap()
                .is_cluster()
        );
        for bad in [
            "http://127.0.0.1:6379",
            "127.0.0.1:6379",
            "redis-cluster://",
            "redis-cluster://a:1,,b:2",
        ] {
            assert!(Redis::new(bad, T).is_err(), "{bad} was accepted");
        }
        let err = Redis::new("postgres://u:secret@h/db", T).err().unwrap();
        assert!(!err.to_string().contains("secret"), "{err}");
    }
}
