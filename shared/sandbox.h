/* sandbox.h — one function instance in its own sandbox, speaking the framed protocol (proto.h).
 *
 * An instance is a runtime (python3 / nodejs / a user "bootstrap") started in new PID, mount,
 * network, IPC, UTS and cgroup namespaces, on a read-only root made of bind mounts of /usr and
 * a few /etc files, with the code read-only at /var/task, a private tmpfs /tmp, an
 * unprivileged per-instance uid without capabilities, NO_NEW_PRIVS, a seccomp allow-list,
 * rlimits, and cgroup v1 memory, pids and cpu limits; the host's third-party package dirs are
 * masked. docs/sandbox.md describes each layer and its fallback.
 *
 * Thread-safety: call sandbox_init once before anything else (not concurrently with other
 * calls). Afterwards sandbox_start may run on many threads at once; an instance is used by
 * one thread at a time (one invocation at a time). Instances are children of this process:
 * nothing else in the process may reap arbitrary children (waitpid(-1, ...)). */
#ifndef ML_SANDBOX_H
#define ML_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Where an instance's stdout and stderr go besides the 4 KiB tail: raw chunks as they are
 * drained (fd 1 or 2), then one flush per drain. Called on the thread driving the instance;
 * line splitting, limits and storage are the sink's business (the executor's fnlog.h, the
 * build-worker's build log). */
typedef struct sandbox_sink {
    void (*feed)(void *ctx, int fd, const char *data, size_t n);
    void (*flush)(void *ctx);
    void *ctx;
} sandbox_sink;

typedef struct sandbox_spec {
    const char *runtime;          /* an accepted name (fnspec_runtime_valid): its family picks
                                     the bootstrap and the handler rules */
    const char *interpreter;      /* python / node family: the runtime's interpreter from the
                                     runtimes table (runtimes.h); NULL: /usr/bin/python3 or the
                                     node sandbox_init found. Outside /usr its install dir
                                     (two levels up) is shown at the same path */
    const char *handler;          /* "module.function" | "file.export" | "bootstrap" */
    const char *code_dir;         /* extracted artifact on the host, shown read-only at /var/task;
                                     it must be world-readable (0755 dirs, 0644/0755 files) */
    const char *runtimes_dir;     /* services/lambda-executor/runtimes (bootstrap.py / bootstrap.js) */
    const char *function_name, *function_version;
    int64_t memory_mb;            /* 64..4096: hard limit (cgroup v1 memory, else RLIMIT_AS);
                                     also the CPU share (sandbox_cpu_quota_us) */
    int64_t timeout_s;            /* per invocation: caps every deadline given to sandbox_invoke (0: no cap) */
    const char *const *env;       /* "KEY=VALUE" strings, NULL-terminated (user env), may be NULL */
    bool network;                 /* false: a fresh network namespace with only lo (up) */
    int64_t pids_max;             /* processes + threads of the instance, e.g. 64 (0: 64) */
    int64_t init_timeout_ms;      /* loading the handler (0: 10000) */
    const sandbox_sink *log;      /* sandbox_start only, may be NULL: what the runtime prints
                                     while starting goes to this (the cold-starting
                                     invocation's) log; not kept afterwards */
} sandbox_spec;

typedef struct sandbox_instance sandbox_instance;

/* Cold start: launches the runtime in a new sandbox, which loads the handler once and signals
 * ready. On failure returns ML_ERR and writes "<errorType>: <message>" to err: errorType
 * "Runtime.*" (ImportModuleError, HandlerNotFound, UserCodeSyntaxError, MalformedHandlerName,
 * InitError, ExitError, OutOfMemory, InitTimeout) is the function's fault and user-facing (the
 * message includes the tail of what it printed); "Sandbox.*" is a platform or configuration
 * error. On success *out is owned by the caller: free with sandbox_destroy. */
int sandbox_start(const sandbox_spec *spec, sandbox_instance **out, char *err, size_t errlen);

typedef enum { SB_OK = 0, SB_HANDLER_ERROR, SB_TIMEOUT, SB_CRASH, SB_OOM } sandbox_status;

typedef struct sandbox_result {
    sandbox_status status;
    ml_buf payload;          /* SB_OK: the handler's return value as JSON. Otherwise an error
                                {"errorType","errorMessage","stackTrace":[...]}: the handler's
                                (SB_HANDLER_ERROR, also "Runtime.MarshalError" for a result that is
                                not JSON and "Function.ResponseSizeTooLarge" above max_result), or
                                "TimeoutError" / "Runtime.ExitError" / "Runtime.OutOfMemory". */
    ml_buf log_tail;         /* last 4 KiB the function printed (stdout+stderr) during this
                                invocation (the first one also gets what loading printed) */
    int64_t duration_ms;
    int64_t duration_us;     /* the same, finer (REPORT's Duration) */
    int64_t max_memory_bytes; /* measured peak during the invocation (cgroup
                                 memory.max_usage_in_bytes, else the runtime's VmHWM) */
    bool pids_exhausted;      /* SB_TIMEOUT/SB_CRASH/SB_OOM: the instance had hit its pids
                                 limit (a fork refused; cgroup pids.events), a likely cause */
    bool streamed;            /* the function streamed its response (a "stream" message) */
    ml_buf stream_meta;       /* then: {"content_type":"...","http":{...}} ("http" only when
                                 the handler set it); without a stream sink, payload holds the
                                 streamed bytes on SB_OK (at most max_result of them) */
    int64_t streamed_bytes;   /* body bytes the function streamed */
} sandbox_result;

/* Where a streaming function's response goes while it runs (runtimes/provided/README.md
 * "Streaming"): start once with stream_meta's JSON, then chunk per piece of the body, as
 * the runtime sends them. Both run on the invoking thread. ML_ERR from either stops the
 * forwarding (the consumer has gone): the function still runs to its end, later pieces are
 * dropped. */
typedef struct sandbox_stream_sink {
    int (*start)(void *ctx, const char *meta_json, size_t len);
    int (*chunk)(void *ctx, const char *data, size_t len);
    void *ctx;
} sandbox_stream_sink;

/* Runs one invocation: sends the event (JSON bytes), waits for the result, the deadline
 * (CLOCK_MONOTONIC ms, as ml_now_ms), a crash or an OOM kill, draining the function's output
 * meanwhile. Returns ML_OK when *out describes the outcome (any status); ML_ERR if inst is
 * already dead or on an executor-side failure (out then holds SB_CRASH). After SB_TIMEOUT,
 * SB_CRASH or SB_OOM the instance is dead (its whole process tree killed): destroy it.
 * *out is zeroed first and owned by the caller: free with sandbox_result_free. */
int sandbox_invoke(sandbox_instance *inst, const char *invocation_id, const char *event,
                   size_t event_len, int64_t deadline_ms, size_t max_result, sandbox_result *out);
/* As sandbox_invoke; what the function prints on stdout and stderr meanwhile (and what it
 * printed since the previous invocation) also goes to log, split into lines and flushed as
 * they come (NULL: the tail only). */
int sandbox_invoke_logged(sandbox_instance *inst, const sandbox_sink *log, const char *invocation_id,
                          const char *event, size_t event_len, int64_t deadline_ms,
                          size_t max_result, sandbox_result *out);

/* As sandbox_invoke_logged; a function that streams hands its response to stream as it
 * runs (NULL: the streamed bytes are collected into payload, up to max_result, else
 * Function.ResponseSizeTooLarge). One streamed piece may be at most max_result bytes. The
 * result's status still says how the invocation ended (a timeout mid-stream: SB_TIMEOUT). */
int sandbox_invoke_stream(sandbox_instance *inst, const sandbox_sink *log,
                          const sandbox_stream_sink *stream, const char *invocation_id,
                          const char *event, size_t event_len, int64_t deadline_ms,
                          size_t max_result, sandbox_result *out);

/* False once the instance died or was killed. */
bool sandbox_alive(const sandbox_instance *inst);
/* How long sandbox_start took for inst (launch and handler load until ready), microseconds. */
int64_t sandbox_init_us(const sandbox_instance *inst);
/* Host pid of the instance's init (for diagnostics and tests). */
int sandbox_pid(const sandbox_instance *inst);
/* The instance's uid (unprivileged, unique among live instances when uids are dropped). */
unsigned sandbox_uid(const sandbox_instance *inst);
/* Kills the whole process tree, reaps it, removes its cgroups, frees inst. NULL is fine. */
void sandbox_destroy(sandbox_instance *inst);
/* Frees the buffers; the result is zeroed (valid and empty). */
void sandbox_result_free(sandbox_result *r);

/* Isolation features (sandbox_features; the disable mask of sandbox_init_ex). */
#define SANDBOX_F_NAMESPACES    0x01u /* pid/mnt/net/ipc/uts/cgroup namespaces + pivot_root */
#define SANDBOX_F_CGROUP_MEMORY 0x02u
#define SANDBOX_F_CGROUP_PIDS   0x04u
#define SANDBOX_F_SECCOMP       0x08u
#define SANDBOX_F_UID           0x10u /* per-instance unprivileged uid/gid, no capabilities */
#define SANDBOX_F_CGROUP_CPU    0x20u /* cgroup v1 cpu quota in proportion to memory_mb */
#define SANDBOX_F_ALL           0x3fu

/* CPU as in Lambda: 1769 MB buys one vCPU. The quota (per SANDBOX_CPU_PERIOD_US) of an instance
 * with memory_mb, counted from SANDBOX_CPU_MIN_MB at least (a smaller share makes a Python
 * runtime's own per-invocation work stall for whole periods). Applied once the handler is
 * loaded: init runs unthrottled (bounded by init_timeout_ms), like Lambda's init boost.
 * The quota may burst (cpu.cfs_burst_us = quota: what it saved in quiet periods), so a short
 * run of invocations above the average share is not stopped for the rest of the period. A
 * shorter period (20 ms) was measured: it bounds a throttle at ~18 ms but throttled ~15x as
 * often under load (docs/latency.md); the kernel refuses quotas under 1 ms. */
#define SANDBOX_CPU_PERIOD_US 100000
#define SANDBOX_CPU_MB_PER_VCPU 1769
#define SANDBOX_CPU_MIN_MB 128
int64_t sandbox_cpu_quota_us(int64_t memory_mb);

/* The seccomp allow-list (names; everything else is EPERM, io_uring and clone3 ENOSYS): the
 * base every instance gets (network_extra false), or what a network-enabled one adds (true).
 * Static strings, *n entries. socket and clone are allowed with argument checks on top. */
const char *const *sandbox_seccomp_allowlist(bool network_extra, size_t *n);

/* Probes once at start-up what isolation this host allows (namespaces and a read-only root,
 * cgroup v1 memory and pids under <own cgroup>/<cgroup_parent_name>, seccomp, dropping to an
 * unprivileged uid) by launching a tiny probe sandbox, and prepares what every instance
 * shares (seccomp programs, runtime paths). Writes one line saying what is used and what
 * falls back to report and logs it (warning level when anything falls back).
 * ML_ERR only if not even a plain child process can be started. */
int sandbox_init(const char *cgroup_parent_name, char *report, size_t len);
/* As sandbox_init, never using the features in disable_mask (tests, operators). May be called
 * again to re-probe once no instance is alive. */
int sandbox_init_ex(const char *cgroup_parent_name, unsigned disable_mask, char *report,
                    size_t len);
/* SANDBOX_F_* in use after sandbox_init. */
unsigned sandbox_features(void);

/* ---- One-shot commands (the build-worker's installers, docs/build-pipeline.md) ----
 * The same layers as a function instance — namespaces and pivot_root, cgroups (memory, pids,
 * cpu), a fresh unprivileged uid, no capabilities, no_new_privs, the seccomp allow-list,
 * rlimits, the generated /etc — but argv runs to its end instead of speaking the protocol. */

typedef struct sandbox_bind {
    const char *host;     /* an existing host directory */
    const char *path;     /* where it shows inside: absolute, under /var, /opt or /work */
    bool writable;        /* read-write (its top dir is chowned to the run's uid first); else
                             read-only, nosuid, nodev */
} sandbox_bind;

typedef struct sandbox_run_spec {
    const char *const *argv;   /* argv[0]: an absolute path as seen inside */
    const char *const *env;    /* the whole environment, "KEY=VALUE", NULL-terminated; nothing
                                  of the caller's is passed (NULL: empty) */
    const char *cwd;           /* inside; NULL: "/" */
    const sandbox_bind *binds;
    size_t nbinds;
    const char *interpreter;   /* optional: shown like sandbox_spec's when outside /usr */
    bool host_packages;        /* true: the host's package dirs (dist-packages, node_modules:
                                  where pip and npm live) are not masked */
    bool join_netns;           /* true: join netns_fd (which must hold what the run may reach,
                                  e.g. the build's egress proxy) and allow AF_INET/AF_INET6
                                  sockets; false: a fresh namespace with only lo, no inet sockets */
    int netns_fd;
    int64_t memory_mb;         /* memory cgroup limit (0: 1024); /tmp is a tmpfs of this size */
    int64_t pids_max;          /* 0: 256 */
    int64_t timeout_ms;        /* wall clock; the whole tree is killed after it (0: 300000) */
    const sandbox_sink *log;   /* may be NULL: stdout (fd 1) and stderr (fd 2) as they come */
} sandbox_run_spec;

typedef struct sandbox_run_result {
    int exit_code;             /* the command's exit status, 128+n for signal n, -1 if unknown */
    bool timed_out;            /* killed at timeout_ms */
    bool oom;                  /* the memory cgroup killed something */
    bool pids_exhausted;       /* a fork was refused by the pids limit */
    int64_t duration_ms;
    int64_t max_memory_bytes;
    ml_buf tail;               /* the last 4 KiB of stdout+stderr; owned: sandbox_run_result_free */
} sandbox_run_result;

/* Runs spec->argv in a new sandbox until it exits or times out, draining its output into
 * spec->log meanwhile. ML_OK when *out describes how it ended (any exit code); ML_ERR with
 * err when the sandbox could not be set up ("Sandbox.*: ..."). Thread-safe like
 * sandbox_start (after sandbox_init). *out is zeroed first: free with sandbox_run_result_free. */
int sandbox_run(const sandbox_run_spec *spec, sandbox_run_result *out, char *err, size_t errlen);
void sandbox_run_result_free(sandbox_run_result *r);

#endif
