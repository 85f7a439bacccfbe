#!/usr/bin/env bash
# tests/run.sh MODE BUILD — runs the unit and/or integration suites and prints one summary
# line ("tests: N passed, N failed"). MODE is unit, integration or all.
# Integration tests get their own native stack (.run/test-stack, ports 30000+), started here
# and stopped on exit, so they never touch a `make run` stack.
set -uo pipefail
mode=${1:-all}
build=${2:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
case $build in /*) build=$(realpath --relative-to="$root" "$build") ;; esac # paths below are "$root/$build"
export ML_BIN_DIR="$root/$build/bin" ML_BUILD_DIR="$root/$build" ML_ROOT="$root"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
logdir="$root/$build/test-logs"
mkdir -p "$logdir"
passed=0 failed=0
failures=() failure_logs=()

# Runs one cmocka binary; adds its counts (a crash without a summary counts as one failure).
run_cmocka() {
    local bin=$1 name log p f
    name=${bin#"$root/$build/tests/"}
    log="$logdir/${name//\//_}.log"
    timeout 600 "$bin" >"$log" 2>&1
    local rc=$?
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    p=${p:-0} f=${f:-0}
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)) failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failures+=("$name") failure_logs+=("$log")
        echo "FAIL $name (exit $rc) — log: $log"; tail -40 "$log" | sed 's/^/    /'
    else
        echo "ok   $name ($p tests)"
    fi
}

# Runs one shell test that prints "ok - ..." / "not ok - ..." lines.
run_script() {
    local script=$1 name log p f
    name=${script#"$root/tests/"}
    log="$logdir/${name//\//_}.log"
    timeout 900 bash "$script" >"$log" 2>&1
    local rc=$?
    p=$(grep -c '^ok - ' "$log") f=$(grep -c '^not ok - ' "$log")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    passed=$((passed + p)) failed=$((failed + f))
    if [ "$f" -ne 0 ]; then
        failures+=("$name") failure_logs+=("$log")
        echo "FAIL $name (exit $rc) — log: $log"; grep -E '^not ok|^#' "$log" | head -20 | sed 's/^/    /'; tail -30 "$log" | sed 's/^/    /'
    else
        echo "ok   $name ($p checks)"
    fi
}

run_unit() {
    local bin
    for bin in $(find "$root/$build/tests/unit" -type f -name 'test_*' 2>/dev/null | sort); do
        run_cmocka "$bin"
    done
}

stack_stop() {
    ML_RUN_DIR="$root/.run/test-stack" bash infrastructure/dev/stack.sh stop >"$logdir/stack-stop.log" 2>&1 || true
}

run_integration() {
    local bin script
    export ML_RUN_DIR="$root/.run/test-stack" ML_PORT_BASE=${ML_TEST_PORT_BASE:-30000}
    trap stack_stop EXIT
    if ! bash infrastructure/dev/stack.sh start >"$logdir/stack-start.log" 2>&1; then
        echo "FAIL could not start the test stack:"; tail -40 "$logdir/stack-start.log"
        failed=$((failed + 1)); failures+=("stack") failure_logs+=("$logdir/stack-start.log")
        return
    fi
    set -a; . "$ML_RUN_DIR/stack.env"; set +a
    if ! { "$ML_BIN_DIR/ml-migrate" "$MINILAMBDA_BUILD_DB_URL" migrations/build &&
           "$ML_BIN_DIR/ml-migrate" "$MINILAMBDA_LAMBDA_DB_URL" migrations/lambda; } >"$logdir/migrate.log" 2>&1; then
        echo "FAIL migrations:"; tail -20 "$logdir/migrate.log"
        failed=$((failed + 1)); failures+=("migrate") failure_logs+=("$logdir/migrate.log")
        return
    fi
    for bin in $(find "$root/$build/tests/integration" -type f -name 'test_*' 2>/dev/null | sort); do
        run_cmocka "$bin"
    done
    # ML_TEST_SCRIPTS=0: only the C integration tests (`make tsan` runs those)
    [ "${ML_TEST_SCRIPTS:-1}" = 0 ] && return
    for script in $(ls "$root"/tests/integration/*.sh 2>/dev/null | sort); do
        run_script "$script"
    done
}

start=$(date +%s)
case "$mode" in
    unit) run_unit ;;
    integration) run_integration ;;
    all) run_unit; run_integration ;;
    *) echo "usage: $0 unit|integration|all [build-dir]"; exit 2 ;;
esac
echo
# A recap of each failure at the very end: CI often shows only the tail of this output.
recap() {
    local i log
    echo "failed: ${failures[*]}"
    for i in "${!failure_logs[@]}"; do
        log=${failure_logs[$i]}
        echo "  ${failures[$i]}:"
        grep -E '^not ok|^\[  (ERROR|FAILED) +\]|^\[ +LINE +\]' "$log" | head -8 | cut -c1-400 | sed 's/^/    /'
        echo "    last lines:"; tail -4 "$log" | cut -c1-400 | sed 's/^/      /'
    done
}
[ ${#failures[@]} -gt 0 ] && recap
echo "took $(( $(date +%s) - start ))s"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
