//! What every Portcullis service does before it serves: load and validate a
//! layered config, set up JSON logs, expose a Prometheus registry, and wait for
//! a shutdown signal. Kept small on purpose: each service owns its own config
//! struct and its own routes.

pub mod clock;
pub mod config;
pub mod cookie;
pub mod digest;
pub mod fs;
pub mod jsonl;
pub mod net;
pub mod random;
pub mod redis;
pub mod seal;
pub mod shutdown;
pub mod telemetry;

pub use config::{ConfigError, EXIT_CONFIG, load};
