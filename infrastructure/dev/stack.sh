#!/usr/bin/env bash
# Native local stack for minilambda: Postgres, Redis, RabbitMQ (+management, +prometheus)
# and a SigV4-checking S3 server, all on 127.0.0.1, with no systemd and no Docker.
#
#   stack.sh start            start (or reuse) every server, wait until each is ready
#   stack.sh stop [--purge]   stop every server this run dir started, cleanly (RabbitMQ takes ~6 s);
#                             --purge kills them at once and deletes the run dir
#   stack.sh purge            same as stop --purge
#   stack.sh status           one line per server: up/down (exit 0 all up, 3 otherwise)
#   stack.sh env              print the path of stack.env (exit 1 if the stack never started)
#
# ML_RUN_DIR   state, logs, pid files (default: <repo>/.run/stack)
# ML_PORT_BASE ports are offsets from it (default 20000, or the base the run dir last used):
#   postgres +432, redis +379, amqp +672, rabbitmq management +673, rabbitmq prometheus +692,
#   epmd +369, erlang distribution +671, rabbitmqctl distribution +680..+690, s3 +900.
# Two run dirs with different bases run side by side; `stop` touches only its own run dir.
# ML_STACK_NICE Postgres and RabbitMQ run at this nice, their sessions' autogroups too (1..19:
#   they yield the CPU to the platform's request path, docs/latency.md; default 0: unchanged —
#   niced, they slow every test that waits on them while the machine is busy).
# Prefer bases whose ports stay below the kernel's ephemeral range (32768+ here), i.e. <= 31867:
# inside it a client socket can hold a port and a listener fails with EADDRINUSE.
# start writes $ML_RUN_DIR/stack.env (MINILAMBDA_* endpoints, and MINILAMBDA_INTERNAL_TOKEN_FILE
# naming the stack's 0600 internal token, made once: docs/security.md); logs are in $ML_RUN_DIR/logs/.
set -euo pipefail

# The servers started below must not inherit the caller's descriptors: a daemon holding a
# caller's pipe open can hang whoever waits for EOF on it (CI runners, `| tee`). 255 is bash's.
for fd in "/proc/$$/fd/"*; do
	fd=${fd##*/}
	if [[ $fd =~ ^[0-9]+$ ]] && ((fd > 2 && fd != 255)); then eval "exec $fd>&-"; fi
done
unset fd

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$SCRIPT_DIR/../.." && pwd)
S3_APP_DIR=$SCRIPT_DIR/s3
# shellcheck source=lib/s3deps.sh
. "$SCRIPT_DIR/lib/s3deps.sh"

RUN_DIR=${ML_RUN_DIR:-$REPO_DIR/.run/stack}
[[ $RUN_DIR == /* ]] || RUN_DIR=$PWD/$RUN_DIR
RUN_DIR=${RUN_DIR%/}
[[ -n $RUN_DIR ]] || { echo "stack: error: ML_RUN_DIR must not be /" >&2; exit 2; }
LOG_DIR=$RUN_DIR/logs
MARKER=$RUN_DIR/.ml-stack        # holds the port base; marks the dir as ours (purge checks it)
LOCK_FILE=$RUN_DIR/.lock
ENV_FILE=$RUN_DIR/stack.env

PG_TIMEOUT=20 REDIS_TIMEOUT=20 S3_TIMEOUT=20 RABBIT_TIMEOUT=60 STOP_TIMEOUT=30

S3_BUCKET=minilambda
S3_ACCESS_KEY=minilambda
S3_SECRET_KEY=minilambda-dev-secret
S3_REGION=us-east-1
RABBIT_NODE=minilambda@localhost # each stack has its own epmd, so the name need not vary

say() { printf 'stack: %s\n' "$*"; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# die_log NAME LOGFILE MESSAGE: fail with the tail of a server's log.
die_log() {
	printf 'stack: error: %s: %s\n' "$1" "$3" >&2
	if [[ -s $2 ]]; then
		printf 'stack: last lines of %s:\n' "$2" >&2
		tail -n 25 "$2" | sed 's/^/    /' >&2
		if tail -n 200 "$2" | grep -qiE 'eaddrinuse|address already in use'; then
			printf 'stack: hint: a port was taken; if it lies in the ephemeral range (%s), a client socket\n' \
				"$(tr '\t' '-' </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null)" >&2
			printf 'stack: hint: may hold it: use an ML_PORT_BASE whose ports stay below that range\n' >&2
		fi
	fi
	printf 'stack: the other servers are left running; "%s stop" stops them\n' "$0" >&2
	exit 1
}

now() { printf '%s' "${EPOCHREALTIME/[.,]/}"; } # microseconds

# ---------------------------------------------------------------- ports and paths

# set_ports BASE: derive every port from BASE.
set_ports() {
	local base=$1
	[[ $base =~ ^[0-9]+$ ]] || die "ML_PORT_BASE must be a number, got '$base'"
	((base >= 1024 && base <= 64635)) || die "ML_PORT_BASE must be in 1024..64635 (ports go up to base+900), got $base"
	PORT_BASE=$base
	PG_PORT=$((base + 432))
	REDIS_PORT=$((base + 379))
	EPMD_PORT=$((base + 369))
	DIST_PORT=$((base + 671))
	AMQP_PORT=$((base + 672))
	MGMT_PORT=$((base + 673))
	CTL_PORT_MIN=$((base + 680))
	CTL_PORT_MAX=$((base + 690))
	PROM_PORT=$((base + 692))
	S3_PORT=$((base + 900))
}

# warn_ephemeral: ports inside the kernel's ephemeral range can be taken at any moment by the
# local end of some outgoing connection (hundreds sit in TIME-WAIT here), and a listener then
# fails with EADDRINUSE — RabbitMQ's AMQP listener does not set SO_REUSEADDR.
warn_ephemeral() {
	local lo hi
	read -r lo hi 2>/dev/null </proc/sys/net/ipv4/ip_local_port_range || return 0
	if ((PORT_BASE + 900 >= lo && PORT_BASE + 369 <= hi)); then
		warn "ports $((PORT_BASE + 369))..$((PORT_BASE + 900)) overlap the ephemeral port range $lo-$hi;" \
			"a start may then fail with EADDRINUSE (bases up to $((lo - 901)) avoid it)"
	fi
}

saved_base() { [[ -f $MARKER ]] && tr -dc '0-9' <"$MARKER"; return 0; }

# True when every existing directory on the way to the run dir is searchable by others.
run_dir_public() {
	local d=$RUN_DIR
	while [[ -n $d && $d != / ]]; do
		if [[ -d $d ]] && (($(stat -c '0%a' "$d") % 2 == 0)); then return 1; fi
		d=$(dirname "$d")
	done
	return 0
}

# Postgres runs as user postgres, which cannot enter a run dir under a private home (root's
# checkout in /root, 0700 on Debian): its files then live under /var/lib/minilambda, keyed
# by the run dir, and the run dir's logs/postgres.log links to its log.
PG_DIR=$RUN_DIR/postgres
PG_LOG=$LOG_DIR/postgres.log
PG_AWAY=0
if ((EUID == 0)) && ! run_dir_public; then
	PG_DIR=/var/lib/minilambda/postgres-$(printf '%s' "$RUN_DIR" | sha256sum | cut -c1-16)
	PG_LOG=$PG_DIR/postgres.log
	PG_AWAY=1
fi
PG_DATA=$PG_DIR/data
PG_SOCK=$PG_DIR/sock
REDIS_DIR=$RUN_DIR/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$LOG_DIR/redis.log
RABBIT_DIR=$RUN_DIR/rabbitmq
RABBIT_WRAPPER_PID=$RABBIT_DIR/wrapper.pid
RABBIT_PID=$RABBIT_DIR/beam.pid
EPMD_PID=$RABBIT_DIR/epmd.pid
RABBIT_LOG=$LOG_DIR/rabbitmq.log
EPMD_LOG=$LOG_DIR/epmd.log
S3_DIR=$RUN_DIR/s3
S3_DATA=$S3_DIR/data
S3_PID=$S3_DIR/s3.pid
S3_LOG=$LOG_DIR/s3.log

newest_dir() { # newest_dir GLOB...: the highest-versioned existing match
	local d
	d=$(printf '%s\n' "$@" | sort -V | tail -n 1)
	[[ -d $d ]] && printf '%s' "$d"
}
PG_BIN=${ML_PG_BIN:-$(newest_dir /usr/lib/postgresql/*/bin || true)}
RABBIT_SBIN=${ML_RABBIT_SBIN:-$(newest_dir /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin || true)}

# ---------------------------------------------------------------- process helpers

read_pid() { [[ -f $1 ]] && tr -dc '0-9' <"$1"; return 0; }

# pid_alive PID: the process exists and is not a zombie. Servers whose parent exited are
# reaped by pid 1, which may take seconds; a zombie must already count as gone.
pid_alive() {
	local stat
	[[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null || return 1
	stat=$(cat /proc/"$1"/stat 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat:0:1} != Z ]]
}

# pid_cmd_has PID TEXT: the process's command line contains TEXT (guards against pid reuse).
pid_cmd_has() {
	local cmd
	[[ -r /proc/$1/cmdline ]] || return 1
	cmd=$(tr '\0' ' ' 2>/dev/null </proc/"$1"/cmdline) || return 1
	[[ $cmd == *"$2"* ]]
}

# live_pid FILE TEXT: print the pid in FILE if that process is alive and is the expected one.
live_pid() {
	local pid
	pid=$(read_pid "$1")
	pid_alive "$pid" && pid_cmd_has "$pid" "$2" && printf '%s' "$pid"
	return 0
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# need_free_port NAME PORT: refuse to start on a port someone else already listens on.
need_free_port() {
	if port_open "$2"; then
		die "$1: port $2 on 127.0.0.1 is already in use (another stack on the same ML_PORT_BASE? pick another base)"
	fi
}

# preflight_ports: check the ports of every server that is not already running, before
# anything starts, so a clash fails the start without leaving half a stack behind.
preflight_ports() {
	local p
	pg_up || need_free_port postgres "$PG_PORT"
	[[ -n $(redis_pid) ]] || need_free_port redis "$REDIS_PORT"
	if [[ -z $(rabbit_beam_pid)$(rabbit_wrapper_pid) ]]; then
		for p in "$AMQP_PORT" "$MGMT_PORT" "$PROM_PORT" "$DIST_PORT"; do need_free_port rabbitmq "$p"; done
	fi
	[[ -n $(epmd_pid) ]] || need_free_port epmd "$EPMD_PORT"
	[[ -n $(s3_pid) ]] || need_free_port s3 "$S3_PORT"
}

# wait_gone TIMEOUT PID...: wait for processes to exit; SIGKILL the survivors at the deadline.
wait_gone() {
	local timeout=$1 deadline pid left
	shift
	deadline=$(($(now) + timeout * 1000000))
	while :; do
		left=()
		for pid in "$@"; do pid_alive "$pid" && left+=("$pid"); done
		((${#left[@]} == 0)) && return 0
		if (($(now) > deadline)); then
			warn "killing pids ${left[*]}, still running after ${timeout}s"
			kill -KILL "${left[@]}" 2>/dev/null || true
			sleep 0.2
			return 0
		fi
		sleep 0.1
	done
}

# Run Postgres tools as `postgres` when root: initdb and pg_ctl refuse to run as root.
as_pg() {
	if ((EUID == 0)); then
		(cd / && runuser -u postgres -- "$@")
	else
		"$@"
	fi
}

# ---------------------------------------------------------------- postgres

pg_postmaster_pid() { [[ -f $PG_DATA/postmaster.pid ]] && head -n 1 "$PG_DATA/postmaster.pid" | tr -dc '0-9'; return 0; }

# pg_up: a live (not zombie) postmaster owns the data dir. pg_ctl alone would count a zombie.
pg_up() {
	[[ -f $PG_DATA/PG_VERSION ]] && pid_alive "$(pg_postmaster_pid)" &&
		as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

# pg_await_reaped: after a crash the postmaster may linger as a zombie until pid 1 reaps it
# (~2 s here); meanwhile the new postmaster would refuse the "still used" lock file.
pg_await_reaped() {
	local pid deadline
	pid=$(pg_postmaster_pid)
	[[ -n $pid ]] || return 0
	deadline=$(($(now) + PG_TIMEOUT * 1000000))
	while kill -0 "$pid" 2>/dev/null && ! pid_alive "$pid"; do
		(($(now) > deadline)) && die_log postgres "$PG_LOG" "old postmaster $pid was never reaped"
		sleep 0.1
	done
}

pg_launch() {
	if pg_up; then
		PG_REUSED=1
		return 0
	fi
	PG_REUSED=0
	pg_await_reaped
	mkdir -p "$PG_DIR"
	chmod 755 "$PG_DIR"
	: >>"$PG_LOG"
	((PG_AWAY)) && ln -sfn "$PG_LOG" "$LOG_DIR/postgres.log"
	if [[ ! -f $PG_DATA/PG_VERSION ]]; then
		rm -rf "$PG_DATA" # a half-done initdb: start over
		mkdir -p "$PG_DATA"
		chmod 700 "$PG_DATA"
		((EUID == 0)) && chown postgres:postgres "$PG_DATA"
		as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
			>>"$PG_LOG" 2>&1 || die_log postgres "$PG_LOG" "initdb failed"
	fi
	# A Unix socket path is limited to 107 bytes: go TCP-only when the run dir is too deep.
	local sock=$PG_SOCK
	if ((${#PG_SOCK} + 20 > 100)); then
		sock=''
	else
		mkdir -p "$PG_SOCK"
		((EUID == 0)) && chown postgres:postgres "$PG_SOCK"
	fi
	((EUID == 0)) && chown postgres:postgres "$PG_LOG"
	# shellcheck disable=SC2094 # pg_ctl and the postmaster both only append to the log
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -W \
		-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories='$sock' -c max_connections=1000" \
		start >>"$PG_LOG" 2>&1 9>&- </dev/null || die_log postgres "$PG_LOG" "pg_ctl start failed"
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -t 1 >/dev/null 2>&1; }

pg_psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }

pg_wait() {
	local t0 deadline
	t0=$(now)
	deadline=$((t0 + PG_TIMEOUT * 1000000))
	until pg_ready; do
		(($(now) > deadline)) && die_log postgres "$PG_LOG" "not ready after ${PG_TIMEOUT}s"
		# The postmaster removes its pid file when it gives up (e.g. port taken); allow 2 s to write it.
		if [[ ! -f $PG_DATA/postmaster.pid ]] && (($(now) - t0 > 2000000)); then
			die_log postgres "$PG_LOG" "the postmaster exited during startup"
		fi
		sleep 0.05
	done
	local db
	for db in build_service_db lambda_service_db; do
		if [[ -z $(pg_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'") ]]; then
			pg_psql -d postgres -c "CREATE DATABASE $db" >/dev/null ||
				die_log postgres "$PG_LOG" "cannot create database $db"
		fi
	done
	[[ $(pg_psql -d build_service_db -tAc 'SELECT 1') == 1 ]] || die_log postgres "$PG_LOG" "SELECT 1 failed"
}

# background_prio PID...: Postgres and RabbitMQ yield the CPU to the platform's request path
# when both want it (docs/latency.md): their session's autogroup (the scheduler weighs each
# session as one: plain nice acts only inside it) and every thread at ML_STACK_NICE (default 0:
# left alone). Postgres backends forked later inherit both. The autogroup only when
# the session is the server's own (pg_ctl and the broker's launch both setsid), never a
# caller's. Best effort.
background_prio() {
	local n=${ML_STACK_NICE:-0} pid sid t
	[[ $n =~ ^[0-9]+$ ]] && ((n > 0 && n <= 19)) || return 0
	for pid in "$@"; do
		[[ -n $pid && -d /proc/$pid ]] || continue
		sid=$(ps -o sid= -p "$pid" 2>/dev/null | tr -dc '0-9')
		if [[ -n $sid && -w /proc/$pid/autogroup ]] &&
			[[ $(cat "/proc/$sid/comm" 2>/dev/null) =~ ^(postgres|rabbitmq-server|beam\.smp)$ ]]; then
			echo "$n" >"/proc/$pid/autogroup" 2>/dev/null
		fi
		for t in "/proc/$pid/task/"*; do
			renice -n "$n" -p "${t##*/}" >/dev/null 2>&1
		done
	done
	return 0
}

pg_stop() {
	local pid
	pid=$(pg_postmaster_pid)
	pg_up || return 0
	as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$PG_STOP_MODE" -W stop >/dev/null 2>&1 || true
	STOP_PIDS+=("$pid")
}

# ---------------------------------------------------------------- redis

redis_pid() { live_pid "$REDIS_PID" "redis-server"; }

redis_launch() {
	if [[ -n $(redis_pid) ]]; then
		REDIS_REUSED=1
		return 0
	fi
	REDIS_REUSED=0
	mkdir -p "$REDIS_DIR"
	rm -f "$REDIS_PID"
	# No persistence: dev data is disposable, and saving would only cost time.
	# shellcheck disable=SC2094 # both only append to the log
	setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
		--pidfile "$REDIS_PID" --dir "$REDIS_DIR" --logfile "$REDIS_LOG" \
		--save '' --appendonly no >>"$REDIS_LOG" 2>&1 9>&- </dev/null ||
		die_log redis "$REDIS_LOG" "redis-server failed to start"
}

redis_wait() {
	local deadline=$(($(now) + REDIS_TIMEOUT * 1000000))
	until [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; do
		(($(now) > deadline)) && die_log redis "$REDIS_LOG" "no PONG after ${REDIS_TIMEOUT}s"
		sleep 0.05
	done
}

redis_stop() {
	local pid
	pid=$(redis_pid)
	[[ -n $pid ]] || return 0
	kill -"$STOP_SIG" "$pid" 2>/dev/null || true
	STOP_PIDS+=("$pid")
}

# ---------------------------------------------------------------- rabbitmq

# rabbit_env: the environment shared by the broker and its CLI tools. HOME matters: the
# Erlang cookie lives there and the CLI must read the broker's.
rabbit_env() {
	export HOME=$RABBIT_DIR/home
	export RABBITMQ_NODENAME=$RABBIT_NODE
	export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
	export RABBITMQ_NODE_PORT=$AMQP_PORT
	export RABBITMQ_DIST_PORT=$DIST_PORT
	export RABBITMQ_CTL_DIST_PORT_MIN=$CTL_PORT_MIN
	export RABBITMQ_CTL_DIST_PORT_MAX=$CTL_PORT_MAX
	export ERL_EPMD_ADDRESS=127.0.0.1
	export ERL_EPMD_PORT=$EPMD_PORT
	export RABBITMQ_MNESIA_BASE=$RABBIT_DIR/mnesia
	export RABBITMQ_LOG_BASE=$LOG_DIR
	export RABBITMQ_LOGS=- # to stdout, which goes to $RABBIT_LOG
	export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_DIR/enabled_plugins
	export RABBITMQ_CONFIG_FILE=$RABBIT_DIR/rabbitmq.conf
	export RABBITMQ_ADVANCED_CONFIG_FILE=$RABBIT_DIR/advanced.config
	export RABBITMQ_CONF_ENV_FILE=$RABBIT_DIR/rabbitmq-env.conf
	export RABBITMQ_PID_FILE=$RABBIT_PID
	export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

rabbitmqctl() { (rabbit_env && "$RABBIT_SBIN/rabbitmqctl" "$@"); }

rabbit_wrapper_pid() { live_pid "$RABBIT_WRAPPER_PID" "rabbitmq-server"; }
rabbit_beam_pid() { live_pid "$RABBIT_PID" "$RABBIT_DIR/"; }
epmd_pid() { live_pid "$EPMD_PID" "-port $EPMD_PORT"; }

rabbit_write_config() {
	mkdir -p "$RABBIT_DIR/home" "$RABBIT_DIR/mnesia"
	chmod 700 "$RABBIT_DIR/home"
	local cookie=$RABBIT_DIR/home/.erlang.cookie
	if [[ ! -s $cookie ]]; then
		# Written before anything runs so the broker and the CLI never race to create it.
		(umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$cookie")
		chmod 400 "$cookie"
	fi
	: >"$RABBIT_DIR/rabbitmq-env.conf"
	printf '%s\n' '[rabbitmq_management,rabbitmq_prometheus].' >"$RABBIT_DIR/enabled_plugins"
	cat >"$RABBIT_DIR/rabbitmq.conf" <<-EOF
		# generated by stack.sh
		management.tcp.ip = 127.0.0.1
		management.tcp.port = $MGMT_PORT
		prometheus.tcp.ip = 127.0.0.1
		prometheus.tcp.port = $PROM_PORT
	EOF
}

rabbit_launch() {
	if [[ -n $(rabbit_beam_pid) || -n $(rabbit_wrapper_pid) ]]; then
		RABBIT_REUSED=1
		return 0
	fi
	RABBIT_REUSED=0
	rabbit_write_config
	rm -f "$RABBIT_PID" "$RABBIT_WRAPPER_PID"
	# Our own epmd, started first and tracked by pid: the broker would otherwise spawn a
	# daemonised one that outlives it and that we could not tell apart from others.
	if [[ -z $(epmd_pid) ]]; then
		(cd "$RABBIT_DIR" && exec setsid epmd -address 127.0.0.1 -port "$EPMD_PORT" >>"$EPMD_LOG" 2>&1 9>&- </dev/null) &
		echo $! >"$EPMD_PID"
		local deadline=$(($(now) + 5000000))
		until port_open "$EPMD_PORT"; do
			(($(now) > deadline)) && die_log epmd "$EPMD_LOG" "epmd did not listen on $EPMD_PORT"
			sleep 0.02
		done
	fi
	(
		rabbit_env
		cd "$RABBIT_DIR"
		exec setsid "$RABBIT_SBIN/rabbitmq-server" >>"$RABBIT_LOG" 2>&1 9>&- </dev/null
	) &
	echo $! >"$RABBIT_WRAPPER_PID"
}

rabbit_wait() {
	local deadline=$(($(now) + RABBIT_TIMEOUT * 1000000)) left
	# The AMQP listener opens near the end of boot; polling the port is much cheaper than
	# the CLI (~0.8 s a call), so only then ask the node itself.
	until port_open "$AMQP_PORT"; do
		(($(now) > deadline)) && die_log rabbitmq "$RABBIT_LOG" "AMQP port $AMQP_PORT not open after ${RABBIT_TIMEOUT}s"
		[[ -n $(rabbit_wrapper_pid) || -n $(rabbit_beam_pid) ]] ||
			die_log rabbitmq "$RABBIT_LOG" "the broker exited during startup"
		sleep 0.1
	done
	# await_startup exits 69 until the node has registered with epmd: loop on it.
	until rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1; do
		left=$(((deadline - $(now)) / 1000000))
		((left > 0)) || die_log rabbitmq "$RABBIT_LOG" "rabbitmqctl await_startup failed for ${RABBIT_TIMEOUT}s"
		sleep 0.2
	done
	until curl -fsS -o /dev/null -u guest:guest "http://127.0.0.1:$MGMT_PORT/api/overview" 2>/dev/null &&
		curl -fsS -o /dev/null "http://127.0.0.1:$PROM_PORT/metrics" 2>/dev/null; do
		(($(now) > deadline)) && die_log rabbitmq "$RABBIT_LOG" "management/prometheus plugins not answering"
		sleep 0.1
	done
}

rabbit_stop() {
	local beam wrapper epmd
	beam=$(rabbit_beam_pid)
	wrapper=$(rabbit_wrapper_pid)
	# SIGTERM makes the broker shut down cleanly, as `rabbitmqctl stop` would but without
	# ~1 s of CLI start; the shutdown itself takes ~6 s (5 s of it inside the rabbit app).
	# The wrapper script forwards SIGTERM to the VM itself: signal it only if the VM is unknown.
	if [[ -n $beam ]]; then
		kill -"$STOP_SIG" "$beam" 2>/dev/null || true
		STOP_PIDS+=("$beam")
	fi
	if [[ -n $wrapper ]]; then
		[[ -z $beam || $STOP_SIG == KILL ]] && { kill -"$STOP_SIG" "$wrapper" 2>/dev/null || true; }
		STOP_PIDS+=("$wrapper")
	fi
	epmd=$(epmd_pid)
	[[ -n $epmd ]] && EPMD_STOP_PID=$epmd
	return 0
}

# ---------------------------------------------------------------- s3

s3_pid() { live_pid "$S3_PID" "$S3_DATA"; }

s3_launch() {
	if [[ -n $(s3_pid) ]]; then
		S3_REUSED=1
		return 0
	fi
	S3_REUSED=0
	command -v node >/dev/null 2>&1 || die "s3: node not found on PATH (run infrastructure/dev/deps.sh)"
	s3deps_ensure "$S3_APP_DIR" || die "s3: npm dependencies missing (run infrastructure/dev/deps.sh)"
	mkdir -p "$S3_DATA"
	rm -f "$S3_PID"
	# Arguments (not only env) carry the data dir so the process is identifiable by run dir.
	# s3rver encrypts list continuation tokens with DES, which OpenSSL 3 only offers through
	# its legacy provider: without it every paginated listing answers 500.
	S3_ACCESS_KEY=$S3_ACCESS_KEY S3_SECRET_KEY=$S3_SECRET_KEY \
		setsid node --openssl-legacy-provider "$S3_APP_DIR/server.js" "$S3_PORT" "$S3_DATA" "$S3_BUCKET" \
		>>"$S3_LOG" 2>&1 9>&- </dev/null &
	echo $! >"$S3_PID"
}

s3_wait() {
	local deadline=$(($(now) + S3_TIMEOUT * 1000000))
	until curl -fsS -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null; do
		(($(now) > deadline)) && die_log s3 "$S3_LOG" "no HTTP answer after ${S3_TIMEOUT}s"
		[[ -n $(s3_pid) ]] || die_log s3 "$S3_LOG" "the server exited during startup"
		sleep 0.05
	done
}

s3_stop() {
	local pid
	pid=$(s3_pid)
	[[ -n $pid ]] || return 0
	kill -"$STOP_SIG" "$pid" 2>/dev/null || true
	STOP_PIDS+=("$pid")
}

# ---------------------------------------------------------------- commands

take_lock() {
	exec 9>>"$LOCK_FILE"
	flock -w 300 9 || die "another stack.sh holds $LOCK_FILE for more than 300 s"
}

check_tools() {
	local missing=() t
	[[ -x $PG_BIN/initdb ]] || missing+=("postgresql (initdb)")
	[[ -x $RABBIT_SBIN/rabbitmq-server ]] || missing+=("rabbitmq-server")
	for t in redis-server redis-cli epmd curl runuser setsid flock; do
		command -v "$t" >/dev/null 2>&1 || missing+=("$t")
	done
	((${#missing[@]} == 0)) || die "missing: ${missing[*]} (run infrastructure/dev/deps.sh)"
	if ((EUID == 0)) && ! id postgres >/dev/null 2>&1; then
		die "user 'postgres' does not exist (install postgresql)"
	fi
}

any_running() { pg_up || [[ -n $(redis_pid)$(rabbit_beam_pid)$(rabbit_wrapper_pid)$(s3_pid)$(epmd_pid) ]]; }

# The internal credential every daemon of this stack shares (docs/security.md): made once,
# readable by its owner only; stack.env names the file, so the token is never in it.
internal_token() {
	[[ -s $RUN_DIR/internal_token ]] ||
		(umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$RUN_DIR/internal_token")
	chmod 600 "$RUN_DIR/internal_token"
}

write_env() {
	local tmp=$ENV_FILE.tmp
	# the stack's MINILAMBDA_SECRETS_KEY (docs/secrets.md), made once: rows stay readable across restarts
	[[ -s $RUN_DIR/secrets_key ]] || (umask 077 && head -c 32 /dev/urandom | base64 | tr -d '\n' >"$RUN_DIR/secrets_key")
	internal_token
	cat >"$tmp" <<-EOF
		# generated by infrastructure/dev/stack.sh — source with: set -a; . $ENV_FILE; set +a
		export ML_STACK_PORT_BASE=$PORT_BASE
		export ML_STACK_RUN_DIR=$RUN_DIR
		export ML_STACK_PG_DATA=$PG_DATA
		export ML_STACK_PG_BIN=$PG_BIN
		export MINILAMBDA_BUILD_DB_URL=postgresql://postgres@127.0.0.1:$PG_PORT/build_service_db
		export MINILAMBDA_LAMBDA_DB_URL=postgresql://postgres@127.0.0.1:$PG_PORT/lambda_service_db
		export MINILAMBDA_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
		export MINILAMBDA_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
		export MINILAMBDA_RABBITMQ_MGMT_URL=http://127.0.0.1:$MGMT_PORT
		export MINILAMBDA_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
		export MINILAMBDA_S3_REGION=$S3_REGION
		export MINILAMBDA_S3_BUCKET=$S3_BUCKET
		export MINILAMBDA_S3_ACCESS_KEY=$S3_ACCESS_KEY
		export MINILAMBDA_S3_SECRET_KEY=$S3_SECRET_KEY
		export MINILAMBDA_SECRETS_KEY=$(cat "$RUN_DIR/secrets_key")
		export MINILAMBDA_INTERNAL_TOKEN_FILE=$RUN_DIR/internal_token
	EOF
	mv -f "$tmp" "$ENV_FILE"
}

cmd_start() {
	local t0 base saved
	t0=$(now)
	check_tools
	mkdir -p "$RUN_DIR" "$LOG_DIR"
	((PG_AWAY)) && install -d -m 755 "${PG_DIR%/*}"
	chmod 755 "$RUN_DIR" "$LOG_DIR" # postgres must reach its data dir through these
	take_lock
	saved=$(saved_base)
	base=${ML_PORT_BASE:-${saved:-20000}}
	if [[ -n $saved && $saved != "$base" ]]; then
		set_ports "$saved"
		any_running && die "$RUN_DIR already runs a stack on port base $saved; stop it first (or unset ML_PORT_BASE)"
	fi
	set_ports "$base"
	warn_ephemeral
	printf '%s\n' "$PORT_BASE" >"$MARKER"
	if ((EUID == 0)) && ! runuser -u postgres -- test -x "${PG_DIR%/*}"; then
		die "user postgres cannot enter ${PG_DIR%/*} (a parent directory is not searchable by others)"
	fi

	preflight_ports
	# RabbitMQ boots slowest (~6 s): launch it first, the others start while it boots.
	rabbit_launch
	s3_launch
	redis_launch
	pg_launch
	redis_wait
	pg_wait
	s3_wait
	rabbit_wait
	background_prio "$(pg_postmaster_pid)" "$(rabbit_beam_pid)"
	write_env

	local ms=$((($(now) - t0) / 1000)) reused=''
	((PG_REUSED)) && reused+=' postgres'
	((REDIS_REUSED)) && reused+=' redis'
	((RABBIT_REUSED)) && reused+=' rabbitmq'
	((S3_REUSED)) && reused+=' s3'
	[[ -n $reused ]] && reused=" (already running:$reused)"
	say "ready in $((ms / 1000)).$(printf '%03d' $((ms % 1000))) s$reused: postgres :$PG_PORT redis :$REDIS_PORT" \
		"amqp :$AMQP_PORT management :$MGMT_PORT prometheus :$PROM_PORT s3 :$S3_PORT"
	say "env: $ENV_FILE"
}

# stray_pids: processes of this run dir that the pid files missed (the safety net of stop).
# A process is ours only if its command line names our run dir or its working directory is
# inside it (redis chdirs to its --dir, postgres to its data dir, epmd and the broker are
# started from the rabbitmq dir). Never match by port: another run dir may use the same base.
stray_pids() {
	local d pid comm cmd cwd
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		comm=$(cat "$d/comm" 2>/dev/null) || continue
		case $comm in
		postgres | beam.smp | node | redis-server | epmd | erl_child_setup | sh) ;;
		*) continue ;;
		esac
		cmd=$(tr '\0' ' ' 2>/dev/null <"$d/cmdline") || continue
		[[ $comm != sh || $cmd == *rabbit* ]] || continue # only the broker's wrapper/helpers
		cwd=$(readlink "$d/cwd" 2>/dev/null) || cwd=''
		if [[ $cmd == *"$RUN_DIR/"* || $cwd == "$RUN_DIR" || $cwd == "$RUN_DIR/"* ]]; then
			[[ $pid == "$$" || $pid == "$BASHPID" ]] || echo "$pid"
		fi
	done
	return 0
}

cmd_stop() {
	local purge=${1:-0} saved pids
	if [[ ! -d $RUN_DIR ]]; then
		say "nothing to stop in $RUN_DIR"
		return 0
	fi
	take_lock
	saved=$(saved_base)
	set_ports "${saved:-${ML_PORT_BASE:-20000}}"
	STOP_PIDS=() EPMD_STOP_PID=''
	# State about to be deleted needs no clean shutdown: kill at once (RabbitMQ alone saves ~6 s).
	if ((purge)); then STOP_SIG=KILL PG_STOP_MODE=immediate; else STOP_SIG=TERM PG_STOP_MODE=fast; fi
	s3_stop
	redis_stop
	pg_stop
	rabbit_stop
	((${#STOP_PIDS[@]} == 0)) || wait_gone "$STOP_TIMEOUT" "${STOP_PIDS[@]}"
	# epmd outlives the broker: stop it once the node is gone.
	if [[ -n $EPMD_STOP_PID ]]; then
		kill -TERM "$EPMD_STOP_PID" 2>/dev/null || true
		wait_gone 5 "$EPMD_STOP_PID"
	fi
	mapfile -t pids < <(stray_pids)
	if ((${#pids[@]} > 0)); then
		warn "stopping leftover processes of $RUN_DIR: ${pids[*]}"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		wait_gone 10 "${pids[@]}"
	fi
	mapfile -t pids < <(stray_pids)
	((${#pids[@]} == 0)) || die "processes still running: ${pids[*]}"
	rm -f "$ENV_FILE" "$REDIS_PID" "$S3_PID" "$RABBIT_PID" "$RABBIT_WRAPPER_PID" "$EPMD_PID"
	if ((purge)); then
		[[ -f $MARKER ]] || die "$RUN_DIR has no $MARKER: not a stack dir, not deleting it"
		rm -rf "$RUN_DIR"
		((PG_AWAY)) && rm -rf "$PG_DIR"
		say "stopped and purged $RUN_DIR"
	else
		say "stopped ($RUN_DIR)"
	fi
}

cmd_status() {
	local saved all=0
	saved=$(saved_base)
	set_ports "${saved:-${ML_PORT_BASE:-20000}}"
	line() { printf '%-9s %-4s 127.0.0.1:%s\n' "$1" "$2" "$3"; [[ $2 == up ]] || all=3; }
	if pg_up && pg_ready; then line postgres up "$PG_PORT"; else line postgres down "$PG_PORT"; fi
	if [[ -n $(redis_pid) && $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; then
		line redis up "$REDIS_PORT"
	else
		line redis down "$REDIS_PORT"
	fi
	if [[ -n $(rabbit_beam_pid) ]] && port_open "$AMQP_PORT"; then
		line rabbitmq up "$AMQP_PORT"
	else
		line rabbitmq down "$AMQP_PORT"
	fi
	if [[ -n $(s3_pid) ]] && curl -fsS -o /dev/null "http://127.0.0.1:$S3_PORT/" 2>/dev/null; then
		line s3 up "$S3_PORT"
	else
		line s3 down "$S3_PORT"
	fi
	return "$all"
}

cmd_env() {
	printf '%s\n' "$ENV_FILE"
	[[ -f $ENV_FILE ]] || { echo "stack: $ENV_FILE does not exist yet: run stack.sh start" >&2; return 1; }
}

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}

case ${1:-} in
start) cmd_start ;;
stop)
	case ${2:-} in
	'') cmd_stop 0 ;;
	--purge) cmd_stop 1 ;;
	*) usage ;;
	esac
	;;
purge) cmd_stop 1 ;;
status) cmd_status ;;
env) cmd_env ;;
*) usage ;;
esac
