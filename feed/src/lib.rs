//! Following the authserver's change feed (`/feed/v1`): a snapshot to
//! start from, then long polls for what changed after a cursor, a new
//! snapshot when the authserver says the cursor is too old.
//!
//! - [`Revocations`]: the users, sessions and tokens the feed revoked
//!   that still matter; gateways (and sidecars that verify tokens) refuse
//!   what they cover.
//! - [`Follower`]: the loop; entity changes go to a [`Sink`] (a decision
//!   engine: [`EngineSink`]), applied a batch at a time.
//! - [`Status`]: where the follower stands (cursor, lag), for `/readyz`,
//!   metrics, and failing closed once it is stale.

mod config;
mod engine;
mod follower;
mod metrics;
mod revocations;
mod wire;

pub use config::{FeedConfig, FeedConfigError};
pub use engine::EngineSink;
pub use follower::{Follower, FollowerConfig, OnStale, Running, Sink, Status, start};
pub use metrics::StatusCollector;
pub use revocations::{Guard, Revocations, SharedRevocations, TokenFacts, Verdict};
pub use wire::{Change, ChangesPage, Snapshot};
