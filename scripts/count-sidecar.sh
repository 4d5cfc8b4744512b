#!/usr/bin/env bash
# Instructions per decision in the sidecar, counted by callgrind
# (repeatable on a noisy machine, unlike seconds): the release binary on one
# worker, the load bench's grown policy set (20 policies, ~100 entities),
# 2,000 requests on one keep-alive connection after a 200-request warm-up.
# Prints the total per request and the decision's own share, what the load
# bench's in-process baseline times: `Engine::is_authorized` for HTTP
# `POST /v1/is_authorized`, `Engine::check` for gRPC ext_authz `Check`
# (the gateway's and Envoy's question, claims in `metadata_context`).
#   scripts/count-sidecar.sh [uncached|cached] [http|grpc]
#   (default: uncached http; CALLGRIND_OUT=FILE keeps the profile for
#   `callgrind_annotate --inclusive=yes FILE`)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-uncached}
surface=${2:-http}
case "$mode/$surface" in
  uncached/http | cached/http | uncached/grpc | cached/grpc) ;;
  *) echo "usage: $0 [uncached|cached] [http|grpc]" >&2; exit 2 ;;
esac
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
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
grpc_port=$(free_port)
entries=0; [ "$mode" = cached ] && entries=100000
PORTCULLIS_SIDECAR__CACHE__MAX_ENTRIES=$entries PORTCULLIS_SIDECAR__DECISION_LOG__PATH=/dev/null \
PORTCULLIS_SIDECAR__WATCH=false PORTCULLIS_SIDECAR__WORKERS=1 PORTCULLIS_SIDECAR__LOG_LEVEL=warn \
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$target/release/sidecar" serve \
  --http "127.0.0.1:$port" --grpc "127.0.0.1:$grpc_port" --policies "$work" >"$work/valgrind.log" 2>&1 &
pid=$!
drive() {
  if [ "$surface" = grpc ]; then drive_grpc "$1"; else drive_http "$1"; fi
}
drive_http() {
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
# The load bench's `Check`: GET /api/orders/<id> with the caller's claims
# where Envoy's jwt_authn puts them. Protobuf written by hand (grpcio is
# installed for the tracing test; the ext_authz stubs are not needed).
drive_grpc() {
  python3 - "$grpc_port" "$1" <<'PY'
import sys, grpc
port, n = int(sys.argv[1]), int(sys.argv[2])
def varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F; v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v: return bytes(out)
def field(no, payload):
    if isinstance(payload, str): payload = payload.encode()
    return varint(no << 3 | 2) + varint(len(payload)) + payload
def value(v):  # google.protobuf.Value
    if isinstance(v, str): return field(3, v)
    if isinstance(v, list): return field(6, b"".join(field(1, value(x)) for x in v))
    if isinstance(v, dict): return field(5, struct(v))
    raise TypeError(v)
def struct(d):  # google.protobuf.Struct: map<string, Value> fields = 1
    return b"".join(field(1, field(1, k) + field(2, value(v))) for k, v in d.items())
def check(i):
    claims = {"sub": "user-%d" % (i + 1), "amr": ["pwd"], "scope": "openid"}
    http = field(2, "GET") + field(4, "/api/orders/o-gen-%d" % (i % 40 + 1))
    request = field(2, http)  # AttributeContext.Request.http
    metadata = field(1, field(1, "envoy.filters.http.jwt_authn") + field(2, struct({"jwt_payload": claims})))
    attributes = field(4, request) + field(11, metadata)
    return field(1, attributes)  # CheckRequest.attributes
requests = [check(i) for i in range(40)]
channel = grpc.insecure_channel("127.0.0.1:%d" % port)
grpc.channel_ready_future(channel).result(timeout=60)
call = channel.unary_unary("/envoy.service.auth.v3.Authorization/Check")
for i in range(n):
    answer = call(requests[i % 40], timeout=10)
    # CheckResponse.status (field 1) with code 0 encodes as an empty message.
    if not answer.startswith(b"\x0a\x00"):
        sys.exit("unexpected answer: %r" % answer[:200])
PY
}
drive 200
callgrind_control -z "$pid" >/dev/null 2>&1
drive "$requests"
callgrind_control -d "$pid" >/dev/null 2>&1
kill "$pid"; wait "$pid" 2>/dev/null || true
dump=$(ls "$work"/cg.out.* | head -1)
[ -n "${CALLGRIND_OUT:-}" ] && cp "$dump" "$CALLGRIND_OUT"
decided=is_authorized; [ "$surface" = grpc ] && decided=check
callgrind_annotate --inclusive=yes "$dump" 2>/dev/null | awk -v n="$requests" -v mode="$mode $surface" \
  -v pattern="Engine>?::$decided( [[].*)?\$" -v name="Engine::$decided" '
  /PROGRAM TOTALS/ { gsub(",", "", $1); total = $1 }
  # The first (largest) inclusive line of the function itself.
  $0 ~ pattern && !decision { gsub(",", "", $1); decision = $1 }
  END {
    if (!total || !decision) { print "no counts in the callgrind output" > "/dev/stderr"; exit 1 }
    printf "%s: %.0fk instructions per request, %s %.0fk, ratio %.2f\n",
      mode, total / n / 1000, name, decision / n / 1000, total / decision
  }'
