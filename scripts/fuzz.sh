#!/usr/bin/env bash
# Fuzz one target for a while:  scripts/fuzz.sh TARGET SECONDS
# Targets (fuzz/fuzz_targets): path host cookie token gateway_config routes.
# Installs cargo-fuzz when missing; the corpus grows in fuzz/corpus/TARGET
# (seeded from fuzz/seeds/TARGET); a crash or a broken property leaves its
# input in fuzz/artifacts/TARGET and exits non-zero.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: scripts/fuzz.sh TARGET SECONDS"
target=${1:?$usage}
seconds=${2:?$usage}
[ -f "fuzz/fuzz_targets/$target.rs" ] || { echo "no fuzz target \`$target\` (see fuzz/fuzz_targets)" >&2; exit 2; }
scripts/install-deps.sh --build
command -v cargo-fuzz >/dev/null || cargo install --locked --quiet cargo-fuzz
corpus="fuzz/corpus/$target"
mkdir -p "$corpus"
if [ -d "fuzz/seeds/$target" ]; then cp -n "fuzz/seeds/$target"/* "$corpus"/; fi
dict=()
if [ -f "fuzz/dict/$target.dict" ]; then dict=(-dict="fuzz/dict/$target.dict"); fi
# cargo-fuzz passes nightly flags; RUSTC_BOOTSTRAP lets the one stable
# toolchain here take them. No sanitizer: the code is safe Rust
# (`unsafe_code = "forbid"`), and what is checked is each target's
# assertions (properties), plus panics.
export RUSTC_BOOTSTRAP=1
exec cargo fuzz run --sanitizer none "$target" "$corpus" -- \
  -max_total_time="$seconds" -print_final_stats=1 "${dict[@]}"
