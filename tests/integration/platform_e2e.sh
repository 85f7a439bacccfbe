#!/usr/bin/env bash
# End-to-end: the four daemons against the real test stack (started by tests/run.sh).
# Prints "ok - ..." / "not ok - ..." per check.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
: "${ML_RUN_DIR:?run through tests/run.sh}" "${ML_BIN_DIR:?}"
export ML_PLATFORM_DIR="$root/.run/test-platform"
export MINILAMBDA_GATEWAY_PORT=31080 MINILAMBDA_EXECUTOR_PORT=31081 MINILAMBDA_BUILD_MASTER_PORT=31082 MINILAMBDA_BUILD_WORKER_PORT=31092
export ML_HEALTH_TIMEOUT=90
PY=/usr/bin/python3
tmp=$(mktemp -d)
ports=(31080 31081 31082 31092)
names=(gateway lambda-executor build-master build-worker)
fails=0
ok() { echo "ok - $*"; }
nok() { echo "not ok - $*"; fails=$((fails + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else nok "$what"; fi; }
cleanup() { bash infrastructure/dev/platform.sh daemons-stop >/dev/null 2>&1 || true; [ -n "${extra_pid:-}" ] && kill -KILL "$extra_pid" 2>/dev/null; }
trap 'cleanup; rm -rf "$tmp"' EXIT
rm -rf "$ML_PLATFORM_DIR"

check "migrations apply" bash infrastructure/dev/platform.sh migrate
check "daemons start and become healthy" bash infrastructure/dev/platform.sh daemons-start

for i in 0 1 2 3; do
    # a status other than ok may be a health check still catching up (slow sanitizer builds)
    for _ in $(seq 1 25); do
        body=$(curl -s --max-time 5 "http://127.0.0.1:${ports[$i]}/health")
        grep -q '"status":"ok"' <<<"$body" && break
        sleep 0.2
    done
    check "${names[$i]} /health is ok with dependency checks" $PY -c '
import json,sys
h=json.loads(sys.argv[1]); assert h["status"]=="ok", h
assert h["checks"] and all(c["status"]=="ok" for c in h["checks"].values()), h' "$body"
    metrics=$(curl -sf "http://127.0.0.1:${ports[$i]}/metrics")
    check "${names[$i]} /metrics passes promtool" bash -c '[ -n "$1" ] && promtool check metrics <<<"$1"' _ "$metrics"
    check "${names[$i]} /metrics has process and http metrics" bash -c "curl -sf http://127.0.0.1:${ports[$i]}/metrics | grep -q '^process_resident_memory_bytes ' && curl -sf http://127.0.0.1:${ports[$i]}/metrics | grep -q 'minilambda_http_requests_total{service=\"${names[$i]}\",route=\"/health\"'"
done

# Internal APIs (docs/security.md): the daemons platform.sh started share the stack's token.
itok=$(cat "${MINILAMBDA_INTERNAL_TOKEN_FILE:-/nonexistent}" 2>/dev/null)
check "the stack's internal token file is 0600" [ "$(stat -c %a "${MINILAMBDA_INTERNAL_TOKEN_FILE:-/nonexistent}" 2>/dev/null)" = 600 ]
for p in 31081 31082; do
    check "direct call to :$p without the internal token: 401" [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$p/functions/x/builds)" = 401 ]
    check "direct call to :$p with the internal token: not 401" [ "$(curl -s -o /dev/null -w '%{http_code}' -H "X-Minilambda-Internal: $itok" http://127.0.0.1:$p/functions/x/builds)" != 401 ]
done

hdrs=$(curl -s -D - -o $tmp/404.json -H 'X-Request-Id: e2e-req-1' http://127.0.0.1:31080/no/such/route)
check "unknown route: 404 with the caller's X-Request-Id" grep -q 'X-Request-Id: e2e-req-1' <<<"$hdrs"
check "unknown route: JSON error body in the contract's shape" $PY -c '
import json; e=json.load(open("'"$tmp"'/404.json"))["error"]
assert e["code"]=="not_found" and e["request_id"]=="e2e-req-1" and e["message"]'

check "every log line is JSON with ts, level, service, msg" $PY -c '
import json,glob
n=0
for f in glob.glob("'"$ML_PLATFORM_DIR"'/logs/*.log"):
    for line in open(f):
        o=json.loads(line); n+=1
        assert all(k in o for k in ("ts","level","service","msg")), o
assert n>=4, n'

missing=""
for n in "${names[@]}"; do
    for v in $("$ML_BIN_DIR/$n" --print-config | grep -o '`MINILAMBDA_[A-Z0-9_]*`' | tr -d '`'); do
        grep -q "\`$v\`" README.md || missing="$missing $v"
    done
done
check "README documents every variable the daemons read${missing:+ (missing:$missing)}" [ -z "$missing" ]

tok=$(MINILAMBDA_JWT_SECRET=e2e-secret "$ML_BIN_DIR/gateway" token --sub alice --scope functions:read --ttl 60)
check "dev token is an HS256 JWT signed with the secret" $PY -c '
import base64,hashlib,hmac,json,sys,time
h,p,s=sys.argv[1].split(".")
pad=lambda x:x+"="*(-len(x)%4)
mac=base64.urlsafe_b64encode(hmac.new(b"e2e-secret",(h+"."+p).encode(),hashlib.sha256).digest()).rstrip(b"=").decode()
assert mac==s
hd=json.loads(base64.urlsafe_b64decode(pad(h))); cl=json.loads(base64.urlsafe_b64decode(pad(p)))
assert hd["alg"]=="HS256" and cl["sub"]=="alice" and cl["scope"]=="functions:read" and cl["exp"]>time.time()' "$tok"

out=$(MINILAMBDA_BUILD_MASTER_PORT=notaport MINILAMBDA_S3_ACCESS_KEY= "$ML_BIN_DIR/build-master" 2>&1); rc=$?
check "bad configuration: exit non-zero naming every bad variable" bash -c '[ '$rc' -ne 0 ] && grep -q "MINILAMBDA_BUILD_MASTER_PORT=notaport must be an integer" <<<"$1" && grep -q "MINILAMBDA_S3_ACCESS_KEY is required" <<<"$1"' _ "$out"

# A build-master whose database is unreachable keeps serving and reports 503 on /health.
MINILAMBDA_BUILD_MASTER_PORT=31090 MINILAMBDA_BUILD_DB_URL="postgresql://postgres@127.0.0.1:1/build_service_db" \
    "$ML_BIN_DIR/build-master" >"$ML_PLATFORM_DIR/logs/extra.log" 2>&1 &
extra_pid=$!
code=000
for _ in $(seq 1 50); do code=$(curl -s -o $tmp/503.json -w '%{http_code}' http://127.0.0.1:31090/health); [ "$code" = 503 ] && break; sleep 0.2; done
check "dependency down: /health answers 503" [ "$code" = 503 ]
check "dependency down: the failing check is named with its error" $PY -c '
import json; h=json.load(open("'"$tmp"'/503.json"))
assert h["status"]=="unavailable" and h["checks"]["postgres"]["status"]=="down" and h["checks"]["postgres"]["error"]
assert h["checks"]["rabbitmq"]["status"]=="ok", h'
kill -TERM "$extra_pid"; wait "$extra_pid"; rc=$?
check "SIGTERM while waiting for a dependency: clean exit" [ "$rc" -eq 0 ]
extra_pid=

# Graceful shutdown: every daemon exits on SIGTERM and logs that it stopped.
pids=$(cat "$ML_PLATFORM_DIR"/pids/*.pid)
stopout=$(bash infrastructure/dev/platform.sh daemons-stop)
# A zombie (exited, not yet reaped by its parent) has stopped: state Z in /proc/PID/stat.
alive=0; for p in $pids; do
    st=$(sed -n 's/^.*) \(.\).*/\1/p' "/proc/$p/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ] && alive=1
done
check "SIGTERM stops every daemon" [ "$alive" -eq 0 ]
check "no daemon had to be killed" bash -c '! grep -q "killing" <<<"$1"' _ "$stopout"
for n in "${names[@]}"; do
    check "$n logged its shutdown" grep -q '"msg":"'"$n"' stopped"' "$ML_PLATFORM_DIR/logs/$n.log"
done
exit $((fails > 0))
