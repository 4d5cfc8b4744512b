//! The one harness for every test and benchmark that runs a real binary:
//! the gateway's, the sidecar's and the authserver's integration tests, the
//! stack tests, the benchmarks and the load runner.
//!
//! - [`Process`]: a child process on loopback, its output collected, ready
//!   when it logs its `listening` line (or accepts on a port), stopped when
//!   dropped.
//! - [`free_port`], [`wait_for_port`]: ports for binaries that cannot
//!   report the one they bound.
//! - [`workspace_binary`]: another package's binary, built when stale.
//! - [`redis_url`], [`required`]: the real services tests need, which must
//!   not be skipped under CI; [`Database`]: a fresh PostgreSQL database;
//!   [`RedisCluster`]: a Redis Cluster of our own on loopback.
//! - [`GatewayConfig`]: gateway configurations as values, not TOML text.
//! - [`OtlpReceiver`]: an OTLP trace receiver from the official protocol
//!   definitions, standing in for a collector.
//! - [`totp_code`]: TOTP codes from an independent implementation (pyotp).
//! - [`SoftPasskey`]: a software WebAuthn authenticator, for tests and
//!   benchmarks without a browser.
//! - [`cpu_seconds`], [`rss_mib`], [`peak_rss_mib`], [`resident_split_mib`]:
//!   what a process under load uses.

mod binaries;
mod database;
mod gateway_config;
mod otlp;
mod passkey;
mod ports;
mod process;
mod redis_cluster;
mod services;
mod totp;
mod usage;

pub use binaries::workspace_binary;
pub use database::Database;
pub use gateway_config::{Auth, GatewayConfig, Route};
pub use otlp::OtlpReceiver;
pub use passkey::SoftPasskey;
pub use ports::{free_port, wait_for_port};
pub use process::{Process, Stop};
pub use redis_cluster::RedisCluster;
pub use services::{redis_url, required};
pub use totp::{totp_code, unix_now};
pub use usage::{cpu_seconds, peak_rss_mib, resident_split_mib, rss_mib};
