#!/usr/bin/env bash
# Gateway benchmark (make bench): the same invoke request against a stand-in upstream
# directly, through nginx (Debian's, keep-alive proxy), and through the gateway with JWT auth
# and Redis rate limiting on. wrk -t2 -c64, median of 3 runs. Appends to docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
out="$root/docs/benchmarks.md"
dur=${BENCH_DURATION:-5}s runs=${BENCH_RUNS:-3}
work=$(mktemp -d)
UP=31901 NGINX=31902 GW=31903 REDIS=31904
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    redis-cli -p $REDIS shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"$root/$build/bench/httpd_bench" shared $UP 2 & pids+=($!)
redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$work" >/dev/null
cat >"$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    upstream up { server 127.0.0.1:$UP; keepalive 128; }
    server {
        listen 127.0.0.1:$NGINX;
        location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; }
    }
}
CONF
/usr/sbin/nginx -c "$work/nginx.conf" -p "$work"
secret=$(head -c 24 /dev/urandom | base64)
MINILAMBDA_GATEWAY_PORT=$GW MINILAMBDA_BIND_ADDR=127.0.0.1 MINILAMBDA_JWT_SECRET=$secret \
MINILAMBDA_REDIS_URL=redis://127.0.0.1:$REDIS/0 MINILAMBDA_EXECUTOR_URLS=http://127.0.0.1:$UP \
MINILAMBDA_BUILD_MASTER_URLS=http://127.0.0.1:$UP MINILAMBDA_LOG_LEVEL=warn \
    "$root/$build/bin/gateway" >"$work/gateway.log" 2>&1 & pids+=($!)
token=$(MINILAMBDA_JWT_SECRET=$secret "$root/$build/bin/gateway" token --sub bench)
for p in $UP $NGINX $GW; do
    for _ in $(seq 1 50); do curl -s -o /dev/null "http://127.0.0.1:$p/health" && break; sleep 0.1; done
done
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '{"n":1}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA
# median run of: req/s p50 p99
measure() {
    local i
    for i in $(seq 1 "$runs"); do
        wrk -t2 -c64 -d"$dur" --latency -s "$work/post.lua" "http://127.0.0.1:$1/functions/bench/invoke" | awk '
            /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}'
    done | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" -d '{}' "http://127.0.0.1:$GW/functions/bench/invoke")
[ "$code" = 200 ] || { echo "gateway bench: invoke through the gateway answered $code"; cat "$work/gateway.log"; exit 1; }
read -r d_rps d50 d99 < <(measure $UP)
read -r n_rps n50 n99 < <(measure $NGINX)
read -r g_rps g50 g99 < <(measure $GW)
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }
ratio=$(awk -v g="$g_rps" -v n="$n_rps" 'BEGIN { printf "%.2f", g / n }')
added=$(awk -v g="$(to_ms "$g99")" -v d="$(to_ms "$d99")" 'BEGIN { printf "%.2f", g - d }')
{
    echo
    echo "## Gateway vs nginx ($(date -u +%Y-%m-%d))"
    echo
    echo "Command: \`make bench\` → \`tests/bench/gateway.sh\`: \`wrk -t2 -c64 -d$dur --latency\`, POST"
    echo "\`/functions/bench/invoke\` with a JWT, median of $runs runs; the upstream is \`httpd_bench\` standing in for"
    echo "the lambda-executor; the gateway checks the JWT and takes a GCRA decision in Redis on every request."
    echo
    echo "| path | req/s | p50 | p99 |"
    echo "|---|---|---|---|"
    echo "| upstream directly | $d_rps | $d50 | $d99 |"
    echo "| nginx 1.22 (2 workers, keep-alive upstream) | $n_rps | $n50 | $n99 |"
    echo "| minilambda gateway (auth + rate limit) | $g_rps | $g50 | $g99 |"
    echo
    echo "Gateway ÷ nginx throughput: **${ratio}×** (target ≥ 0.8×); p99 added over the upstream: **${added} ms** (target ≤ 1 ms)."
    echo "Client, proxies and upstream share the same 2 cores, so absolute numbers are lower bounds."
} >>"$out"
echo "gateway bench: $g_rps vs nginx $n_rps req/s (${ratio}x), p99 +${added} ms"
