#!/usr/bin/env bash
# The test command: formatting, lints, every test, the policy tests.
# Installs what the tests need first (idempotent), so a fresh machine with
# a Rust toolchain needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
scripts/services.sh

echo "==> cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check

echo "==> architecture test (ARCHITECTURE.md's rules)"
cargo test -p portcullis --test architecture --quiet

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The fuzz targets (their own workspace) must keep compiling too.
cargo clippy --manifest-path fuzz/Cargo.toml --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace --quiet

echo "==> the gateway's edge tests again, forwarded by pingora-proxy"
# Both forwarding paths must hold every hardening rule.
PORTCULLIS_TEST_FORWARDING=pingora cargo test -p portcullis-gateway --test it --quiet -- edge::

echo "==> sidecar test policies"
# The binary the tests just built: `cargo run -p` would resolve features for
# that one package and rebuild half the dependency graph.
"${CARGO_TARGET_DIR:-target}/debug/sidecar" test policies | tail -n 1
