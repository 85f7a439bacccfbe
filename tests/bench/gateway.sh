#!/usr/bin/env bash
# Gateway benchmark (make bench): the same invoke request against a stand-in upstream
# directly, through nginx (Debian's, keep-alive proxy), through proxy_floor (the gateway's
# libmicrohttpd + libcurl proxy loop with none of its own work: the libraries' ceiling) and
# through the gateway with JWT auth and Redis rate limiting on (access log to a file), and through
# a second gateway with the access log off (its cost, docs/logs.md §2). wrk -t2 -c64; the paths take
# turns, round after round, so a slow spell of this shared machine hits all of them; medians
# of 5 rounds. Appends to docs/benchmarks.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
out="$root/docs/benchmarks.md"
dur=${BENCH_DURATION:-5}s runs=${BENCH_RUNS:-5}
work=$(mktemp -d)
UP=31901 NGINX=31902 GW=31903 REDIS=31904 FLOOR=31905 GW_OFF=31906
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    redis-cli -p $REDIS shutdown nosave >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

"$root/$build/bench/httpd_bench" shared $UP 2 & pids+=($!)
"$root/$build/bench/proxy_floor" $FLOOR "http://127.0.0.1:$UP" 2 & pids+=($!) floor_pid=$!
redis-server --port $REDIS --bind 127.0.0.1 --save '' --appendonly no --daemonize yes --dir "$work" \
    --pidfile "$work/redis.pid" >/dev/null
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
internal=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')
# gateway PORT ACCESS_LOG: starts one (both share Redis and the upstream)
gateway() {
    MINILAMBDA_GATEWAY_PORT=$1 MINILAMBDA_BIND_ADDR=127.0.0.1 MINILAMBDA_JWT_SECRET=$secret \
    MINILAMBDA_REDIS_URL=redis://127.0.0.1:$REDIS/0 MINILAMBDA_EXECUTOR_URLS=http://127.0.0.1:$UP \
    MINILAMBDA_BUILD_MASTER_URLS=http://127.0.0.1:$UP MINILAMBDA_LOG_LEVEL=warn \
    MINILAMBDA_INTERNAL_TOKEN=$internal MINILAMBDA_ACCESS_LOG=$2 \
        exec "$root/$build/bin/gateway" >"$work/gateway-$1.log" 2>&1
}
gateway $GW "$work/access.log" & pids+=($!) gw_pid=$!
gateway $GW_OFF off & pids+=($!) gw_off_pid=$!
token=$(MINILAMBDA_JWT_SECRET=$secret "$root/$build/bin/gateway" token --sub bench)
for p in $UP $NGINX $FLOOR $GW $GW_OFF; do
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
# CPU clock ticks used so far by the processes given
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
hz=$(getconf CLK_TCK)
# measured PORT FILE PIDS...: one run at 64 connections, appending "req/s p50 p99 cpu" to FILE,
# cpu being the microseconds of CPU the processes PIDS (a comma-separated group per column)
# spent per request
measured() {
    local port=$1 file=$2 line rps g; shift 2
    local -a before=()
    for g in "$@"; do before+=("$(ticks ${g//,/ })"); done
    line=$(one "$port")
    rps=${line%% *}
    local i=0
    for g in "$@"; do
        line="$line $(awk -v d="$(( $(ticks ${g//,/ }) - before[i] ))" -v hz="$hz" -v r="$rps" -v s="${dur%s}" \
            'BEGIN { printf "%.1f", d / hz / (r * s) * 1e6 }')"
        i=$((i + 1))
    done
    echo "$line" >>"$file"
}
# the median round (by req/s) of a path's results file
median() { sort -n "$1" | sed -n "$(( (runs + 1) / 2 ))p"; }
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $token" -d '{}' "http://127.0.0.1:$GW/functions/bench/invoke")
[ "$code" = 200 ] || { echo "gateway bench: invoke through the gateway answered $code"; cat "$work/gateway-$GW.log"; exit 1; }
to_ms() { awk -v v="$1" 'BEGIN { if (v ~ /us$/) print v/1000; else if (v ~ /ms$/) print v+0; else print v*1000 }'; }
nginx_pids=$(cat "$work/nginx.pid"; pgrep -P "$(cat "$work/nginx.pid")")
nginx_pids=$(echo $nginx_pids | tr ' ' ',')
redis_pid=$(cat "$work/redis.pid")
for i in $(seq 1 "$runs"); do
    one $UP >>"$work/direct"
    measured $NGINX "$work/nginx" "$nginx_pids"
    measured $FLOOR "$work/floor" "$floor_pid"
    # the access log's pair back to back, in alternating order (a slow spell hits both)
    if [ $((i % 2)) = 1 ]; then
        measured $GW "$work/gateway" "$gw_pid" "$redis_pid"
        measured $GW_OFF "$work/gateway-off" "$gw_off_pid" "$redis_pid"
    else
        measured $GW_OFF "$work/gateway-off" "$gw_off_pid" "$redis_pid"
        measured $GW "$work/gateway" "$gw_pid" "$redis_pid"
    fi
    # p99 added in this round, under a light load (8 connections) where neither side queues
    one $UP 8 1 >>"$work/direct-light"
    one $GW 8 1 >>"$work/gateway-light"
    paste -d' ' <(tail -1 "$work/gateway-light") <(tail -1 "$work/direct-light") | while read -r _ _ g _ _ d; do
        awk -v g="$(to_ms "$g")" -v d="$(to_ms "$d")" 'BEGIN { printf "%.2f\n", g - d }'
    done >>"$work/added"
done
read -r d_rps d50 d99 < <(median "$work/direct")
read -r n_rps n50 n99 n_cpu < <(median "$work/nginx")
read -r f_rps f50 f99 f_cpu < <(median "$work/floor")
read -r g_rps g50 g99 g_cpu r_cpu < <(median "$work/gateway")
read -r o_rps o50 o99 o_cpu _ < <(median "$work/gateway-off")
# the access log's cost: 1 - on/off per round, median (negative: within the noise)
cost_rounds=$(paste -d' ' "$work/gateway" "$work/gateway-off" | awk '{ printf "%s%.1f", (NR > 1 ? ", " : ""), (1 - $1 / $6) * 100 }')
cost=$(tr ',' '\n' <<<"$cost_rounds" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" | tr -d ' ')
read -r dl_rps dl50 dl99 < <(median "$work/direct-light")
read -r gl_rps gl50 gl99 < <(median "$work/gateway-light")
added=$(sort -n "$work/added" | sed -n "$(( (runs + 1) / 2 ))p")
rounds=$(paste -d' ' "$work/gateway" "$work/nginx" | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / $6 }')
ratio=$(tr ',' '\n' <<<"$rounds" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" | tr -d ' ')
floor_rounds=$(paste -d' ' "$work/floor" "$work/nginx" | awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 / $5 }')
floor_ratio=$(tr ',' '\n' <<<"$floor_rounds" | sort -n | sed -n "$(( (runs + 1) / 2 ))p" | tr -d ' ')
{
    echo
    echo "## Gateway vs nginx ($(date -u +%Y-%m-%d))"
    echo
    echo "Command: \`make bench\` → \`tests/bench/gateway.sh\`: \`wrk -t2 -c64 -d$dur --latency\`, POST"
    echo "\`/functions/bench/invoke\` with a JWT, medians of $runs rounds (each round: upstream, nginx, proxy_floor, gateway in turn); the upstream is \`httpd_bench\` standing in for"
    echo "the lambda-executor; the gateway checks the JWT and takes a GCRA decision in Redis on every request."
    echo
    echo "| path | req/s | p50 | p99 | proxy CPU per request |"
    echo "|---|---|---|---|---|"
    echo "| upstream directly | $d_rps | $d50 | $d99 | |"
    echo "| nginx 1.22 (2 workers, keep-alive upstream) | $n_rps | $n50 | $n99 | $n_cpu µs |"
    echo "| \`proxy_floor\`: the gateway's libmicrohttpd + libcurl loop, no auth, no rate limit | $f_rps | $f50 | $f99 | $f_cpu µs |"
    echo "| minilambda gateway (auth + rate limit + access log to a file) | $g_rps | $g50 | $g99 | $g_cpu µs + Redis $r_cpu µs |"
    echo "| the same gateway, access log off | $o_rps | $o50 | $o99 | $o_cpu µs |"
    echo "| upstream directly, light load (\`-t1 -c8\`) | $dl_rps | $dl50 | $dl99 | |"
    echo "| gateway, light load (\`-t1 -c8\`) | $gl_rps | $gl50 | $gl99 | |"
    echo
    echo "Gateway ÷ nginx throughput (64 connections), median of the rounds: **${ratio}×** (target ≥ 0.8×; round by"
    echo "round: $rounds)."
    echo "The libraries alone (\`proxy_floor\`) reach **${floor_ratio}×** nginx (round by round: $floor_rounds): that is"
    echo "the ceiling libmicrohttpd + libcurl leave for the gateway before it does any work of its own."
    echo "Access log cost (\`MINILAMBDA_ACCESS_LOG\` to a file vs \`off\`, the pair measured back to back in each round):"
    echo "**${cost} %** of throughput, median of the rounds (target ≤ 3 %; round by round: $cost_rounds);"
    echo "gateway CPU per request $g_cpu µs with it, $o_cpu µs without (less sensitive to a busy machine than req/s)."
    echo "p99 added over the upstream under the light load, median of the rounds' differences: **${added} ms** (target ≤ 1 ms)."
    echo "Client, proxies and upstream share the same 2 cores, so absolute numbers are lower bounds; the"
    echo "CPU column is user + system time of the proxy's processes (\`/proc/PID/stat\`) over the median round."
} >>"$out"
echo "gateway bench: $g_rps vs nginx $n_rps req/s (${ratio}x; libraries alone ${floor_ratio}x), p99 +${added} ms; access log cost ${cost} % ($o_rps req/s with it off)"
