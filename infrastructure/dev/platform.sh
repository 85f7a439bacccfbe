#!/usr/bin/env bash
# The whole platform on this machine: the native stack (stack.sh), migrations, four daemons.
#
#   platform.sh start    stack + migrations + daemons; waits for every /health; prints the
#                        gateway URL and a dev JWT
#   platform.sh stop     daemons (SIGTERM, then wait) and the stack
#   platform.sh status   each daemon's /health
#   platform.sh token    prints a dev JWT (all scopes, 24 h)
#   platform.sh daemons-start | daemons-stop   only the daemons (tests use these)
#
# ML_RUN_DIR        the stack's state (default .run/stack); its stack.env is sourced
# ML_PLATFORM_DIR   daemon pids and logs (default .run/platform)
# ML_BIN_DIR        where the binaries are (default build/bin)
# MINILAMBDA_*      override any daemon setting (ports: see README)
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
export ML_RUN_DIR=${ML_RUN_DIR:-$REPO_DIR/.run/stack}
PLATFORM_DIR=${ML_PLATFORM_DIR:-$REPO_DIR/.run/platform}
BIN_DIR=${ML_BIN_DIR:-$REPO_DIR/build/bin}
DAEMONS=(build-master build-worker lambda-executor gateway)

say() { printf 'platform: %s\n' "$*"; }
die() { printf 'platform: error: %s\n' "$*" >&2; exit 1; }

port_of() {
    case $1 in
        gateway) echo "${MINILAMBDA_GATEWAY_PORT:-8080}" ;;
        lambda-executor) echo "${MINILAMBDA_EXECUTOR_PORT:-8081}" ;;
        build-master) echo "${MINILAMBDA_BUILD_MASTER_PORT:-8082}" ;;
        build-worker) echo "${MINILAMBDA_BUILD_WORKER_PORT:-9092}" ;;
    esac
}

load_env() {
    [ -f "$ML_RUN_DIR/stack.env" ] || die "no stack.env in $ML_RUN_DIR: run 'stack.sh start' first"
    local own_token=${MINILAMBDA_INTERNAL_TOKEN:-} own_file=${MINILAMBDA_INTERNAL_TOKEN_FILE:-}
    set -a
    # shellcheck disable=SC1091
    . "$ML_RUN_DIR/stack.env"
    set +a
    # The internal credential (docs/security.md): the stack's 0600 token file, unless the
    # operator gave a token of their own (a daemon refuses both at once).
    if [ -n "$own_token" ]; then
        unset MINILAMBDA_INTERNAL_TOKEN_FILE
    elif [ -n "$own_file" ]; then
        export MINILAMBDA_INTERNAL_TOKEN_FILE=$own_file
    fi
    mkdir -p "$PLATFORM_DIR/logs" "$PLATFORM_DIR/pids"
    # A per-machine dev secret, made once: tokens stay valid across restarts.
    if [ -z "${MINILAMBDA_JWT_SECRET:-}" ]; then
        [ -s "$PLATFORM_DIR/jwt_secret" ] || head -c 32 /dev/urandom | base64 | tr -d '\n=' >"$PLATFORM_DIR/jwt_secret"
        MINILAMBDA_JWT_SECRET=$(cat "$PLATFORM_DIR/jwt_secret")
    fi
    if [ -z "${MINILAMBDA_INTERNAL_WEBHOOK_SECRET:-}" ]; then
        [ -s "$PLATFORM_DIR/internal_secret" ] || printf 'whsec_%s' "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" >"$PLATFORM_DIR/internal_secret"
        MINILAMBDA_INTERNAL_WEBHOOK_SECRET=$(cat "$PLATFORM_DIR/internal_secret")
    fi
    # SigV4 keys for AWS clients (aws lambda invoke --endpoint-url ...)
    if [ -z "${MINILAMBDA_AWS_SECRET_KEY:-}" ]; then
        [ -s "$PLATFORM_DIR/aws_secret" ] || head -c 30 /dev/urandom | base64 | tr -d '\n/+=' >"$PLATFORM_DIR/aws_secret"
        MINILAMBDA_AWS_SECRET_KEY=$(cat "$PLATFORM_DIR/aws_secret")
    fi
    MINILAMBDA_AWS_ACCESS_KEY=${MINILAMBDA_AWS_ACCESS_KEY:-AKIAMINILAMBDADEV}
    export MINILAMBDA_JWT_SECRET MINILAMBDA_INTERNAL_WEBHOOK_SECRET MINILAMBDA_AWS_ACCESS_KEY MINILAMBDA_AWS_SECRET_KEY
    export MINILAMBDA_BUILD_MASTER_URLS=${MINILAMBDA_BUILD_MASTER_URLS:-http://127.0.0.1:$(port_of build-master)}
    export MINILAMBDA_EXECUTOR_URLS=${MINILAMBDA_EXECUTOR_URLS:-http://127.0.0.1:$(port_of lambda-executor)}
    export MINILAMBDA_EXECUTOR_WEBHOOK_URL=${MINILAMBDA_EXECUTOR_WEBHOOK_URL:-http://127.0.0.1:$(port_of lambda-executor)}
    export MINILAMBDA_BIND_ADDR=${MINILAMBDA_BIND_ADDR:-127.0.0.1}
    # per-platform state, so a test platform and `make run` never share files
    export MINILAMBDA_AUDIT_SPILL_PATH=${MINILAMBDA_AUDIT_SPILL_PATH:-$PLATFORM_DIR/audit.spill}
    export MINILAMBDA_BUILD_SCRATCH_DIR=${MINILAMBDA_BUILD_SCRATCH_DIR:-$PLATFORM_DIR/scratch}
    export MINILAMBDA_RUNTIMES_DIR=${MINILAMBDA_RUNTIMES_DIR:-$REPO_DIR/services/lambda-executor/runtimes}
    # the local stack delivers webhooks to receivers on this machine
    export MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK=${MINILAMBDA_WEBHOOK_ALLOW_LOOPBACK:-true}
}

migrate() {
    "$BIN_DIR/ml-migrate" "$MINILAMBDA_BUILD_DB_URL" "$REPO_DIR/migrations/build"
    "$BIN_DIR/ml-migrate" "$MINILAMBDA_LAMBDA_DB_URL" "$REPO_DIR/migrations/lambda"
}

# A pid runs: it exists and is no zombie. A daemon killed (crash, kill -9) while the shell
# that started it has not reaped it still answers kill -0, so kill -0 alone would leave the
# daemon down on the next daemons-start ("already running"). State is the field after the
# last ')' of /proc/PID/stat (the command name in parentheses may hold spaces).
pid_running() {
    local stat
    [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] && kill -0 "$1" 2>/dev/null
}

pid_alive() { [ -f "$1" ] && pid_running "$(cat "$1")"; }

health_code() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$(port_of "$1")/health" || true
}

daemons_start() {
    local d pidf deadline
    # one after the other, in dependency order: the gateway's first upstream health checks
    # then find its upstreams up
    for d in "${DAEMONS[@]}"; do
        pidf="$PLATFORM_DIR/pids/$d.pid"
        if pid_alive "$pidf"; then say "$d already running (pid $(cat "$pidf"))"; continue; fi
        [ -x "$BIN_DIR/$d" ] || die "$BIN_DIR/$d is missing: run 'make build'"
        nohup "$BIN_DIR/$d" >>"$PLATFORM_DIR/logs/$d.log" 2>&1 </dev/null &
        echo $! >"$pidf"
        deadline=$((SECONDS + ${ML_HEALTH_TIMEOUT:-60}))
        until [ "$(health_code "$d")" = 200 ]; do
            pid_alive "$pidf" || { tail -20 "$PLATFORM_DIR/logs/$d.log" >&2; die "$d exited"; }
            [ $SECONDS -lt $deadline ] || { tail -20 "$PLATFORM_DIR/logs/$d.log" >&2; die "$d not healthy in time"; }
            sleep 0.2
        done
        say "$d healthy on port $(port_of "$d")"
    done
}

daemons_stop() {
    local d pidf pid i
    for d in gateway lambda-executor build-worker build-master; do
        pidf="$PLATFORM_DIR/pids/$d.pid"
        [ -f "$pidf" ] || continue
        pid=$(cat "$pidf")
        if pid_running "$pid"; then
            kill -TERM "$pid"
            for i in $(seq 1 ${ML_STOP_TIMEOUT:-40}0); do pid_running "$pid" || break; sleep 0.1; done
            if pid_running "$pid"; then say "$d did not stop in time, killing"; kill -KILL "$pid" || true; fi
            say "$d stopped"
        fi
        rm -f "$pidf"
    done
}

# A dev JWT: namespace NS (default: default) with every functions scope, or with ADMIN=1 the
# admin scope (namespaces, quotas, keys; docs/tenants.md).
token() {
    local scope="functions:read functions:write functions:invoke functions:secrets" sub=dev
    if [ "${ADMIN:-0}" = 1 ]; then scope=admin; sub=admin; fi
    "$BIN_DIR/gateway" token --sub "$sub" --scope "$scope" --ns "${NS:-default}" --ttl 86400
}

case ${1:-} in
    start)
        bash "$SCRIPT_DIR/stack.sh" start
        load_env
        migrate
        daemons_start
        echo
        say "gateway:  http://127.0.0.1:$(port_of gateway)"
        say "dev JWT:  $(NS=default ADMIN=0 token)"
        say "admin JWT: $(NS=default ADMIN=1 token)"
        say "          (make token NS=team-a for another namespace's; docs/tenants.md)"
        say "try:      curl -H \"Authorization: Bearer \$TOKEN\" http://127.0.0.1:$(port_of gateway)/functions"
        say "AWS CLI:  AWS_ACCESS_KEY_ID=$MINILAMBDA_AWS_ACCESS_KEY AWS_SECRET_ACCESS_KEY=$MINILAMBDA_AWS_SECRET_KEY AWS_DEFAULT_REGION=us-east-1 \\"
        say "          aws lambda invoke --endpoint-url http://127.0.0.1:$(port_of gateway) --function-name NAME out.json"
        say "internal: executor :$(port_of lambda-executor) and build-master :$(port_of build-master) answer 401 without"
        say "          X-Minilambda-Internal: <the token in ${MINILAMBDA_INTERNAL_TOKEN_FILE:-\$MINILAMBDA_INTERNAL_TOKEN}>"
        say "logs:     $PLATFORM_DIR/logs/   stop with: make stop"
        ;;
    stop)
        if [ -f "$ML_RUN_DIR/stack.env" ]; then load_env; fi
        daemons_stop
        bash "$SCRIPT_DIR/stack.sh" stop
        ;;
    status)
        load_env
        for d in "${DAEMONS[@]}"; do echo "$d: $(health_code "$d")"; done
        ;;
    token) load_env; token ;;
    migrate) load_env; migrate ;;
    daemons-start) load_env; daemons_start ;;
    daemons-stop) daemons_stop ;;
    *) echo "usage: $0 start|stop|status|token|migrate|daemons-start|daemons-stop" >&2; exit 2 ;;
esac
