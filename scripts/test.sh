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

echo "==> cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

echo "==> cargo test"
cargo test --workspace --quiet

echo "==> sidecar test policies"
cargo run --quiet -p portcullis-sidecar -- test policies | tail -n 1
