#!/usr/bin/env bash
# Gateway benchmark (make bench): the same invoke request against a stand-in upstream
# directly, through nginx (Debian's, keep-alive proxy), and through the gateway with JWT auth
# and Redis rate limiting on. wrk -t2 -c64; the three paths take turns, round after round, so a
# slow spell of this shared machine hits all of them; medians of 5 rounds. Appends to docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
out="$root/docs/benchmarks.md"
dur=${BENCH_DURATION:-5}s runs=${BENCH_RUNS:-5}
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
# one run: req/s p50 p99 (saturation: 64 connections; light: 8 connections, 1 thread)
one() {
    local conns=${2:-64} threads=${3:-2}
    wrk -t"$threads" -c"$conns" -d"$dur" --latency -s "$work/post.lua" "http://127.0.0.1:$1/functions/bench/invoke" | awk '
        /Requests\/sec/ {rps=$2} /^ +50%/ {p50=$2} /^ +99%/ {p99=$2} END {print rps, p50, p99}'
}
# the median round (by req/s) of a path's results file
median() { sort -n "$1" | sed -n "$(( (runs + 1) / 2 ))p"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" -d '{}' "http://127.0.0.1:$GW/functions/bench/invoke")
[ "$code" = 200 ] || { echo "gateway bench: invoke through the gateway answered $code"; cat "$work/gateway.log"; exit 1; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }
for i in $(seq 1 "$runs"); do
    one $UP >>"$work/direct"
    one $NGINX >>"$work/nginx"
    one $GW >>"$work/gateway"
    # p99 added in this round, under a light load (8 connections) where neither side queues
    one $UP 8 1 >>"$work/direct-light"
    one $GW 8 1 >>"$work/gateway-light"
    paste -d' ' <(tail -1 "$work/gateway-light") <(tail -1 "$work/direct-light") | while read -r _ _ g _ _ d; do
        awk -v g="$(to_ms "$g")" -v d="$(to_ms "$d")" 'BEGIN { printf "%.2f\n", g - d }'
    done >>"$work/added"
done
read -r d_rps d50 d99 < <(median "$work/direct")
read -r n_rps n50 n99 < <(median "$work/nginx")
read -r g_rps g50 g99 < <(median "$work/gateway")
read -r dl_rps dl50 dl99 < <(median "$work/direct-light")
read -r gl_rps gl50 gl99 < <(median "$work/gateway-light")
added=$(sort -n "$work/added" | sed -n "$(( (runs + 1) / 2 ))p")
rounds=$(paste -d' ' "$work/gateway" "$work/nginx" | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / $4 }')
ratio=$(tr ',' '\n' <<<"$rounds" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" | tr -d ' ')
{
    echo
    echo "## Gateway vs nginx ($(date -u +%Y-%m-%d))"
    echo
    echo "Command: \`make bench\` → \`tests/bench/gateway.sh\`: \`wrk -t2 -c64 -d$dur --latency\`, POST"
    echo "\`/functions/bench/invoke\` with a JWT, medians of $runs rounds (each round: upstream, nginx, gateway in turn); the upstream is \`httpd_bench\` standing in for"
    echo "the lambda-executor; the gateway checks the JWT and takes a GCRA decision in Redis on every request."
    echo
    echo "| path | req/s | p50 | p99 |"
    echo "|---|---|---|---|"
    echo "| upstream directly | $d_rps | $d50 | $d99 |"
    echo "| nginx 1.22 (2 workers, keep-alive upstream) | $n_rps | $n50 | $n99 |"
    echo "| minilambda gateway (auth + rate limit) | $g_rps | $g50 | $g99 |"
    echo "| upstream directly, light load (\`-t1 -c8\`) | $dl_rps | $dl50 | $dl99 |"
    echo "| gateway, light load (\`-t1 -c8\`) | $gl_rps | $gl50 | $gl99 |"
    echo
    echo "Gateway ÷ nginx throughput (64 connections), median of the rounds: **${ratio}×** (target ≥ 0.8×; round by"
    echo "round: $rounds)."
    echo "p99 added over the upstream under the light load, median of the rounds' differences: **${added} ms** (target ≤ 1 ms)."
    echo "Client, proxies and upstream share the same 2 cores, so absolute numbers are lower bounds."
} >>"$out"
echo "gateway bench: $g_rps vs nginx $n_rps req/s (${ratio}x), p99 +${added} ms"
