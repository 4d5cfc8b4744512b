#!/usr/bin/env bash
# Starts the servers the tests of the production backends use: PostgreSQL
# on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Idempotent: does nothing
# when they already answer. Installs them from Debian's packages when absent.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then sudo=sudo; else sudo=; fi

if ! command -v pg_isready >/dev/null || ! command -v redis-server >/dev/null; then
  echo "==> installing postgresql and redis-server"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql redis-server >/dev/null
fi

if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  echo "==> starting PostgreSQL"
  for version in $(ls /etc/postgresql); do
    $sudo pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  done
fi

if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "==> starting Redis"
  $sudo redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
fi

for _ in $(seq 1 50); do
  if pg_isready -q -h 127.0.0.1 -p 5432 && redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
    exit 0
  fi
  sleep 0.2
done
echo "warning: PostgreSQL or Redis is not answering; their backend tests will skip (or fail under CI)" >&2
