#!/usr/bin/env bash
# tests/chaos/run.sh [NAME ...] — the fault-injection suite (issue 15) on a PRIVATE stack:
# its own run dir (.run/chaos-stack) and ports (CHAOS_PORT_BASE, default 26000: servers at
# +369..+900, daemons at +80..+94), so it runs beside `make test`, `make bench` and `make run`
# without their lock. Started here, purged on exit. NAME: a scenario of tests/chaos/chaos.py
# (default: all). ML_BUILD_DIR (default build) holds the binaries; results go to
# $ML_BUILD_DIR/chaos/results.json, logs to .run/chaos/ and $ML_BUILD_DIR/chaos/.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
build=${ML_BUILD_DIR:-build}
case $build in /*) ;; *) build=$root/$build ;; esac
export ML_ROOT=$root ML_BUILD_DIR=$build ML_BIN_DIR=$build/bin
export ML_RUN_DIR=$root/.run/chaos-stack ML_PORT_BASE=${CHAOS_PORT_BASE:-26000}
export CHAOS_PORT_BASE=$ML_PORT_BASE
logs=$build/chaos
mkdir -p "$logs"

stack_stop() {
    bash infrastructure/dev/stack.sh stop --purge >"$logs/stack-stop.log" 2>&1 || true
}
trap stack_stop EXIT
stack_stop # a run killed midway leaves its stack behind
if ! bash infrastructure/dev/stack.sh start >"$logs/stack-start.log" 2>&1; then
    echo "chaos: could not start the private stack:"; tail -30 "$logs/stack-start.log"
    exit 1
fi
set -a; . "$ML_RUN_DIR/stack.env"; set +a
if ! { "$ML_BIN_DIR/ml-migrate" "$MINILAMBDA_BUILD_DB_URL" migrations/build &&
       "$ML_BIN_DIR/ml-migrate" "$MINILAMBDA_LAMBDA_DB_URL" migrations/lambda; } >"$logs/migrate.log" 2>&1; then
    echo "chaos: migrations failed:"; tail -20 "$logs/migrate.log"
    exit 1
fi
PYTHONDONTWRITEBYTECODE=1 /usr/bin/python3 "$root/tests/chaos/chaos.py" "$@"
