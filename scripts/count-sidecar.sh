#!/usr/bin/env bash
# Instructions per `POST /v1/is_authorized` in the sidecar, counted by
# callgrind (repeatable on a noisy machine, unlike seconds): the release
# binary on one worker, the load bench's grown policy set (20 policies,
# ~100 entities), 2,000 keep-alive requests after a 200-request warm-up.
# Prints the total per request and the decision's own share
# (`Engine::is_authorized`, what the in-process baseline times).
#   scripts/count-sidecar.sh [cached|uncached]   (default: uncached)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-uncached}
requests=2000
target=${CARGO_TARGET_DIR:-target}
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --quiet -p portcullis-sidecar --bin sidecar
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cp policies/*.cedar policies/*.cedarschema policies/entities.json policies/routes.toml "$work"/
python3 - "$work" <<'PY'
import json, sys
d = sys.argv[1]
e = json.load(open(d + "/entities.json")); n = 0
while len(e) < 100:
    n += 1; u = "user-%d" % n
    e.append({"uid": {"type": "App::User", "id": u}, "attrs": {"department": "sales" if n % 2 == 0 else "engineering"}, "parents": [{"type": "App::Group", "id": "staff"}]})
    e.append({"uid": {"type": "App::Order", "id": "o-gen-%d" % n}, "attrs": {"owner": {"__entity": {"type": "App::User", "id": u}}, "department": "sales"}, "parents": []})
json.dump(e, open(d + "/entities.json", "w"))
with open(d + "/extra.cedar", "w") as f:
    for i in range(9):
        f.write('@id("extra-%d")\npermit (principal in App::Group::"team-%d", action == App::Action::"ReadReport", resource is App::Report)\nwhen { context.scopes.contains("reports:%d") };\n' % (i, i, i))
PY
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
entries=0; [ "$mode" = cached ] && entries=100000
PORTCULLIS_SIDECAR__CACHE__MAX_ENTRIES=$entries PORTCULLIS_SIDECAR__DECISION_LOG__PATH=/dev/null \
PORTCULLIS_SIDECAR__WATCH=false PORTCULLIS_SIDECAR__WORKERS=1 PORTCULLIS_SIDECAR__LOG_LEVEL=warn \
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$target/release/sidecar" serve \
  --http "127.0.0.1:$port" --grpc 127.0.0.1:0 --policies "$work" >"$work/valgrind.log" 2>&1 &
pid=$!
drive() {
  python3 - "$port" "$1" <<'PY'
import http.client, json, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port); c.connect(); break
    except OSError:
        time.sleep(0.1)
for i in range(n):
    body = json.dumps({"principal": {"type": "App::User", "id": "user-%d" % (i % 40 + 1)}, "action": {"type": "App::Action", "id": "ReadOrder"}, "resource": {"type": "App::Order", "id": "o-gen-%d" % (i % 40 + 1)}, "context": {"scopes": ["openid"], "amr": ["pwd"], "time": 0}}, separators=(",", ":"))
    c.request("POST", "/v1/is_authorized", body, {"content-type": "application/json"})
    r = c.getresponse(); answer = r.read()
    if r.status != 200 or not answer.startswith(b'{"decision":"Allow"'):
        sys.exit("unexpected answer %d: %r" % (r.status, answer[:200]))
PY
}
drive 200
callgrind_control -z "$pid" >/dev/null 2>&1
drive "$requests"
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid"; wait "$pid" 2>/dev/null || true
dump=$(ls "$work"/cg.out.* | head -1)
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | awk -v n="$requests" -v mode="$mode" '
  /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
  # The first (largest) inclusive line of the function itself.
  /Engine>::is_authorized( \[.*)?$/ && !decision { gsub(",", "", $1); decision = $1 }
  END {
    if (!total || !decision) { print "no counts in the callgrind output" > "/dev/stderr"; exit 1 }
    printf "%s: %.0fk instructions per request, Engine::is_authorized %.0fk, ratio %.2f\n",
      mode, total / n / 1000, decision / n / 1000, total / decision
  }'
