/* sandbox-int.h — what the sandbox's files share among themselves (sandbox.h is the API).
 *
 * The rooms, top down:
 *   sandbox.c          sandbox_start / sandbox_destroy: an instance's life
 *   sandbox_invoke.c   sandbox_invoke: one event in, one result out
 *   sandbox_run.c      sandbox_run: one command to its end (the build-worker's installers)
 *   sandbox_probe.c    sandbox_init: what this host allows, found by a probe sandbox
 *   sandbox_exchange.c the parent's side of a running instance: channel, log, death
 *   sandbox_plan.c     the launch plan: mount table, rlimits, argv, envp
 *   sandbox_child.c    the cloned child that runs the plan and execs
 *   sandbox_cgroup.c   cgroup v1 memory, pids and cpu: parents, instances, events
 *   sandbox_seccomp.c  the seccomp filter, compiled once
 *   sandbox_host.c     the host facts every instance shares (sb_host)
 *   sandbox_uid.c      per-instance uids, unique across executors on the host
 *   sandbox_fs.c       small files of /proc, /sys and /dev
 *   sandbox_stem.c     stem cells: instances started ahead, specialised at a cold start */
#ifndef ML_SANDBOX_INT_H
#define ML_SANDBOX_INT_H

#include <limits.h>
#include <linux/filter.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include "ml.h"
#include "proto.h"
#include "sandbox.h"

#define SB_LOG_TAIL 4096
#define SB_UID_BASE 1000000u
#define SB_UID_SLOTS 16384u
/* sandbox_run's uids: the same slots (and lock bytes) shown in a range of their own, past
 * the probe's SB_UID_BASE + SB_UID_SLOTS, so a build-worker and an executor that do not
 * share the lock file (two containers) still never give a run and an instance one uid */
#define SB_RUN_UID_BASE (SB_UID_BASE + SB_UID_SLOTS + 1u)
#define SB_MAX_OPS 160    /* 61 used with network, 4 package masks (2026-12); a run's binds
                             take up to SB_MAX_BINDS * (SB_BIND_DEPTH + 3) */
#define SB_ARENA 16384
#define SB_SHELL "/bin/sh"
#define SB_TASK "/var/task"
#define SB_RUNTIME "/var/runtime"
#define SB_NCG 3           /* the instance's cgroups: [0] memory, [1] pids, [2] cpu */
#define SB_MAX_HIDDEN 12
#define SB_HIDDEN_LEN 128
#define SB_MAX_BINDS 8    /* sandbox_run_spec.binds */
#define SB_BIND_DEPTH 6   /* path components of a bind's path */
#define SB_INIT_SCRIPT "\"$@\" & wait $!"   /* pid 1: sh running argv as its one job */

/* ---------------------------------------------------------------- the host (sandbox_host.c) */

typedef struct sb_filter {
    struct sock_filter *insns;
    unsigned short len;
} sb_filter;

/* A top-level directory of the host root (bin, lib, ...): recreated as the same symlink
 * (merged /usr) or bound read-only. */
typedef struct sb_top {
    char name[16];
    char link[64];   /* symlink target, "" if a real directory */
} sb_top;

/* Written by sandbox_init only; read by every launch. */
struct sb_host {
    bool ready;
    unsigned features;
    char cg_mem[PATH_MAX];    /* parent cgroups (ours/<name>), "" when unused */
    char cg_pids[PATH_MAX];
    char cg_cpu[PATH_MAX];
    bool memsw;
    sb_filter filter[2];      /* [0] network allowed, [1] no network */
    char node[PATH_MAX];      /* node binary, "" if not installed */
    char node_prefix[PATH_MAX]; /* its install dir when outside /usr, else "" */
    char root[PATH_MAX];      /* empty directory the instance roots are mounted on */
    sb_top top[8];
    size_t ntop;
    char hidden[SB_MAX_HIDDEN][SB_HIDDEN_LEN]; /* host package dirs masked in every root */
    size_t nhidden;
    atomic_ulong seq;
};
extern struct sb_host sb_host;

void sb_find_node(void);
void sb_find_top_dirs(void);
void sb_find_hidden(void);
int sb_make_root_dir(void);

/* ---------------------------------------------------------------- the launch plan */

typedef enum {
    STEP_NONE = 0, STEP_CLONE, STEP_SETUP, STEP_CGROUP_MEM, STEP_CGROUP_PIDS, STEP_CGROUP_CPU, STEP_NS,
    STEP_MOUNT, STEP_NET, STEP_FDS, STEP_UID, STEP_RLIMIT, STEP_SECCOMP, STEP_EXEC
} sb_step;

typedef enum { OP_MOUNT, OP_MKDIR, OP_SYMLINK, OP_FILE, OP_NODE, OP_PIVOT, OP_HOSTNAME, OP_LO_UP } sb_opkind;

typedef struct sb_op {
    sb_opkind kind;
    const char *src;          /* mount source, symlink target, file content, host device */
    const char *dst;
    const char *fstype;
    const char *data;         /* mount data */
    unsigned long flags;
    size_t src_len;           /* OP_FILE / OP_HOSTNAME: length of src */
    mode_t mode;
    dev_t dev;
} sb_op;

/* Everything the child does, prepared by the parent: the child only runs system calls over it. */
typedef struct sb_plan {
    bool ns, newnet, drop_uid;
    unsigned uid;
    int null_fd, out_fd, err_fd, proto_fd; /* child ends; proto_fd -1 for the probe */
    int cg_fd[SB_NCG];               /* "tasks" of the instance's cgroups, -1 */
    bool own_net;                    /* setns(net_fd) first: the instance's network (netns.h) */
    int net_fd;
    sb_op ops[SB_MAX_OPS];
    size_t nops;
    struct { int res; rlim_t val; } lim[4];
    size_t nlim;
    struct sock_fprog prog;          /* len 0: no seccomp */
    char *const *argv;
    char *const *envp;
    const char *cwd;
    char arena[SB_ARENA];
    size_t arena_used;
    bool arena_full;
    /* written by the child, read by the parent after the vfork-style clone returns */
    volatile int fail_step;
    volatile int fail_errno;
    volatile int fail_op;            /* index into ops, -1 */
} sb_plan;

typedef struct sb_launch {
    const char *code_dir;     /* NULL: none */
    const char *runtime_dir;  /* host dir shown at /var/runtime, NULL: none */
    const char *interp_prefix; /* an interpreter's install dir outside /usr, shown at the same
                                  path; NULL: none */
    bool network;
    bool own_net;             /* network: join net_fd (netns.h) instead of the host's */
    bool caller_net;          /* own_net's namespace is the caller's (sandbox_run): no
                                 resolv.conf (netns.h's is for its own namespaces) */
    int net_fd;
    bool keep_packages;       /* do not mask the host package dirs (sandbox_run) */
    const sandbox_bind *binds; /* checked by the caller (sandbox_run.c) */
    size_t nbinds;
    int64_t memory_mb, pids_max;
    unsigned uid;
    bool rlimit_as;
    int cg_fd[SB_NCG];
} sb_launch;

void sb_plan_base(sb_plan *p, const sb_launch *l, unsigned features);
char **sb_build_env(sb_plan *p, const sandbox_spec *s, bool ns, const char *runtime_dir,
                    char *err, size_t errlen);
char **sb_build_argv(sb_plan *p, const sandbox_spec *s, bool ns, const char *runtime_dir);
bool sb_interp_prefix(const char *interpreter, char *out, size_t len);
int sb_instance_name(char *out, size_t len);
/* A zeroed instance with every fd -1, no uid slot; owned by the caller: sandbox_destroy. */
sandbox_instance *sb_instance_alloc(int64_t memory_mb, bool ns);
pid_t sb_clone(sb_plan *p, int *pidfd, char *err, size_t errlen);
int sb_check_spec(const sandbox_spec *s, char *err, size_t errlen);
int sb_start_handshake(sandbox_instance *in, proto_writer *w, int64_t deadline, char *err,
                       size_t errlen);
void sb_find_runtime_pid(sandbox_instance *in);
/* A stem (sandbox.c; owned by the caller: sandbox_destroy), and an instance's cpu weight
 * (sandbox_cgroup.c: a stem idles at the lowest, a specialised one gets the default back). */
int sb_stem_launch(const sandbox_spec *spec, int64_t cpu_shares, int64_t deadline,
                   sandbox_instance **out, char *err, size_t errlen);
int sb_cgroup_cpu_shares(sandbox_instance *in, int64_t shares, char *err, size_t errlen);

/* ---------------------------------------------------------------- an instance */

typedef struct sb_ring {
    char data[SB_LOG_TAIL];
    size_t head, len;      /* oldest byte at head */
} sb_ring;

struct sandbox_instance {
    pid_t pid;               /* host pid of the instance's init */
    int pidfd;               /* -1 when the kernel has none */
    int proto_fd;            /* our end, non-blocking */
    int log_fd[2];           /* our ends of its stdout and stderr pipes, non-blocking, -1 */
    bool ns, dead, reaped;
    int wait_status;         /* -1 unknown */
    int uid_slot;
    unsigned uid;
    int64_t memory_mb;
    int64_t timeout_ms;      /* spec->timeout_s as a cap on every deadline, 0: none */
    char cg[SB_NCG][PATH_MAX]; /* the instance's memory, pids and cpu cgroups, "" if none */
    bool cpu_weighed;        /* counted in the cpu parent's weight (sandbox_cgroup.c) */
    int usage_fd;            /* memory.max_usage_in_bytes, -1 */
    pid_t runtime_pid;       /* host pid of the runtime, for VmHWM without cgroups */
    char *function_name, *function_version;
    sb_ring log;
    const sandbox_sink *flog;       /* the current invocation's log while one runs (or starts), NULL */
    int64_t init_us;         /* sandbox_start until ready */
    proto_reader rd;
};

typedef enum { EX_MSG, EX_DEAD, EX_TIMEOUT, EX_BROKEN } sb_outcome;

void sb_ring_take(sb_ring *r, ml_buf *out);
void sb_log_drain(sandbox_instance *in);
int64_t sb_now_us(void);
void sb_kill(sandbox_instance *in);
sb_outcome sb_exchange(sandbox_instance *in, proto_writer *w, int64_t deadline_ms,
                       char *why, size_t whylen);
void sb_settle(sandbox_instance *in);
void sb_exit_text(const sandbox_instance *in, char *out, size_t len);
void sb_header_type(const proto_reader *r, char *out, size_t len);

/* ---------------------------------------------------------------- cgroups, seccomp, uids */

void sb_cgroup_kill_tasks(const char *dir);
int64_t sb_pid_start_time(pid_t pid);
int sb_cgroup_parent(const char *controller, const char *limit_file, const char *limit,
                     const char *name, char *out, size_t len, char *why, size_t whylen);
int sb_cgroup_create(sandbox_instance *in, int64_t memory_mb, int64_t pids_max, const char *name,
                     int cg_fd[SB_NCG], char *err, size_t errlen);
int sb_cgroup_cpu_limit(sandbox_instance *in, char *err, size_t errlen);
void sb_cgroup_cpu_unlimit(sandbox_instance *in);
void sb_cgroup_remove(sandbox_instance *in);
int64_t sb_oom_kills(const sandbox_instance *in);
int64_t sb_pids_refusals(const sandbox_instance *in);

int sb_seccomp_build(bool network, sb_filter *out, char *why, size_t whylen);

void sb_uid_lock_open(const char *base);
bool sb_uid_host_wide(void);
int sb_uid_alloc(unsigned *uid);
void sb_uid_free(int slot);

/* ---------------------------------------------------------------- small files (sandbox_fs.c) */

int sb_errf(char *err, size_t len, const char *fmt, ...) ML_PRINTF(3, 4);
int sb_write_file(const char *path, const char *s);
int sb_read_file(const char *path, char *buf, size_t len);
int64_t sb_read_int_at(int fd);
int sb_open_null(void);

#endif
