#!/usr/bin/env bash
# make bench — measures, writes docs/benchmarks.md. Each case: wrk, 2 threads, 64
# connections, 5 s, repeated 3 times; we quote the median run's req/s and its p50/p99.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-build}
bin="$root/$build/bench/httpd_bench"
out="$root/docs/benchmarks.md"
runs=${BENCH_RUNS:-3} dur=${BENCH_DURATION:-5}s conns=${BENCH_CONNS:-64}
command -v wrk >/dev/null || { echo "bench: wrk missing (make deps)"; exit 1; }

# bench_case NAME URL: prints "req/s p50 p99" of the median run.
bench_case() {
    local url=$1 i
    for i in $(seq 1 "$runs"); do
        wrk -t2 -c"$conns" -d"$dur" --latency "$url" | awk '
            /Requests\/sec/ {rps=$2}
            /^ +50%/ {p50=$2} /^ +99%/ {p99=$2}
            END {print rps, p50, p99}'
    done | sort -n | sed -n "$(( (runs + 1) / 2 ))p"
}

start_server() { "$bin" "$@" & srv=$!; sleep 0.3; }
stop_server() { kill -TERM "$srv"; wait "$srv" || true; }

rows=()
run() { # label, server args..., path
    local label=$1 path=${*: -1}; shift
    start_server "${@:1:$#-1}"
    read -r rps p50 p99 < <(bench_case "http://127.0.0.1:${2}${path}")
    stop_server
    rows+=("| $label | $rps | $p50 | $p99 |")
    echo "$label: $rps req/s p50 $p50 p99 $p99"
}
run "libmicrohttpd thread-per-connection (baseline)" tpc 31501 /
run "shared httpd, epoll pool of 2, inline handler" shared 31502 2 /hello
run "shared httpd, epoll pool of 2, worker-pool handler (blocking route)" shared 31503 2 /hello-blocking
run "shared httpd, epoll pool of 1, inline handler" shared 31504 1 /hello

{
    echo "# Benchmarks"
    echo
    echo "Measured on the project's machine kind (Debian 12, 2 cores), client and server on the"
    echo "same host, so absolute numbers are lower bounds. Re-run with \`make bench\`."
    echo
    echo "## HTTP server threading mode ($(date -u +%Y-%m-%d))"
    echo
    echo "Command: \`make bench\` → \`tests/bench/run.sh\`: \`wrk -t2 -c$conns -d$dur --latency\` against"
    echo "\`build/bench/httpd_bench\`, a tiny JSON response; median of $runs runs (req/s, and that run's latency percentiles)."
    echo
    echo "| server | req/s | p50 | p99 |"
    echo "|---|---|---|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "The shared layer keeps the epoll pool (the measured winner over thread-per-connection,"
    echo "which also needs a thread per idle keep-alive client); handlers that block run on the"
    echo "worker pool and cost the suspend/resume hop shown in the third row."
} >"$out"
bash "$root/tests/bench/gateway.sh" "$build"
/usr/bin/python3 "$root/tests/bench/builds.py" "$root/$build/bin"
/usr/bin/python3 "$root/tests/bench/executor.py" "$root/$build/bin"
/usr/bin/python3 "$root/tests/bench/function_logs.py" "$root/$build/bin"
echo "bench: wrote $out"
