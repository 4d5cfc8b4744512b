#!/usr/bin/env bash
# The README's first command: install what the build needs (a fresh
# machine with only the Rust toolchain lacks cmake, which Pingora's zlib-ng
# build requires), then run the whole stack on embedded defaults.
# Arguments go to `portcullis up` (e.g. --dev-credentials FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --build
# Every binary of the package: `up` runs each service from its own
# (`portcullis-gateway` and so on), which `cargo run` alone would not build.
cargo build --release --quiet -p portcullis
exec cargo run --release --quiet -- up "$@"
