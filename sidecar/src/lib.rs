//! Portcullis sidecar: the decision service next to each gateway. The
//! decision contract itself is the `decision` crate; this crate serves it
//! over HTTP ([`http`]) and Envoy ext_authz gRPC ([`grpc`]), verifies
//! bearer tokens when issuers are configured ([`authn`]), reloads the
//! policy directory ([`reload`]) and runs the CLI ([`cli`]).

mod authn;
pub mod cli;
pub mod config;
mod grpc;
mod http;
pub mod policy_test;
mod reload;
pub mod server;
