/* sandbox.c — function instances in namespaces + cgroups + seccomp (see sandbox.h and
 * docs/sandbox.md).
 *
 * Launch: the parent prepares everything (paths, mount table, argv/envp, seccomp program, open
 * cgroup files) in a plan, then clone(CLONE_VM|CLONE_VFORK|CLONE_NEW*) like posix_spawn: the
 * child only runs system calls over the plan (no allocation, no locks, no page-table copy of
 * the executor) and execs. Its pid 1 is /bin/sh running the runtime as its only job: the shell
 * reaps orphans, relays the runtime's exit status, and holds none of the executor's memory. */
#include "sandbox.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "proto.h"

#define SB_LOG_TAIL 4096
#define SB_NPROC_MARGIN 8   /* RLIMIT_NPROC past pids.max when the pids cgroup enforces it */
#define SB_UID_BASE 1000000u
#define SB_UID_SLOTS 16384u
#define SB_STACK_SIZE (256u * 1024u)
#define SB_MAX_OPS 64
#define SB_ARENA 16384
#define SB_MAX_ENV 1024
#define SB_PYTHON "/usr/bin/python3"
#define SB_SHELL "/bin/sh"
#define SB_TASK "/var/task"
#define SB_RUNTIME "/var/runtime"
#define SB_INIT_SCRIPT "\"$@\" & wait $!"
#define SB_CLONE_NS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)

/* Child-side code runs on a borrowed address space (CLONE_VM): keep ASan's bookkeeping out. */
#define SB_CHILD __attribute__((no_sanitize_address))

/* ---------------------------------------------------------------- shared state */

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

static struct {
    bool ready;
    unsigned features;
    char cg_mem[PATH_MAX];    /* parent cgroups (ours/<name>), "" when unused */
    char cg_pids[PATH_MAX];
    bool memsw;
    sb_filter filter[2];      /* [0] network allowed, [1] no network */
    char node[PATH_MAX];      /* node binary, "" if not installed */
    char node_prefix[PATH_MAX]; /* its install dir when outside /usr, else "" */
    char root[PATH_MAX];      /* empty directory the instance roots are mounted on */
    sb_top top[8];
    size_t ntop;
    pthread_mutex_t uid_lock;
    uint64_t uid_used[SB_UID_SLOTS / 64];
    int uid_lock_fd;          /* byte i OFD-locked while uid slot i is ours, -1 if none */
    atomic_ulong seq;
} sb = { .uid_lock = PTHREAD_MUTEX_INITIALIZER, .uid_lock_fd = -1 };

/* ---------------------------------------------------------------- the launch plan */

typedef enum {
    STEP_NONE = 0, STEP_CLONE, STEP_SETUP, STEP_CGROUP_MEM, STEP_CGROUP_PIDS, STEP_NS,
    STEP_MOUNT, STEP_NET, STEP_FDS, STEP_UID, STEP_RLIMIT, STEP_SECCOMP, STEP_EXEC
} sb_step;

static const char *const step_names[] = {
    "none", "clone", "setup", "cgroup memory", "cgroup pids", "cgroup namespace",
    "mount", "network/hostname", "fds", "uid", "rlimit", "seccomp", "exec"
};

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

typedef struct sb_plan {
    bool ns, newnet, drop_uid;
    unsigned uid;
    int null_fd, log_fd, proto_fd;   /* child ends; proto_fd -1 for the probe */
    int cg_fd[2];                    /* "tasks" of the instance's memory and pids cgroups, -1 */
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

/* Formats a string into the plan's arena; NULL (and arena_full) when it does not fit. */
static const char *plan_str(sb_plan *p, const char *fmt, ...) ML_PRINTF(2, 3);
static const char *plan_str(sb_plan *p, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(p->arena) - p->arena_used;
    char *dst = p->arena + p->arena_used;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= room) {
        p->arena_full = true;
        return NULL;
    }
    p->arena_used += (size_t)n + 1;
    return dst;
}

static sb_op *plan_op(sb_plan *p, sb_opkind kind, const char *dst)
{
    sb_op *o;

    if (p->nops == SB_MAX_OPS || !dst) {
        p->arena_full = true;
        return NULL;
    }
    o = &p->ops[p->nops++];
    memset(o, 0, sizeof(*o));
    o->kind = kind;
    o->dst = dst;
    return o;
}

static void plan_mount(sb_plan *p, const char *src, const char *dst, const char *fstype,
                       unsigned long flags, const char *data)
{
    sb_op *o = plan_op(p, OP_MOUNT, dst);

    if (o) {
        o->src = src;
        o->fstype = fstype;
        o->flags = flags;
        o->data = data;
    }
}

/* Read-only bind of a host path (directory or file) at root-relative rel. */
static void plan_bind_ro(sb_plan *p, const char *host, const char *rel, bool is_file)
{
    const char *dst = plan_str(p, "%s%s", sb.root, rel);
    sb_op *o;

    if (is_file) {
        if ((o = plan_op(p, OP_FILE, dst)))
            o->src = "", o->mode = 0444;
    } else if ((o = plan_op(p, OP_MKDIR, dst))) {
        o->mode = 0755;
    }
    plan_mount(p, host, dst, NULL, MS_BIND, NULL);
    plan_mount(p, NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV, NULL);
}

static void plan_file(sb_plan *p, const char *rel, const char *content)
{
    sb_op *o = plan_op(p, OP_FILE, plan_str(p, "%s%s", sb.root, rel));

    if (o) {
        o->src = content;
        o->src_len = content ? strlen(content) : 0;
        o->mode = 0444;
        if (!content)
            p->arena_full = true;
    }
}

static void plan_mkdir(sb_plan *p, const char *rel, mode_t mode)
{
    sb_op *o = plan_op(p, OP_MKDIR, plan_str(p, "%s%s", sb.root, rel));

    if (o)
        o->mode = mode;
}

static void plan_symlink(sb_plan *p, const char *target, const char *rel)
{
    sb_op *o = plan_op(p, OP_SYMLINK, plan_str(p, "%s%s", sb.root, rel));

    if (o)
        o->src = target;
}

static void plan_node(sb_plan *p, const char *name, unsigned major, unsigned minor)
{
    sb_op *o = plan_op(p, OP_NODE, plan_str(p, "%s/dev/%s", sb.root, name));

    if (o) {
        o->src = plan_str(p, "/dev/%s", name);
        o->mode = 0666;
        o->dev = makedev(major, minor);
    }
}

/* Binds a host directory outside /usr at the same path (e.g. a node install in /opt). */
static void plan_bind_same_path(sb_plan *p, const char *host)
{
    char part[PATH_MAX];
    size_t n = strlen(host);

    for (size_t i = 1; i < n; i++) {
        if (host[i] != '/' || i >= sizeof(part))
            continue;
        memcpy(part, host, i);
        part[i] = '\0';
        plan_mkdir(p, plan_str(p, "%s", part), 0755);
    }
    plan_bind_ro(p, host, host, false);
}

typedef struct sb_launch {
    const char *code_dir;     /* NULL: none */
    const char *runtime_dir;  /* host dir shown at /var/runtime, NULL: none */
    bool network;
    int64_t memory_mb, pids_max;
    unsigned uid;
    bool rlimit_as;
    int cg_fd[2];
} sb_launch;

/* The mount table of an instance root (namespaces on). */
static void plan_root(sb_plan *p, const sb_launch *l)
{
    const char *etc_passwd = plan_str(p,
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "sbx_user:x:%u:%u:minilambda function:/tmp:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", l->uid, l->uid);
    const char *etc_group = plan_str(p, "root:x:0:\nsbx_user:x:%u:\nnogroup:x:65534:\n", l->uid);
    static const char *const dirs[] = { "/usr", "/etc", "/etc/ssl", "/dev", "/proc", "/tmp",
                                        "/var", SB_TASK, SB_RUNTIME };
    static const struct { const char *name; unsigned major, minor; } nodes[] = {
        { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }
    };
    struct stat st;
    sb_op *o;

    plan_mount(p, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    plan_mount(p, "tmpfs", sb.root, "tmpfs", MS_NOSUID, "size=1m,nr_inodes=512,mode=0755");
    for (size_t i = 0; i < ML_ARRAY_LEN(dirs); i++)
        plan_mkdir(p, dirs[i], 0755);
    for (size_t i = 0; i < sb.ntop; i++) {
        const char *rel = plan_str(p, "/%s", sb.top[i].name);
        if (sb.top[i].link[0])
            plan_symlink(p, sb.top[i].link, rel);
        else
            plan_bind_ro(p, plan_str(p, "/%s", sb.top[i].name), rel, false);
    }
    plan_bind_ro(p, "/usr", "/usr", false);
    if (sb.node_prefix[0])
        plan_bind_same_path(p, sb.node_prefix);
    plan_file(p, "/etc/passwd", etc_passwd);
    plan_file(p, "/etc/group", etc_group);
    plan_file(p, "/etc/hosts", "127.0.0.1\tlocalhost\n::1\tlocalhost\n");
    plan_file(p, "/etc/hostname", "minilambda\n");
    plan_file(p, "/etc/nsswitch.conf", "passwd: files\ngroup: files\nhosts: files dns\n");
    if (stat("/etc/ld.so.cache", &st) == 0)
        plan_bind_ro(p, "/etc/ld.so.cache", "/etc/ld.so.cache", true);
    if (stat("/etc/ssl/certs", &st) == 0)
        plan_bind_ro(p, "/etc/ssl/certs", "/etc/ssl/certs", false);
    if (stat("/etc/alternatives", &st) == 0)   /* Debian's /usr/bin/awk -> /etc/alternatives/awk */
        plan_bind_ro(p, "/etc/alternatives", "/etc/alternatives", false);
    if (l->network && stat("/etc/resolv.conf", &st) == 0)
        plan_bind_ro(p, "/etc/resolv.conf", "/etc/resolv.conf", true);
    if (l->code_dir)
        plan_bind_ro(p, l->code_dir, SB_TASK, false);
    if (l->runtime_dir)
        plan_bind_ro(p, l->runtime_dir, SB_RUNTIME, false);
    plan_mount(p, "tmpfs", plan_str(p, "%s/tmp", sb.root), "tmpfs", MS_NOSUID | MS_NODEV,
               plan_str(p, "size=%" PRId64 "m,mode=1777", l->memory_mb));
    for (size_t i = 0; i < ML_ARRAY_LEN(nodes); i++)
        plan_node(p, nodes[i].name, nodes[i].major, nodes[i].minor);
    plan_symlink(p, "/proc/self/fd", "/dev/fd");
    plan_symlink(p, "/proc/self/fd/0", "/dev/stdin");
    plan_symlink(p, "/proc/self/fd/1", "/dev/stdout");
    plan_symlink(p, "/proc/self/fd/2", "/dev/stderr");
    plan_symlink(p, "/tmp", "/dev/shm");
    plan_mount(p, "proc", plan_str(p, "%s/proc", sb.root), "proc",
               MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    plan_mount(p, NULL, sb.root, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, NULL);
    plan_op(p, OP_PIVOT, sb.root);
    if ((o = plan_op(p, OP_HOSTNAME, "hostname")))
        o->src = "minilambda", o->src_len = strlen("minilambda");
    if (!l->network)
        plan_op(p, OP_LO_UP, "lo");
}

static void plan_limits(sb_plan *p, const sb_launch *l)
{
    p->lim[p->nlim].res = RLIMIT_NOFILE, p->lim[p->nlim++].val = 1024;
    p->lim[p->nlim].res = RLIMIT_CORE, p->lim[p->nlim++].val = 0;
    if (l->rlimit_as)
        p->lim[p->nlim].res = RLIMIT_AS, p->lim[p->nlim++].val = (rlim_t)l->memory_mb << 20;
    /* RLIMIT_NPROC counts per real uid and is ignored for root: only with a dropped uid. Under
     * a pids cgroup it is a backstop just past pids.max, so the cgroup refuses first and its
     * pids.events records the refusal (the "pids" kill reason); without one it is the limit. */
    if (p->drop_uid) {
        p->lim[p->nlim].res = RLIMIT_NPROC;
        p->lim[p->nlim++].val = (rlim_t)(l->pids_max + (l->cg_fd[1] >= 0 ? SB_NPROC_MARGIN : 0));
    }
}

/* ---------------------------------------------------------------- the child */

SB_CHILD static void child_fail(sb_plan *p, int step, int op)
{
    p->fail_errno = errno;
    p->fail_op = op;
    p->fail_step = step;
    _exit(126);
}

SB_CHILD static int child_write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

SB_CHILD static int child_file(const sb_op *o)
{
    int fd = open(o->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, o->mode);
    int rc;

    if (fd < 0)
        return -1;
    rc = child_write_all(fd, o->src, o->src_len);
    close(fd);
    return rc;
}

/* A device node; where mknod is not allowed, a bind of the host's node. */
SB_CHILD static int child_node(const sb_op *o)
{
    int fd;

    if (mknod(o->dst, S_IFCHR | o->mode, o->dev) == 0)
        return 0;
    fd = open(o->dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0)
        return -1;
    close(fd);
    return mount(o->src, o->dst, NULL, MS_BIND, NULL);
}

SB_CHILD static int child_pivot(const sb_op *o)
{
    if (chdir(o->dst) != 0 || syscall(SYS_pivot_root, ".", ".") != 0)
        return -1;
    /* The old root is now stacked on "/": detach it so nothing of the host stays reachable. */
    if (umount2(".", MNT_DETACH) != 0)
        return -1;
    return chdir("/");
}

SB_CHILD static int child_lo_up(void)
{
    struct ifreq ifr;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = -1;

    if (s < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP;
        rc = ioctl(s, SIOCSIFFLAGS, &ifr);
    }
    close(s);
    return rc;
}

SB_CHILD static int child_op(const sb_op *o)
{
    switch (o->kind) {
    case OP_MOUNT:
        return mount(o->src, o->dst, o->fstype, o->flags, o->data);
    case OP_MKDIR:
        return mkdir(o->dst, o->mode) == 0 || errno == EEXIST ? 0 : -1;
    case OP_SYMLINK:
        return symlink(o->src, o->dst);
    case OP_FILE:
        return child_file(o);
    case OP_NODE:
        return child_node(o);
    case OP_PIVOT:
        return child_pivot(o);
    case OP_HOSTNAME:
        return sethostname(o->src, o->src_len);
    case OP_LO_UP:
        return child_lo_up();
    }
    return -1;
}

/* fds 0 /dev/null, 1+2 the log pipe, 3 the protocol socket; everything else closed. */
SB_CHILD static int child_fds(const sb_plan *p)
{
    int in = fcntl(p->null_fd, F_DUPFD, 10);
    int log = fcntl(p->log_fd, F_DUPFD, 10);
    int proto = p->proto_fd >= 0 ? fcntl(p->proto_fd, F_DUPFD, 10) : -1;

    if (in < 0 || log < 0 || (p->proto_fd >= 0 && proto < 0))
        return -1;
    if (dup2(in, 0) < 0 || dup2(log, 1) < 0 || dup2(log, 2) < 0)
        return -1;
    if (proto >= 0 && dup2(proto, 3) < 0)
        return -1;
    return close_range(proto >= 0 ? 4 : 3, ~0U, 0);
}

SB_CHILD static int child_creds(const sb_plan *p)
{
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct data[2];

    /* Empty bounding set: nothing exec'd can ever regain a capability. */
    for (int cap = 0; cap <= 63; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL)
            break;
    /* Raw syscalls: glibc's wrappers would try to signal the parent's threads (CLONE_VM). */
    if (p->drop_uid &&
        (syscall(SYS_setgroups, 0, NULL) != 0 ||
         syscall(SYS_setresgid, p->uid, p->uid, p->uid) != 0 ||
         syscall(SYS_setresuid, p->uid, p->uid, p->uid) != 0))
        return -1;
    memset(data, 0, sizeof(data));
    if (syscall(SYS_capset, &hdr, data) != 0 && p->drop_uid)
        return -1;
    return 0;
}

SB_CHILD static int child_main(void *arg)
{
    sb_plan *p = arg;
    struct sigaction dfl;
    sigset_t none;

    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        (void)sigaction(sig, &dfl, NULL);   /* invalid ones fail harmlessly */
    umask(0);
    if (setsid() < 0)
        child_fail(p, STEP_SETUP, -1);
    for (int i = 0; i < 2; i++)
        /* "0" into tasks: this thread moves itself, which skips the cgroup_threadgroup_rwsem
         * (an RCU grace period, ~10 ms) that writing a pid or using cgroup.procs takes. */
        if (p->cg_fd[i] >= 0 && write(p->cg_fd[i], "0", 1) != 1)
            child_fail(p, i == 0 ? STEP_CGROUP_MEM : STEP_CGROUP_PIDS, -1);
    if (p->ns && unshare(CLONE_NEWCGROUP) != 0)
        child_fail(p, STEP_NS, -1);
    for (size_t i = 0; i < p->nops; i++)
        if (child_op(&p->ops[i]) != 0)
            child_fail(p, p->ops[i].kind == OP_LO_UP || p->ops[i].kind == OP_HOSTNAME
                              ? STEP_NET : STEP_MOUNT, (int)i);
    if (child_fds(p) != 0)
        child_fail(p, STEP_FDS, -1);
    if (child_creds(p) != 0)
        child_fail(p, STEP_UID, -1);
    for (size_t i = 0; i < p->nlim; i++) {
        struct rlimit rl = { p->lim[i].val, p->lim[i].val };
        if (setrlimit((__rlimit_resource_t)p->lim[i].res, &rl) != 0)
            child_fail(p, STEP_RLIMIT, -1);
    }
    umask(022);
    if (chdir(p->cwd) != 0)
        child_fail(p, STEP_SETUP, -1);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        child_fail(p, STEP_SECCOMP, -1);
    if (p->prog.len && syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &p->prog) != 0)
        child_fail(p, STEP_SECCOMP, -1);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execve(p->argv[0], p->argv, p->envp);
    child_fail(p, STEP_EXEC, -1);
    return 126;
}

/* Starts the plan. Returns the pid (and *pidfd, -1 if the kernel has none) or -1 with err. */
static pid_t sb_clone(sb_plan *p, int *pidfd, char *err, size_t errlen)
{
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    char *stack = malloc(SB_STACK_SIZE);
    sigset_t all, old;
    pid_t pid;
    int saved;

    *pidfd = -1;
    if (!stack) {
        ml_snprintf(err, errlen, "Sandbox.SetupError: out of memory");
        return -1;
    }
    if (p->ns)
        flags |= SB_CLONE_NS | (p->newnet ? CLONE_NEWNET : 0);
    p->fail_step = STEP_NONE;
    p->fail_op = -1;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(child_main, stack + SB_STACK_SIZE, flags | CLONE_PIDFD, p, pidfd);
    if (pid < 0 && errno == EINVAL) {   /* kernels before 5.2: no pidfd */
        *pidfd = -1;
        pid = clone(child_main, stack + SB_STACK_SIZE, flags, p);
    }
    saved = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    free(stack);
    if (pid < 0) {
        p->fail_step = STEP_CLONE;
        p->fail_errno = saved;
        ml_snprintf(err, errlen, "Sandbox.SetupError: clone: %s", strerror(saved));
        return -1;
    }
    if (p->fail_step != STEP_NONE) {
        int op = p->fail_op;
        ml_snprintf(err, errlen, "Sandbox.SetupError: %s%s%s: %s", step_names[p->fail_step],
                    op >= 0 ? " " : "", op >= 0 ? p->ops[op].dst : "", strerror(p->fail_errno));
        while (waitpid(pid, NULL, __WALL) < 0 && errno == EINTR)
            ;
        if (*pidfd >= 0)
            close(*pidfd);
        *pidfd = -1;
        return -1;
    }
    return pid;
}

/* ---------------------------------------------------------------- small helpers */

/* Formats a clear error into err and returns ML_ERR. */
static int errf(char *err, size_t len, const char *fmt, ...) ML_PRINTF(3, 4);
static int errf(char *err, size_t len, const char *fmt, ...)
{
    va_list ap;

    if (err && len) {
        va_start(ap, fmt);
        vsnprintf(err, len, fmt, ap);
        va_end(ap);
    }
    return ML_ERR;
}

static int write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    size_t n = strlen(s);
    ssize_t w;

    if (fd < 0)
        return ML_ERR;
    w = write(fd, s, n);
    close(fd);
    return w == (ssize_t)n ? ML_OK : ML_ERR;
}

/* Reads up to len-1 bytes of a small file, NUL-terminated. */
static int read_file(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t r;

    if (fd < 0)
        return ML_ERR;
    r = read(fd, buf, len - 1);
    close(fd);
    if (r < 0)
        return ML_ERR;
    buf[r] = '\0';
    return ML_OK;
}

static int64_t read_int_at(int fd)
{
    char buf[32];
    ssize_t r = pread(fd, buf, sizeof(buf) - 1, 0);
    int64_t v = -1;

    if (r <= 0)
        return -1;
    buf[r] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    return ml_parse_int64(buf, 0, INT64_MAX, &v) == ML_OK ? v : -1;
}

/* ---------------------------------------------------------------- uids */

/* Claims byte `slot` of the host-wide lock file (other executors on this host skip it); the
 * kernel drops the lock if this process dies. true without a lock file (in-process only). */
static bool uid_claim(int slot, short type)
{
    struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = slot, .l_len = 1 };

    return sb.uid_lock_fd < 0 || fcntl(sb.uid_lock_fd, F_OFD_SETLK, &fl) == 0;
}

/* A uid no other live instance uses, in this process or another executor on the host. */
static int uid_alloc(unsigned *uid)
{
    int slot = -1;

    pthread_mutex_lock(&sb.uid_lock);
    for (unsigned i = 0; i < SB_UID_SLOTS && slot < 0; i++) {
        uint64_t bit = UINT64_C(1) << (i % 64);
        if (sb.uid_used[i / 64] & bit || !uid_claim((int)i, F_WRLCK))
            continue;
        sb.uid_used[i / 64] |= bit;
        slot = (int)i;
    }
    pthread_mutex_unlock(&sb.uid_lock);
    if (slot >= 0)
        *uid = SB_UID_BASE + (unsigned)slot;
    return slot;
}

static void uid_free(int slot)
{
    if (slot < 0)
        return;
    pthread_mutex_lock(&sb.uid_lock);
    (void)uid_claim(slot, F_UNLCK);
    sb.uid_used[slot / 64] &= ~(UINT64_C(1) << (slot % 64));
    pthread_mutex_unlock(&sb.uid_lock);
}

/* ---------------------------------------------------------------- cgroups */

/* Our own cgroup path for a v1 controller from /proc/self/cgroup ("4:memory:/a/b"), without
 * the leading slash ("" for the root). */
static int own_cgroup(const char *controller, char *out, size_t len)
{
    char buf[4096], *save = NULL;

    if (read_file("/proc/self/cgroup", buf, sizeof(buf)) != ML_OK)
        return ML_ERR;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *list = strchr(line, ':'), *path, *save2 = NULL;
        if (!list || !(path = strchr(list + 1, ':')))
            continue;
        *path++ = '\0';
        for (char *c = strtok_r(list + 1, ",", &save2); c; c = strtok_r(NULL, ",", &save2))
            if (strcmp(c, controller) == 0)
                return ml_snprintf(out, len, "%s", path + strspn(path, "/"));
    }
    return ML_ERR;
}

/* SIGKILLs every task of a cgroup until it is empty (tasks can fork meanwhile; pids.max
 * bounds how many). */
static void cgroup_kill_tasks(const char *dir)
{
    for (int round = 0; round < 100; round++) {
        char path[PATH_MAX], buf[8192], *save = NULL;
        bool any = false;

        if (ml_snprintf(path, sizeof(path), "%s/cgroup.procs", dir) != ML_OK ||
            read_file(path, buf, sizeof(buf)) != ML_OK)
            return;
        for (char *t = strtok_r(buf, "\n", &save); t; t = strtok_r(NULL, "\n", &save)) {
            int64_t pid;
            if (ml_parse_int64(t, 1, INT32_MAX, &pid) == ML_OK && kill((pid_t)pid, SIGKILL) == 0)
                any = true;
        }
        if (!any)
            return;
        ml_sleep_ms(1);
    }
}

/* Removes what executors that are gone left behind ("i<pid>-<seq>", "probe-<pid>" with that
 * pid dead): their instances' processes are killed first. */
static void cgroup_sweep(const char *parent)
{
    DIR *d = opendir(parent);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        const char *name = e->d_name;
        size_t skip = name[0] == 'i' ? 1 : strncmp(name, "probe-", 6) == 0 ? 6 : 0;
        size_t n = skip ? strcspn(name + skip, "-") : 0;
        int64_t pid = 0;
        char num[32], path[PATH_MAX];

        if (n == 0 || n >= sizeof(num))
            continue;
        memcpy(num, name + skip, n);
        num[n] = '\0';
        if (ml_parse_int64(num, 1, INT32_MAX, &pid) != ML_OK || pid == getpid() ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH ||
            ml_snprintf(path, sizeof(path), "%s/%s", parent, name) != ML_OK)
            continue;
        cgroup_kill_tasks(path);
        for (int tries = 0; rmdir(path) != 0 && errno == EBUSY && tries < 100; tries++)
            ml_sleep_ms(5);
    }
    closedir(d);
}

/* Prepares <mount>/<own cgroup>/<name> for one controller and checks we can create children
 * with limits in it. */
static int cgroup_parent(const char *controller, const char *limit_file, const char *limit,
                         const char *name, char *out, size_t len, char *why, size_t whylen)
{
    char own[PATH_MAX], probe[PATH_MAX], file[PATH_MAX];
    int rc = ML_ERR;

    if (own_cgroup(controller, own, sizeof(own)) != ML_OK) {
        ml_snprintf(why, whylen, "no v1 %s controller in /proc/self/cgroup", controller);
        return ML_ERR;
    }
    if (ml_snprintf(out, len, "/sys/fs/cgroup/%s/%s%s%s", controller, own, own[0] ? "/" : "",
                    name) != ML_OK ||
        ml_snprintf(probe, sizeof(probe), "%s/probe-%d", out, (int)getpid()) != ML_OK ||
        ml_snprintf(file, sizeof(file), "%s/%s", probe, limit_file) != ML_OK)
        return ML_ERR;
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        ml_snprintf(why, whylen, "mkdir %s: %s", out, strerror(errno));
        return ML_ERR;
    }
    if (mkdir(probe, 0755) != 0 && errno != EEXIST) {
        ml_snprintf(why, whylen, "mkdir %s: %s", probe, strerror(errno));
        return ML_ERR;
    }
    if (write_file(file, limit) == ML_OK)
        rc = ML_OK;
    else
        ml_snprintf(why, whylen, "write %s: %s", file, strerror(errno));
    (void)rmdir(probe);
    if (rc == ML_OK)
        cgroup_sweep(out);
    return rc;
}

/* ---------------------------------------------------------------- seccomp */

/* Denied with EPERM for every instance: kernel attack surface a function never needs. */
static const char *const denied_syscalls[] = {
    "mount", "umount", "umount2", "pivot_root", "chroot", "ptrace", "process_vm_readv",
    "process_vm_writev", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "create_module", "bpf", "perf_event_open", "keyctl", "add_key",
    "request_key", "unshare", "setns", "reboot", "swapon", "swapoff", "acct", "iopl", "ioperm",
    "userfaultfd", "open_by_handle_at", "name_to_handle_at", "clock_settime", "clock_adjtime",
    "settimeofday", "adjtimex", "stime", "sethostname", "setdomainname", "quotactl", "syslog",
    "lookup_dcookie", "uselib", "vm86", "vm86old", "_sysctl", "ustat", "sysfs", "nfsservctl",
    "fanotify_init", "kcmp", "pidfd_getfd", "move_mount", "open_tree", "fsopen", "fsconfig",
    "fsmount", "fspick", "mount_setattr", "get_kernel_syms", "query_module",
};

static int seccomp_deny(scmp_filter_ctx ctx, const char *name, uint32_t action)
{
    int nr = seccomp_syscall_resolve_name(name);

    if (nr == __NR_SCMP_ERROR)
        return ML_OK;   /* not a syscall on this architecture */
    return seccomp_rule_add(ctx, action, nr, 0) == 0 ? ML_OK : ML_ERR;
}

static int seccomp_rules(scmp_filter_ctx ctx, bool network)
{
    static const uint64_t ns_flags[] = { CLONE_NEWNS, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
                                         CLONE_NEWIPC, CLONE_NEWUTS, CLONE_NEWCGROUP };
    for (size_t i = 0; i < ML_ARRAY_LEN(denied_syscalls); i++)
        if (seccomp_deny(ctx, denied_syscalls[i], SCMP_ACT_ERRNO(EPERM)) != ML_OK)
            return ML_ERR;
    /* io_uring bypasses this filter for the syscalls it performs; clone3's flags cannot be
     * inspected: ENOSYS makes libc fall back to clone, whose flags can. */
    if (seccomp_deny(ctx, "io_uring_setup", SCMP_ACT_ERRNO(ENOSYS)) != ML_OK ||
        seccomp_deny(ctx, "io_uring_enter", SCMP_ACT_ERRNO(ENOSYS)) != ML_OK ||
        seccomp_deny(ctx, "io_uring_register", SCMP_ACT_ERRNO(ENOSYS)) != ML_OK ||
        seccomp_deny(ctx, "clone3", SCMP_ACT_ERRNO(ENOSYS)) != ML_OK)
        return ML_ERR;
    for (size_t i = 0; i < ML_ARRAY_LEN(ns_flags); i++)
        if (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                             SCMP_A0(SCMP_CMP_MASKED_EQ, ns_flags[i], ns_flags[i])) != 0)
            return ML_ERR;
    if (!network &&
        (seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                          SCMP_A0(SCMP_CMP_EQ, AF_INET)) != 0 ||
         seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                          SCMP_A0(SCMP_CMP_EQ, AF_INET6)) != 0 ||
         seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EACCES), SCMP_SYS(socket), 1,
                          SCMP_A0(SCMP_CMP_EQ, AF_PACKET)) != 0))
        return ML_ERR;
    return ML_OK;
}

/* Compiles the filter with libseccomp once, exported as raw BPF the child can load without
 * allocating. */
static int seccomp_build(bool network, sb_filter *out, char *why, size_t whylen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    int fd = -1, rc = ML_ERR;
    off_t size;

    if (!ctx) {
        ml_snprintf(why, whylen, "seccomp_init failed");
        return ML_ERR;
    }
    if (seccomp_rules(ctx, network) != ML_OK) {
        ml_snprintf(why, whylen, "seccomp rules rejected by libseccomp");
        goto out;
    }
    fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0 || seccomp_export_bpf(ctx, fd) != 0 || (size = lseek(fd, 0, SEEK_END)) <= 0 ||
        size % (off_t)sizeof(struct sock_filter) != 0 ||
        size / (off_t)sizeof(struct sock_filter) > USHRT_MAX) {
        ml_snprintf(why, whylen, "exporting the seccomp program failed");
        goto out;
    }
    out->insns = malloc((size_t)size);
    if (!out->insns || pread(fd, out->insns, (size_t)size, 0) != size) {
        free(out->insns);
        out->insns = NULL;
        ml_snprintf(why, whylen, "reading the seccomp program failed");
        goto out;
    }
    out->len = (unsigned short)(size / (off_t)sizeof(struct sock_filter));
    rc = ML_OK;
out:
    if (fd >= 0)
        close(fd);
    seccomp_release(ctx);
    return rc;
}

/* ---------------------------------------------------------------- init and probe */

static void find_node(void)
{
    static const char *const candidates[] = { "/usr/bin/node", "/usr/local/bin/node",
                                               "/usr/bin/nodejs" };
    const char *path = getenv("PATH");
    char cand[PATH_MAX], real[PATH_MAX];

    sb.node[0] = sb.node_prefix[0] = '\0';
    for (size_t i = 0; i < ML_ARRAY_LEN(candidates) && !sb.node[0]; i++)
        if (access(candidates[i], X_OK) == 0 && realpath(candidates[i], real))
            ml_strlcpy(sb.node, real, sizeof(sb.node));
    while (!sb.node[0] && path && *path) {
        size_t n = strcspn(path, ":");
        if (n && ml_snprintf(cand, sizeof(cand), "%.*s/node", (int)n, path) == ML_OK &&
            access(cand, X_OK) == 0 && realpath(cand, real))
            ml_strlcpy(sb.node, real, sizeof(sb.node));
        path += n + (path[n] == ':');
    }
    if (sb.node[0] && strncmp(sb.node, "/usr/", 5) != 0) {
        /* e.g. /opt/node-v20/bin/node: show /opt/node-v20 at the same path */
        char *slash;
        ml_strlcpy(sb.node_prefix, sb.node, sizeof(sb.node_prefix));
        for (int i = 0; i < 2 && (slash = strrchr(sb.node_prefix, '/')) && slash != sb.node_prefix; i++)
            *slash = '\0';
    }
}

/* The host's top-level lib/bin dirs: symlinks into /usr (merged /usr) or real dirs. */
static void find_top_dirs(void)
{
    static const char *const names[] = { "bin", "sbin", "lib", "lib32", "lib64", "libx32" };

    sb.ntop = 0;
    for (size_t i = 0; i < ML_ARRAY_LEN(names); i++) {
        char path[64], link[64];
        struct stat st;
        ssize_t n;

        snprintf(path, sizeof(path), "/%s", names[i]);
        if (lstat(path, &st) != 0)
            continue;
        sb_top *t = &sb.top[sb.ntop];
        ml_strlcpy(t->name, names[i], sizeof(t->name));
        t->link[0] = '\0';
        if (S_ISLNK(st.st_mode)) {
            n = readlink(path, link, sizeof(link) - 1);
            if (n <= 0)
                continue;
            link[n] = '\0';
            ml_strlcpy(t->link, link, sizeof(t->link));
        } else if (!S_ISDIR(st.st_mode)) {
            continue;
        }
        sb.ntop++;
    }
}

/* The empty mount point of instance roots, and the uid lock file next to it. */
static int make_root_dir(void)
{
    const char *base = access("/run", W_OK) == 0 ? "/run" : "/tmp";
    char lock[PATH_MAX];

    /* A fresh open file description: OFD locks of a forked copy of us must not count as ours. */
    if (sb.uid_lock_fd >= 0)
        close(sb.uid_lock_fd);
    sb.uid_lock_fd = -1;
    if (ml_snprintf(lock, sizeof(lock), "%s/minilambda-sandbox-uids.lock", base) == ML_OK)
        sb.uid_lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (ml_snprintf(sb.root, sizeof(sb.root), "%s/minilambda-sandbox-root", base) != ML_OK)
        return ML_ERR;
    if (mkdir(sb.root, 0755) != 0 && errno != EEXIST)
        return ML_ERR;
    return ML_OK;
}

static int open_null(void)
{
    return open("/dev/null", O_RDWR | O_CLOEXEC);
}

static void plan_base(sb_plan *p, const sb_launch *l, unsigned features)
{
    p->ns = features & SANDBOX_F_NAMESPACES;
    p->newnet = p->ns && !l->network;
    p->drop_uid = features & SANDBOX_F_UID;
    p->uid = l->uid;
    p->cg_fd[0] = l->cg_fd[0];
    p->cg_fd[1] = l->cg_fd[1];
    p->proto_fd = -1;
    if (features & SANDBOX_F_SECCOMP) {
        const sb_filter *f = &sb.filter[l->network ? 0 : 1];
        p->prog.len = f->len;
        p->prog.filter = f->insns;
    }
    if (p->ns)
        plan_root(p, l);
    plan_limits(p, l);
}

/* A throw-away cgroup (memory i=0, pids i=1) for the probe, and its open tasks file. */
static int probe_cgroup(int i, char dir[PATH_MAX], int *fd, char *why, size_t whylen)
{
    char tasks[PATH_MAX];

    if (ml_snprintf(dir, PATH_MAX, "%s/probe-%d", i == 0 ? sb.cg_mem : sb.cg_pids,
                    (int)getpid()) != ML_OK ||
        (mkdir(dir, 0755) != 0 && errno != EEXIST) ||
        ml_snprintf(tasks, sizeof(tasks), "%s/tasks", dir) != ML_OK ||
        (*fd = open(tasks, O_WRONLY | O_CLOEXEC)) < 0)
        return errf(why, whylen, "%s: %s", dir, strerror(errno));
    return ML_OK;
}

/* Launches "sh -c 'exit 0'" with the given features; ML_OK if it ran and exited 0, else the
 * failing step (and why) for the caller to fall back. */
static int probe_once(unsigned features, int *step, char *why, size_t whylen)
{
    static char *const argv[] = { SB_SHELL, "-c", "exit 0", NULL };
    static char *const envp[] = { "PATH=/usr/bin:/bin", NULL };
    sb_plan *p = calloc(1, sizeof(*p));
    sb_launch l = { .memory_mb = 64, .pids_max = 16, .uid = SB_UID_BASE + SB_UID_SLOTS,
                    .rlimit_as = !(features & SANDBOX_F_CGROUP_MEMORY), .cg_fd = { -1, -1 } };
    char cg[2][PATH_MAX] = { "", "" };
    int pidfd = -1, status = 0, rc = ML_ERR;
    pid_t pid;

    *step = STEP_SETUP;
    if (!p)
        return ML_ERR;
    p->null_fd = -1;
    for (int i = 0; i < 2; i++) {
        if (!(features & (i == 0 ? SANDBOX_F_CGROUP_MEMORY : SANDBOX_F_CGROUP_PIDS)))
            continue;
        if (probe_cgroup(i, cg[i], &l.cg_fd[i], why, whylen) != ML_OK) {
            *step = i == 0 ? STEP_CGROUP_MEM : STEP_CGROUP_PIDS;
            goto out;
        }
    }
    plan_base(p, &l, features);
    p->argv = argv;
    p->envp = envp;
    p->cwd = "/";
    p->null_fd = p->log_fd = open_null();
    if (p->null_fd < 0 || p->arena_full) {
        ml_snprintf(why, whylen, "probe setup failed");
        goto out;
    }
    pid = sb_clone(p, &pidfd, why, whylen);
    if (pid < 0) {
        *step = p->fail_step;
        goto out;
    }
    while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR)
        ;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        rc = ML_OK;
    } else {
        *step = STEP_EXEC;
        ml_snprintf(why, whylen, "probe exited with status %d", status);
    }
out:
    if (pidfd >= 0)
        close(pidfd);
    if (p->null_fd >= 0)
        close(p->null_fd);
    for (int i = 0; i < 2; i++) {
        if (l.cg_fd[i] >= 0)
            close(l.cg_fd[i]);
        if (cg[i][0])
            (void)rmdir(cg[i]);
    }
    free(p);
    return rc;
}

static unsigned step_feature(int step)
{
    switch (step) {
    case STEP_CGROUP_MEM: return SANDBOX_F_CGROUP_MEMORY;
    case STEP_CGROUP_PIDS: return SANDBOX_F_CGROUP_PIDS;
    case STEP_UID: return SANDBOX_F_UID;
    case STEP_SECCOMP: return SANDBOX_F_SECCOMP;
    case STEP_CLONE: case STEP_NS: case STEP_MOUNT: case STEP_NET: case STEP_EXEC:
        return SANDBOX_F_NAMESPACES;
    default: return 0;
    }
}

static void report_add(ml_buf *b, bool *fallback, const char *fmt, ...) ML_PRINTF(3, 4);
static void report_add(ml_buf *b, bool *fallback, const char *fmt, ...)
{
    va_list ap;

    if (fallback)
        *fallback = true;
    if (b->len)
        ml_buf_append_str(b, "; ");
    va_start(ap, fmt);
    ml_buf_vprintf(b, fmt, ap);
    va_end(ap);
}

static void free_filters(void)
{
    for (int i = 0; i < 2; i++) {
        free(sb.filter[i].insns);
        sb.filter[i].insns = NULL;
        sb.filter[i].len = 0;
    }
}

/* Tries features, dropping the one whose step fails, until the probe runs. */
static int probe_features(unsigned *features, ml_buf *rep, bool *fallback)
{
    for (int attempt = 0; attempt < 8; attempt++) {
        char why[512] = "";
        int step = STEP_NONE;
        unsigned drop;

        if (probe_once(*features, &step, why, sizeof(why)) == ML_OK)
            return ML_OK;
        drop = step_feature(step) & *features;
        if (!drop && (*features & SANDBOX_F_NAMESPACES))
            drop = SANDBOX_F_NAMESPACES;   /* the riskiest layer first */
        if (!drop) {
            report_add(rep, fallback, "FATAL: cannot start even a plain child: %s", why);
            return ML_ERR;
        }
        report_add(rep, fallback, "FALLBACK %s off (%s)",
                   drop == SANDBOX_F_NAMESPACES ? "namespaces" :
                   drop == SANDBOX_F_UID ? "uid drop" :
                   drop == SANDBOX_F_SECCOMP ? "seccomp" :
                   drop == SANDBOX_F_CGROUP_MEMORY ? "cgroup memory" : "cgroup pids", why);
        *features &= ~drop;
    }
    return ML_ERR;
}

static void report_summary(ml_buf *rep, unsigned f, bool *fallback)
{
    if (f & SANDBOX_F_NAMESPACES)
        report_add(rep, NULL, "namespaces pid,mnt,net,ipc,uts,cgroup; root read-only via "
                   "pivot_root (/usr + minimal /etc), code ro at /var/task, private tmpfs /tmp");
    else
        report_add(rep, fallback, "NO namespaces: functions see the host filesystem (read as "
                   "their uid), host pids and the host network; tree killed by process group");
    if (f & SANDBOX_F_CGROUP_MEMORY)
        report_add(rep, NULL, "cgroup v1 memory at %s%s", sb.cg_mem, sb.memsw ? " (+memsw)" : "");
    else
        report_add(rep, fallback, "NO memory cgroup: RLIMIT_AS instead (python MemoryError, "
                   "nodejs heap limit), no OOM-kill detection");
    if (f & SANDBOX_F_CGROUP_PIDS)
        report_add(rep, NULL, "cgroup v1 pids at %s", sb.cg_pids);
    else
        report_add(rep, fallback, "NO pids cgroup: RLIMIT_NPROC only%s",
                   (f & SANDBOX_F_UID) ? "" : " (not enforced: no uid drop)");
    report_add(rep, (f & SANDBOX_F_SECCOMP) ? NULL : fallback, "seccomp %s",
               (f & SANDBOX_F_SECCOMP) ? "on" : "OFF");
    if (f & SANDBOX_F_UID)
        report_add(rep, sb.uid_lock_fd < 0 ? fallback : NULL, "per-instance uid %u+ without "
                   "capabilities, no_new_privs%s", SB_UID_BASE, sb.uid_lock_fd < 0 ?
                   " (NO uid lock file: uids unique within this executor only)" : "");
    else
        report_add(rep, fallback, "NO uid drop: functions run as uid %u (capabilities dropped)",
                   (unsigned)geteuid());
    report_add(rep, NULL, "rlimits nofile,core%s%s",
               (f & SANDBOX_F_UID) ? ",nproc" : "", (f & SANDBOX_F_CGROUP_MEMORY) ? "" : ",as");
}

/* Everything the probe needs before it runs: root mount point, cgroup parents, seccomp
 * programs. A layer that cannot even be prepared is dropped here, with the reason. */
static void prepare_layers(unsigned *f, const char *parent, ml_buf *rep, bool *fallback)
{
    char why[512], memsw[PATH_MAX];

    if (make_root_dir() != ML_OK) {
        report_add(rep, fallback, "FALLBACK namespaces off (mkdir %s: %s)", sb.root, strerror(errno));
        *f &= ~SANDBOX_F_NAMESPACES;
    }
    if ((*f & SANDBOX_F_CGROUP_MEMORY) &&
        cgroup_parent("memory", "memory.limit_in_bytes", "67108864", parent, sb.cg_mem,
                      sizeof(sb.cg_mem), why, sizeof(why)) != ML_OK) {
        report_add(rep, fallback, "FALLBACK cgroup memory off (%s)", why);
        *f &= ~SANDBOX_F_CGROUP_MEMORY;
    }
    if ((*f & SANDBOX_F_CGROUP_PIDS) &&
        cgroup_parent("pids", "pids.max", "16", parent, sb.cg_pids, sizeof(sb.cg_pids), why,
                      sizeof(why)) != ML_OK) {
        report_add(rep, fallback, "FALLBACK cgroup pids off (%s)", why);
        *f &= ~SANDBOX_F_CGROUP_PIDS;
    }
    sb.memsw = (*f & SANDBOX_F_CGROUP_MEMORY) &&
               ml_snprintf(memsw, sizeof(memsw), "%s/memory.memsw.limit_in_bytes", sb.cg_mem) == ML_OK &&
               access(memsw, W_OK) == 0;
    if ((*f & SANDBOX_F_SECCOMP) &&
        (seccomp_build(true, &sb.filter[0], why, sizeof(why)) != ML_OK ||
         seccomp_build(false, &sb.filter[1], why, sizeof(why)) != ML_OK)) {
        report_add(rep, fallback, "FALLBACK seccomp off (%s)", why);
        *f &= ~SANDBOX_F_SECCOMP;
    }
}

int sandbox_init_ex(const char *cgroup_parent_name, unsigned disable_mask, char *report,
                    size_t len)
{
    unsigned f = SANDBOX_F_ALL & ~disable_mask;
    ml_buf detail = { 0 }, rep = { 0 };
    bool fallback = false;
    int rc = ML_ERR;

    sb.ready = false;
    free_filters();
    sb.cg_mem[0] = sb.cg_pids[0] = '\0';
    ml_buf_init(&detail, 8192);
    ml_buf_init(&rep, 8192);
    find_node();
    find_top_dirs();
    prepare_layers(&f, cgroup_parent_name, &detail, &fallback);
    if (probe_features(&f, &detail, &fallback) == ML_OK) {
        report_summary(&rep, f, &fallback);
        if (!sb.node[0])
            report_add(&rep, NULL, "nodejs runtime unavailable (no node binary)");
        sb.features = f;
        sb.ready = true;
        rc = ML_OK;
    }
    if (detail.len)
        report_add(&rep, NULL, "%s", ml_buf_cstr(&detail));
    ml_log(fallback ? ML_LOG_WARN : ML_LOG_INFO, "sandbox: %s", ml_buf_cstr(&rep));
    if (report && len)
        ml_strlcpy(report, ml_buf_cstr(&rep), len);
    ml_buf_free(&detail);
    ml_buf_free(&rep);
    return rc;
}

int sandbox_init(const char *cgroup_parent_name, char *report, size_t len)
{
    return sandbox_init_ex(cgroup_parent_name, 0, report, len);
}

unsigned sandbox_features(void)
{
    return sb.ready ? sb.features : 0;
}

/* ---------------------------------------------------------------- instances */

typedef struct sb_ring {
    char data[SB_LOG_TAIL];
    size_t head, len;      /* oldest byte at head */
} sb_ring;

struct sandbox_instance {
    pid_t pid;               /* host pid of the instance's init */
    int pidfd;               /* -1 when the kernel has none */
    int proto_fd, log_fd;    /* our ends, non-blocking */
    bool ns, dead, reaped;
    int wait_status;         /* -1 unknown */
    int uid_slot;
    unsigned uid;
    int64_t memory_mb;
    int64_t timeout_ms;      /* spec->timeout_s as a cap on every deadline, 0: none */
    char cg[2][PATH_MAX];    /* the instance's memory and pids cgroups, "" if none */
    int usage_fd;            /* memory.max_usage_in_bytes, -1 */
    pid_t runtime_pid;       /* host pid of the runtime, for VmHWM without cgroups */
    char *function_name, *function_version;
    sb_ring log;
    proto_reader rd;
};

static void ring_add(sb_ring *r, const char *s, size_t n)
{
    if (n >= SB_LOG_TAIL) {
        memcpy(r->data, s + n - SB_LOG_TAIL, SB_LOG_TAIL);
        r->head = 0;
        r->len = SB_LOG_TAIL;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        r->data[(r->head + r->len) % SB_LOG_TAIL] = s[i];
        if (r->len < SB_LOG_TAIL)
            r->len++;
        else
            r->head = (r->head + 1) % SB_LOG_TAIL;
    }
}

/* Moves the ring's content into out (emptying the ring). */
static void ring_take(sb_ring *r, ml_buf *out)
{
    size_t first = r->len < SB_LOG_TAIL - r->head ? r->len : SB_LOG_TAIL - r->head;

    ml_buf_init(out, SB_LOG_TAIL);
    ml_buf_append(out, r->data + r->head, first);
    ml_buf_append(out, r->data, r->len - first);
    r->head = r->len = 0;
}

/* Reads what the log pipe holds now into the ring — at most 1 MiB per call, so a function
 * printing without pause cannot keep the caller from its deadline checks. */
static void log_drain(sandbox_instance *in)
{
    char chunk[16384];

    for (int i = 0; i < 64 && in->log_fd >= 0; i++) {
        ssize_t n = read(in->log_fd, chunk, sizeof(chunk));
        if (n > 0) {
            ring_add(&in->log, chunk, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n == 0) {   /* every writer is gone */
            close(in->log_fd);
            in->log_fd = -1;
        }
        return;
    }
}

/* Collects the exit status; block waits for it. */
static void sb_reap(sandbox_instance *in, bool block)
{
    int st = 0;
    pid_t r;

    if (in->reaped)
        return;
    do
        r = waitpid(in->pid, &st, __WALL | (block ? 0 : WNOHANG));
    while (r < 0 && errno == EINTR);
    if (r == in->pid || (r < 0 && errno == ECHILD)) {
        in->reaped = in->dead = true;
        in->wait_status = r == in->pid ? st : -1;
    }
}

/* Kills every process of the instance, then reaps the init. */
static void sb_kill(sandbox_instance *in)
{
    if (!in->reaped) {
        if (in->pidfd < 0 || syscall(SYS_pidfd_send_signal, in->pidfd, SIGKILL, NULL, 0) != 0)
            kill(in->pid, SIGKILL);
        if (!in->ns)
            kill(-in->pid, SIGKILL);   /* its session / process group */
    }
    /* Without a pid namespace, processes that left the group are still in the cgroups. */
    for (int i = 0; !in->ns && i < 2; i++)
        if (in->cg[i][0])
            cgroup_kill_tasks(in->cg[i]);
    sb_reap(in, true);
    in->dead = true;
}

/* The counter after key ("oom_kill ", "max ") in a cgroup events file, 0 when unknown. */
static int64_t cg_event_count(const char *cg, const char *file, const char *key)
{
    char path[PATH_MAX], buf[512], num[24];
    const char *k;
    size_t n;
    int64_t v = 0;

    if (!cg[0] || ml_snprintf(path, sizeof(path), "%s/%s", cg, file) != ML_OK ||
        read_file(path, buf, sizeof(buf)) != ML_OK || !(k = strstr(buf, key)))
        return 0;
    k += strlen(key);
    n = strcspn(k, "\n");
    if (n < sizeof(num)) {
        memcpy(num, k, n);
        num[n] = '\0';
        (void)ml_parse_int64(num, 0, INT64_MAX, &v);
    }
    return v;
}

/* oom_kill count of the instance's memory cgroup (0 when unknown). */
static int64_t sb_oom_kills(const sandbox_instance *in)
{
    return cg_event_count(in->cg[0], "memory.oom_control", "oom_kill ");
}

/* How often the instance's pids cgroup refused a fork at pids.max (0 when unknown). */
static int64_t sb_pids_refusals(const sandbox_instance *in)
{
    return cg_event_count(in->cg[1], "pids.events", "max ");
}

static int64_t status_kb(const char *path, const char *key)
{
    char buf[4096];
    const char *k;
    int64_t v = -1;

    if (read_file(path, buf, sizeof(buf)) != ML_OK || !(k = strstr(buf, key)))
        return -1;
    k += strlen(key);
    while (*k == ' ' || *k == '\t')
        k++;
    char num[24];
    size_t n = strspn(k, "0123456789");
    if (n == 0 || n >= sizeof(num))
        return -1;
    memcpy(num, k, n);
    num[n] = '\0';
    return ml_parse_int64(num, 0, INT64_MAX, &v) == ML_OK ? v : -1;
}

/* Resets the peak-memory counter before an invocation. */
static void sb_peak_reset(sandbox_instance *in)
{
    char path[64];

    if (in->usage_fd >= 0) {
        (void)pwrite(in->usage_fd, "0", 1, 0);
    } else if (in->runtime_pid > 0 &&
               ml_snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)in->runtime_pid) == ML_OK) {
        (void)write_file(path, "5");   /* "5" resets VmHWM */
    }
}

static int64_t sb_peak(sandbox_instance *in)
{
    char path[64];
    int64_t kb;

    if (in->usage_fd >= 0)
        return read_int_at(in->usage_fd);
    if (in->runtime_pid <= 0 ||
        ml_snprintf(path, sizeof(path), "/proc/%d/status", (int)in->runtime_pid) != ML_OK)
        return -1;
    kb = status_kb(path, "VmHWM:");
    return kb < 0 ? -1 : kb * 1024;
}

/* The runtime is the init's only child: /proc/<init>/task/<init>/children. */
static void find_runtime_pid(sandbox_instance *in)
{
    char path[96], buf[256];
    int64_t pid;

    if (ml_snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)in->pid, (int)in->pid) != ML_OK ||
        read_file(path, buf, sizeof(buf)) != ML_OK)
        return;
    buf[strcspn(buf, " \n")] = '\0';
    if (ml_parse_int64(buf, 1, INT32_MAX, &pid) == ML_OK)
        in->runtime_pid = (pid_t)pid;
}

typedef enum { EX_MSG, EX_DEAD, EX_TIMEOUT, EX_BROKEN } sb_outcome;

/* Sends w (if any) and reads one message into in->rd before deadline_ms, draining the log.
 * EX_BROKEN: the channel failed (why says how); the caller decides what that means. */
static sb_outcome sb_exchange(sandbox_instance *in, proto_writer *w, int64_t deadline_ms,
                              char *why, size_t whylen)
{
    for (;;) {
        struct pollfd pf[3] = {
            { .fd = in->proto_fd, .events = POLLIN },
            { .fd = in->log_fd, .events = POLLIN },
            { .fd = in->pidfd, .events = POLLIN },
        };
        int64_t left = deadline_ms - ml_now_ms();
        int rc;

        if (left <= 0)
            return EX_TIMEOUT;
        if (w && !proto_writer_done(w))
            pf[0].events |= POLLOUT;
        if (in->pidfd < 0 && left > 20)
            left = 20;   /* no pidfd: notice the death by polling waitpid */
        rc = poll(pf, 3, (int)(left > INT32_MAX ? INT32_MAX : left));
        if (rc < 0 && errno != EINTR) {
            ml_snprintf(why, whylen, "poll: %s", strerror(errno));
            return EX_BROKEN;
        }
        if (rc <= 0) {
            if (in->pidfd < 0 && (sb_reap(in, false), in->reaped))
                return EX_DEAD;
            continue;
        }
        if (pf[1].revents)
            log_drain(in);
        if ((pf[0].revents & POLLOUT) && proto_writer_step(w, in->proto_fd) != ML_OK) {
            ml_snprintf(why, whylen, "the runtime stopped reading (%s)", strerror(errno));
            return EX_BROKEN;
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            proto_status st = proto_reader_step(&in->rd, in->proto_fd);
            if (st == PROTO_DONE) {
                log_drain(in);
                if (w && !proto_writer_done(w)) {
                    ml_snprintf(why, whylen, "the runtime answered before reading the event");
                    return EX_BROKEN;
                }
                return EX_MSG;
            }
            if (st == PROTO_EOF || st == PROTO_ERROR) {
                ml_snprintf(why, whylen, "%s", st == PROTO_EOF ? "the runtime closed its channel"
                                                                : in->rd.error);
                return EX_BROKEN;
            }
        }
        if (pf[2].revents & POLLIN) {
            log_drain(in);
            sb_reap(in, true);
            return EX_DEAD;
        }
    }
}

/* After EX_BROKEN: a runtime that is exiting gets a moment to do so (its status tells crash
 * from OOM); one that is alive but broke the protocol is killed. */
static void sb_settle(sandbox_instance *in)
{
    int64_t until = ml_now_ms() + 250;

    while (!in->reaped && ml_now_ms() < until) {
        struct pollfd pf = { .fd = in->pidfd, .events = POLLIN };
        if (in->pidfd >= 0)
            (void)poll(&pf, 1, 10);
        else
            ml_sleep_ms(5);
        sb_reap(in, false);
    }
    log_drain(in);
    sb_kill(in);
}

/* "exit status 3" / "signal: killed" of the init (which relays the runtime's as 128+n). */
static void exit_text(const sandbox_instance *in, char *out, size_t len)
{
    int st = in->wait_status;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : (code > 128 ? code - 128 : 0);

    if (st == -1)
        ml_snprintf(out, len, "unknown exit status");
    else if (sig)
        ml_snprintf(out, len, "signal: %s", sig == SIGKILL ? "killed"
                    : sigdescr_np(sig) ? sigdescr_np(sig) : "unknown");
    else
        ml_snprintf(out, len, "exit status %d", code);
}

/* {"errorType","errorMessage","stackTrace":[]} into out. */
static void error_json(ml_buf *out, const char *type, const char *msg)
{
    cJSON *o = cJSON_CreateObject();
    char *s = NULL;

    ml_buf_free(out);
    if (o && cJSON_AddStringToObject(o, "errorType", type) &&
        cJSON_AddStringToObject(o, "errorMessage", msg) && cJSON_AddArrayToObject(o, "stackTrace"))
        s = cJSON_PrintUnformatted(o);
    ml_buf_append_str(out, s ? s : "{\"errorType\":\"Runtime.ExitError\",\"errorMessage\":\"\",\"stackTrace\":[]}");
    free(s);
    cJSON_Delete(o);
}

/* A handler's error body, normalised to exactly the contract's shape. */
static void normalise_error(ml_buf *out, const char *body, size_t len)
{
    cJSON *in = cJSON_ParseWithLength(body, len);
    cJSON *o = cJSON_CreateObject(), *trace = cJSON_CreateArray();
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "errorType");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(in, "errorMessage");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(in, "stackTrace");
    const cJSON *line;
    char *s = NULL;

    cJSON_ArrayForEach(line, st)
        if (cJSON_IsString(line))
            cJSON_AddItemToArray(trace, cJSON_CreateString(line->valuestring));
    if (o && trace) {
        cJSON_AddStringToObject(o, "errorType", cJSON_IsString(t) ? t->valuestring : "Error");
        cJSON_AddStringToObject(o, "errorMessage", cJSON_IsString(m) ? m->valuestring
                                : (in ? "" : "the runtime sent an error that is not JSON"));
        cJSON_AddItemToObject(o, "stackTrace", trace);
        trace = NULL;
        s = cJSON_PrintUnformatted(o);
    }
    ml_buf_free(out);
    if (s)
        ml_buf_append_str(out, s);
    else
        error_json(out, "Runtime.ExitError", "out of memory formatting an error");
    free(s);
    cJSON_Delete(trace);
    cJSON_Delete(o);
    cJSON_Delete(in);
}

/* The "type" of a received header ("" if absent or not JSON), into out. */
static void header_type(const proto_reader *r, char *out, size_t len)
{
    cJSON *h = cJSON_ParseWithLength(r->header.data ? r->header.data : "", r->header.len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "type");

    ml_strlcpy(out, cJSON_IsString(t) ? t->valuestring : "", len);
    cJSON_Delete(h);
}

/* ------------------------------------------------------------ sandbox_start */

static bool env_key_ok(const char *kv, size_t *keylen)
{
    const char *eq = strchr(kv, '=');
    size_t n = eq ? (size_t)(eq - kv) : 0;

    if (n == 0 || !(kv[0] == '_' || (kv[0] >= 'A' && kv[0] <= 'Z') || (kv[0] >= 'a' && kv[0] <= 'z')))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(kv[i] == '_' || (kv[i] >= 'A' && kv[i] <= 'Z') || (kv[i] >= 'a' && kv[i] <= 'z') ||
              (kv[i] >= '0' && kv[i] <= '9')))
            return false;
    *keylen = n;
    return true;
}

static bool env_reserved(const char *kv, size_t n)
{
    static const char *const exact[] = { "_HANDLER", "AWS_EXECUTION_ENV", "LAMBDA_TASK_ROOT",
                                         "LAMBDA_RUNTIME_DIR" };
    for (size_t i = 0; i < ML_ARRAY_LEN(exact); i++)
        if (strlen(exact[i]) == n && strncmp(kv, exact[i], n) == 0)
            return true;
    return (n >= 11 && strncmp(kv, "AWS_LAMBDA_", 11) == 0) ||
           (n >= 11 && strncmp(kv, "MINILAMBDA_", 11) == 0);
}

static bool env_has(const char *const *env, const char *key)
{
    size_t n = strlen(key);

    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], key, n) == 0 && env[i][n] == '=')
            return true;
    return false;
}

/* envp: the platform's variables, then the user's (validated, never overriding reserved
 * names). The strings live in the plan's arena or in spec->env. Caller frees the array. */
static char **build_env(sb_plan *p, const sandbox_spec *s, bool ns, const char *runtime_dir,
                        char *err, size_t errlen)
{
    static const char *const defaults[][2] = {
        { "PATH", "/usr/local/bin:/usr/bin:/bin" }, { "LANG", "C.UTF-8" }, { "TZ", "UTC" },
        { "HOME", "/tmp" }, { "TMPDIR", "/tmp" },
    };
    size_t nuser = 0, n = 0, keylen = 0;
    char **env;

    while (s->env && s->env[nuser])
        nuser++;
    if (nuser > SB_MAX_ENV) {
        ml_snprintf(err, errlen, "Sandbox.InvalidConfig: more than %d environment variables", SB_MAX_ENV);
        return NULL;
    }
    env = calloc(nuser + ML_ARRAY_LEN(defaults) + 12, sizeof(*env));
    if (!env) {
        ml_snprintf(err, errlen, "Sandbox.SetupError: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < ML_ARRAY_LEN(defaults); i++)
        if (!env_has(s->env, defaults[i][0]))
            env[n++] = (char *)plan_str(p, "%s=%s", defaults[i][0], defaults[i][1]);
    env[n++] = (char *)plan_str(p, "LAMBDA_TASK_ROOT=%s", ns ? SB_TASK : s->code_dir);
    env[n++] = (char *)plan_str(p, "LAMBDA_RUNTIME_DIR=%s", ns ? SB_RUNTIME : runtime_dir);
    env[n++] = (char *)plan_str(p, "_HANDLER=%s", s->handler);
    env[n++] = (char *)plan_str(p, "AWS_EXECUTION_ENV=minilambda_%s", s->runtime);
    env[n++] = (char *)plan_str(p, "AWS_LAMBDA_FUNCTION_NAME=%s", s->function_name);
    env[n++] = (char *)plan_str(p, "AWS_LAMBDA_FUNCTION_VERSION=%s", s->function_version);
    env[n++] = (char *)plan_str(p, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=%" PRId64, s->memory_mb);
    for (size_t i = 0; i < nuser; i++) {
        if (!env_key_ok(s->env[i], &keylen)) {
            ml_snprintf(err, errlen, "Sandbox.InvalidConfig: bad environment entry \"%.64s\"", s->env[i]);
            free(env);
            return NULL;
        }
        if (env_reserved(s->env[i], keylen))
            ml_log_warn("sandbox: function %s: reserved variable %.*s ignored", s->function_name,
                        (int)keylen, s->env[i]);
        else
            env[n++] = (char *)s->env[i];
    }
    if (p->arena_full) {
        ml_snprintf(err, errlen, "Sandbox.InvalidConfig: function settings too long");
        free(env);
        return NULL;
    }
    return env;
}

static bool handler_ok(const char *h)
{
    size_t n = strlen(h);

    if (n == 0 || n > 128 || h[0] == '/' || h[0] == '.' || strstr(h, ".."))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(h[i] == '_' || h[i] == '.' || h[i] == '/' || h[i] == '-' ||
              (h[i] >= 'A' && h[i] <= 'Z') || (h[i] >= 'a' && h[i] <= 'z') ||
              (h[i] >= '0' && h[i] <= '9')))
            return false;
    return true;
}

static int check_spec(const sandbox_spec *s, char *err, size_t errlen)
{
    struct stat st;
    char path[PATH_MAX];
    bool others = sb.features & SANDBOX_F_UID;   /* the function runs as another uid */

    if (!sb.ready)
        return errf(err, errlen, "Sandbox.SetupError: sandbox_init was not called");
    if (!s->runtime || !s->handler || !s->code_dir || !s->runtimes_dir || !s->function_name ||
        !s->function_version)
        return errf(err, errlen, "Sandbox.InvalidConfig: incomplete spec");
    if (strcmp(s->runtime, "python3") && strcmp(s->runtime, "nodejs") && strcmp(s->runtime, "provided"))
        return errf(err, errlen, "Sandbox.InvalidConfig: unknown runtime %.32s", s->runtime);
    if (strcmp(s->runtime, "nodejs") == 0 && !sb.node[0])
        return errf(err, errlen, "Sandbox.RuntimeUnavailable: node is not installed");
    if (s->memory_mb < 64 || s->memory_mb > 4096 || s->pids_max < 0 || s->pids_max > 4096)
        return errf(err, errlen, "Sandbox.InvalidConfig: memory_mb 64..4096, pids_max 0..4096");
    if (!handler_ok(s->handler) || (strcmp(s->runtime, "provided") && !strchr(s->handler, '.')))
        return errf(err, errlen, "Runtime.MalformedHandlerName: bad handler \"%.64s\"", s->handler);
    if (stat(s->code_dir, &st) != 0)
        return errf(err, errlen, "Sandbox.SetupError: code dir %s: %s", s->code_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return errf(err, errlen, "Sandbox.SetupError: code dir %s is not a directory", s->code_dir);
    if (others && (st.st_mode & 05) != 05)
        return errf(err, errlen, "Sandbox.SetupError: code dir %s must be world-readable (0755): "
                    "the function runs as an unprivileged uid", s->code_dir);
    if (strcmp(s->runtime, "provided") == 0 &&
        (ml_snprintf(path, sizeof(path), "%s/bootstrap", s->code_dir) != ML_OK ||
         stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
         !(st.st_mode & (others ? S_IXOTH : S_IXUSR))))
        return errf(err, errlen, "Runtime.InvalidEntrypoint: the code has no executable "
                    "\"bootstrap\" file (mode 0755)");
    return ML_OK;
}

/* argv: sh as init running the runtime as its one job. */
static char **build_argv(sb_plan *p, const sandbox_spec *s, bool ns, const char *runtime_dir)
{
    char **a = calloc(12, sizeof(*a));
    size_t n = 0;
    const char *rt = ns ? SB_RUNTIME : runtime_dir;
    const char *task = ns ? SB_TASK : s->code_dir;

    if (!a)
        return NULL;
    a[n++] = SB_SHELL;
    a[n++] = "-c";
    a[n++] = SB_INIT_SCRIPT;
    a[n++] = "minilambda-init";
    if (strcmp(s->runtime, "python3") == 0) {
        /* -I: ignore PYTHON* env and user site; -S: skip site (4 ms); -B: task dir is read-only */
        a[n++] = SB_PYTHON, a[n++] = "-I", a[n++] = "-S", a[n++] = "-B";
        a[n++] = (char *)plan_str(p, "%s/bootstrap.py", rt);
    } else if (strcmp(s->runtime, "nodejs") == 0) {
        a[n++] = sb.node;
        a[n++] = (char *)plan_str(p, "--max-old-space-size=%" PRId64, s->memory_mb * 3 / 4);
        a[n++] = (char *)plan_str(p, "%s/bootstrap.js", rt);
    } else {
        a[n++] = (char *)plan_str(p, "%s/bootstrap", task);
    }
    return a;
}

/* Writes value to <dir>/<file>; ML_ERR with err on failure. */
static int cg_write(const char *dir, const char *file, const char *value, char *err, size_t errlen)
{
    char path[PATH_MAX];

    if (ml_snprintf(path, sizeof(path), "%s/%s", dir, file) != ML_OK || write_file(path, value) != ML_OK)
        return errf(err, errlen, "Sandbox.SetupError: cgroup %s/%s: %s", dir, file, strerror(errno));
    return ML_OK;
}

static int cg_open(const char *dir, const char *file, int flags, int *fd, char *err, size_t errlen)
{
    char path[PATH_MAX];

    if (ml_snprintf(path, sizeof(path), "%s/%s", dir, file) != ML_OK ||
        (*fd = open(path, flags | O_CLOEXEC)) < 0)
        return errf(err, errlen, "Sandbox.SetupError: cgroup %s/%s: %s", dir, file, strerror(errno));
    return ML_OK;
}

/* The instance's memory and pids cgroups with their limits; cg_fd gets their cgroup.procs for
 * the child to join. */
static int cgroup_create(sandbox_instance *in, const sandbox_spec *s, const char *name,
                         int cg_fd[2], char *err, size_t errlen)
{
    char val[32];

    if (sb.features & SANDBOX_F_CGROUP_MEMORY) {
        snprintf(val, sizeof(val), "%" PRId64, s->memory_mb << 20);
        if (ml_snprintf(in->cg[0], sizeof(in->cg[0]), "%s/%s", sb.cg_mem, name) != ML_OK ||
            mkdir(in->cg[0], 0755) != 0)
            return errf(err, errlen, "Sandbox.SetupError: mkdir %s: %s", in->cg[0], strerror(errno));
        /* memsw = limit: the limit cannot be escaped into swap */
        if (cg_write(in->cg[0], "memory.limit_in_bytes", val, err, errlen) != ML_OK ||
            (sb.memsw && cg_write(in->cg[0], "memory.memsw.limit_in_bytes", val, err, errlen) != ML_OK) ||
            cg_open(in->cg[0], "memory.max_usage_in_bytes", O_RDWR, &in->usage_fd, err, errlen) != ML_OK ||
            cg_open(in->cg[0], "tasks", O_WRONLY, &cg_fd[0], err, errlen) != ML_OK)
            return ML_ERR;
    }
    if (sb.features & SANDBOX_F_CGROUP_PIDS) {
        snprintf(val, sizeof(val), "%" PRId64, s->pids_max ? s->pids_max : 64);
        if (ml_snprintf(in->cg[1], sizeof(in->cg[1]), "%s/%s", sb.cg_pids, name) != ML_OK ||
            mkdir(in->cg[1], 0755) != 0)
            return errf(err, errlen, "Sandbox.SetupError: mkdir %s: %s", in->cg[1], strerror(errno));
        if (cg_write(in->cg[1], "pids.max", val, err, errlen) != ML_OK ||
            cg_open(in->cg[1], "tasks", O_WRONLY, &cg_fd[1], err, errlen) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

static void cgroup_remove(sandbox_instance *in)
{
    for (int i = 0; i < 2; i++) {
        if (!in->cg[i][0])
            continue;
        /* The last tasks may still be leaving after the init was reaped. */
        for (int tries = 0; rmdir(in->cg[i]) != 0 && errno == EBUSY && tries < 200; tries++)
            ml_sleep_ms(5);
        in->cg[i][0] = '\0';
    }
}

static sandbox_instance *instance_new(const sandbox_spec *s)
{
    sandbox_instance *in = calloc(1, sizeof(*in));

    if (!in)
        return NULL;
    in->pid = -1;
    in->pidfd = in->proto_fd = in->log_fd = in->usage_fd = -1;
    in->uid_slot = -1;
    in->wait_status = -1;
    in->ns = sb.features & SANDBOX_F_NAMESPACES;
    in->memory_mb = s->memory_mb;
    in->timeout_ms = s->timeout_s > 0 ? s->timeout_s * 1000 : 0;
    in->function_name = strdup(s->function_name);
    in->function_version = strdup(s->function_version);
    proto_reader_init(&in->rd, PROTO_HEADER_MAX);
    if (!in->function_name || !in->function_version) {
        sandbox_destroy(in);
        return NULL;
    }
    return in;
}

/* The start error when the runtime died or broke off during init. */
static void start_died(sandbox_instance *in, const char *why, char *err, size_t errlen)
{
    char how[64];
    ml_buf tail = { 0 };
    const char *t, *nl;

    exit_text(in, how, sizeof(how));
    ring_take(&in->log, &tail);
    t = ml_buf_cstr(&tail);
    /* the last ~512 bytes, from a line start when possible */
    if (tail.len > 512 && (nl = strchr(t + tail.len - 512, '\n')))
        t = nl + 1;
    if (sb_oom_kills(in) > 0)
        ml_snprintf(err, errlen, "Runtime.OutOfMemory: memory limit of %" PRId64 " MB exceeded "
                    "while loading the function: %s", in->memory_mb, t);
    else
        ml_snprintf(err, errlen, "Runtime.ExitError: runtime exited during init (%s%s%s): %s",
                    why ? why : "", why ? ", " : "", how, t);
    ml_buf_free(&tail);
}

/* Waits for "ready" or "init_error". */
static int start_handshake(sandbox_instance *in, int64_t deadline, char *err, size_t errlen)
{
    char why[160] = "", type[32];
    sb_outcome o = sb_exchange(in, NULL, deadline, why, sizeof(why));

    if (o == EX_TIMEOUT) {
        sb_kill(in);
        ml_snprintf(err, errlen, "Runtime.InitTimeout: the function did not finish loading in time");
        return ML_ERR;
    }
    if (o != EX_MSG) {
        if (o == EX_BROKEN)
            sb_settle(in);
        start_died(in, o == EX_BROKEN ? why : NULL, err, errlen);
        return ML_ERR;
    }
    header_type(&in->rd, type, sizeof(type));
    if (strcmp(type, "ready") == 0)
        return ML_OK;
    if (strcmp(type, "init_error") == 0) {
        cJSON *e = cJSON_ParseWithLength(ml_buf_cstr(&in->rd.body), in->rd.body.len);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "errorType");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "errorMessage");
        ml_snprintf(err, errlen, "%s: %s", cJSON_IsString(t) ? t->valuestring : "Runtime.InitError",
                    cJSON_IsString(m) ? m->valuestring : "the handler could not be loaded");
        cJSON_Delete(e);
    } else {
        ml_snprintf(err, errlen, "Runtime.ExitError: the runtime sent \"%.32s\" instead of ready", type);
    }
    sb_kill(in);
    return ML_ERR;
}

/* The protocol socketpair, the log pipe and /dev/null (all close-on-exec; the child dups its
 * ends to fds 0-3). */
static int launch_fds(int sv[2], int lp[2], int *null_fd, char *err, size_t errlen)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(lp, O_CLOEXEC) != 0 ||
        (*null_fd = open_null()) < 0)
        return errf(err, errlen, "Sandbox.SetupError: fds: %s", strerror(errno));
    return ML_OK;
}

/* The parts of sandbox_start around the clone: fds, plan, launch. */
static int start_launch(sandbox_instance *in, const sandbox_spec *s, int cg_fd[2], char *err,
                        size_t errlen)
{
    sb_plan *p = calloc(1, sizeof(*p));
    char runtime_dir[PATH_MAX] = "";
    int sv[2] = { -1, -1 }, lp[2] = { -1, -1 };
    char **argv = NULL, **envp = NULL;
    int rc = ML_ERR;
    bool provided = strcmp(s->runtime, "provided") == 0;
    sb_launch l = { .code_dir = s->code_dir, .network = s->network, .memory_mb = s->memory_mb,
                    .pids_max = s->pids_max ? s->pids_max : 64, .uid = in->uid,
                    .rlimit_as = !(sb.features & SANDBOX_F_CGROUP_MEMORY) &&
                                 strcmp(s->runtime, "nodejs") != 0,
                    .cg_fd = { cg_fd[0], cg_fd[1] } };

    if (p)
        p->null_fd = -1;
    if (!p || (!provided && ml_snprintf(runtime_dir, sizeof(runtime_dir), "%s/%s",
                                        s->runtimes_dir, s->runtime) != ML_OK)) {
        ml_snprintf(err, errlen, "Sandbox.SetupError: out of memory or path too long");
        goto out;
    }
    l.runtime_dir = provided ? NULL : runtime_dir;
    if (launch_fds(sv, lp, &p->null_fd, err, errlen) != ML_OK)
        goto out;
    plan_base(p, &l, sb.features);
    p->proto_fd = sv[1];
    p->log_fd = lp[1];
    p->cwd = in->ns ? SB_TASK : s->code_dir;
    envp = build_env(p, s, in->ns, runtime_dir, err, errlen);
    argv = build_argv(p, s, in->ns, runtime_dir);
    if (!envp)
        goto out;
    if (!argv || p->arena_full) {
        ml_snprintf(err, errlen, "Sandbox.SetupError: launch plan too large");
        goto out;
    }
    p->argv = argv;
    p->envp = envp;
    in->pid = sb_clone(p, &in->pidfd, err, errlen);
    if (in->pid < 0)
        goto out;
    in->proto_fd = sv[0];
    in->log_fd = lp[0];
    sv[0] = lp[0] = -1;
    if (fcntl(in->proto_fd, F_SETFL, O_NONBLOCK) == 0 && fcntl(in->log_fd, F_SETFL, O_NONBLOCK) == 0)
        rc = ML_OK;
    else
        errf(err, errlen, "Sandbox.SetupError: fcntl: %s", strerror(errno));
out:
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (lp[i] >= 0)
            close(lp[i]);
    }
    if (p && p->null_fd >= 0)
        close(p->null_fd);
    free(argv);
    free(envp);
    free(p);
    return rc;
}

int sandbox_start(const sandbox_spec *spec, sandbox_instance **out, char *err, size_t errlen)
{
    int64_t deadline = ml_now_ms() + (spec->init_timeout_ms > 0 ? spec->init_timeout_ms : 10000);
    sandbox_instance *in = NULL;
    int cg_fd[2] = { -1, -1 };
    char name[64];
    int rc = ML_ERR;

    *out = NULL;
    if (check_spec(spec, err, errlen) != ML_OK)
        return ML_ERR;
    if (!(in = instance_new(spec))) {
        ml_snprintf(err, errlen, "Sandbox.SetupError: out of memory");
        return ML_ERR;
    }
    if ((in->uid_slot = uid_alloc(&in->uid)) < 0) {
        ml_snprintf(err, errlen, "Sandbox.SetupError: all %u sandbox uids are in use", SB_UID_SLOTS);
        goto out;
    }
    snprintf(name, sizeof(name), "i%d-%lu", (int)getpid(), (unsigned long)atomic_fetch_add(&sb.seq, 1));
    if (cgroup_create(in, spec, name, cg_fd, err, errlen) != ML_OK ||
        start_launch(in, spec, cg_fd, err, errlen) != ML_OK ||
        start_handshake(in, deadline, err, errlen) != ML_OK)
        goto out;
    if (in->usage_fd < 0)
        find_runtime_pid(in);
    *out = in;
    in = NULL;
    rc = ML_OK;
out:
    for (int i = 0; i < 2; i++)
        if (cg_fd[i] >= 0)
            close(cg_fd[i]);
    sandbox_destroy(in);
    return rc;
}

/* ------------------------------------------------------------ sandbox_invoke */

static char *invoke_header(const sandbox_instance *in, const char *id, int64_t deadline_ms)
{
    cJSON *h = cJSON_CreateObject();
    char *s = NULL;
    double wall_deadline = (double)(ml_wall_ms() + (deadline_ms - ml_now_ms()));

    if (h && cJSON_AddStringToObject(h, "type", "invoke") &&
        cJSON_AddStringToObject(h, "invocation_id", id) &&
        cJSON_AddNumberToObject(h, "deadline_ms", wall_deadline) &&
        cJSON_AddStringToObject(h, "function_name", in->function_name) &&
        cJSON_AddStringToObject(h, "function_version", in->function_version) &&
        cJSON_AddNumberToObject(h, "memory_limit_in_mb", (double)in->memory_mb))
        s = cJSON_PrintUnformatted(h);
    cJSON_Delete(h);
    return s;
}

/* A result body must be one JSON value (empty means null). */
static void take_result(sandbox_instance *in, size_t max_result, sandbox_result *out)
{
    proto_reader *r = &in->rd;
    char type[32], msg[160];
    cJSON *v;

    header_type(r, type, sizeof(type));
    if (r->body_too_large) {
        out->status = SB_HANDLER_ERROR;
        snprintf(msg, sizeof(msg), "Response payload size (%u bytes) exceeded maximum allowed "
                 "payload size (%zu bytes).", r->body_len, max_result);
        error_json(&out->payload, "Function.ResponseSizeTooLarge", msg);
    } else if (strcmp(type, "error") == 0) {
        out->status = SB_HANDLER_ERROR;
        normalise_error(&out->payload, ml_buf_cstr(&r->body), r->body.len);
    } else if (strcmp(type, "result") != 0) {
        out->status = SB_HANDLER_ERROR;
        error_json(&out->payload, "Runtime.InvalidResponse", "the runtime sent an unknown message type");
    } else if (r->body.len == 0) {
        out->status = SB_OK;
        ml_buf_append_str(&out->payload, "null");
    } else if (!(v = cJSON_ParseWithLengthOpts(r->body.data, r->body.len + 1, NULL, 1))) {
        out->status = SB_HANDLER_ERROR;
        error_json(&out->payload, "Runtime.MarshalError", "the function's result is not valid JSON");
    } else {
        cJSON_Delete(v);
        out->status = SB_OK;
        out->payload = r->body;   /* hand over the buffer */
        ml_buf_init(&r->body, 0);
    }
}

/* SB_TIMEOUT / SB_CRASH / SB_OOM after the instance is gone. */
static void take_death(sandbox_instance *in, sb_outcome o, const char *id, int64_t started,
                       int64_t deadline_ms, const char *why, sandbox_result *out)
{
    char msg[512], how[64];

    if (o == EX_TIMEOUT) {
        out->status = SB_TIMEOUT;
        snprintf(msg, sizeof(msg), "Task timed out after %.2f seconds",
                 (double)(deadline_ms - started) / 1000.0);
        error_json(&out->payload, "TimeoutError", msg);
        return;
    }
    exit_text(in, how, sizeof(how));
    if (sb_oom_kills(in) > 0) {
        out->status = SB_OOM;
        snprintf(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: %s "
                 "(memory limit of %" PRId64 " MB exceeded)", id, how, in->memory_mb);
        error_json(&out->payload, "Runtime.OutOfMemory", msg);
    } else {
        out->status = SB_CRASH;
        snprintf(msg, sizeof(msg), "RequestId: %s Error: Runtime exited with error: %s%s%s", id,
                 how, why && *why ? "; " : "", why ? why : "");
        error_json(&out->payload, "Runtime.ExitError", msg);
    }
}

int sandbox_invoke(sandbox_instance *inst, const char *invocation_id, const char *event,
                   size_t event_len, int64_t deadline_ms, size_t max_result, sandbox_result *out)
{
    int64_t started = ml_now_ms();
    char *hdr = NULL;
    char why[160] = "";
    proto_writer w;
    sb_outcome o;

    memset(out, 0, sizeof(*out));
    out->max_memory_bytes = -1;
    if (inst && inst->timeout_ms && deadline_ms > started + inst->timeout_ms)
        deadline_ms = started + inst->timeout_ms;
    if (!inst || inst->dead || !invocation_id) {
        out->status = SB_CRASH;
        error_json(&out->payload, "Runtime.ExitError", "the instance is not alive");
        return ML_ERR;
    }
    hdr = invoke_header(inst, invocation_id, deadline_ms);
    if (!hdr || proto_writer_init(&w, hdr, strlen(hdr), event, event_len) != ML_OK) {
        free(hdr);
        sb_kill(inst);
        out->status = SB_CRASH;
        error_json(&out->payload, "Runtime.ExitError", "could not frame the event");
        return ML_ERR;
    }
    sb_peak_reset(inst);
    proto_reader_reset(&inst->rd, max_result);
    o = sb_exchange(inst, &w, deadline_ms, why, sizeof(why));
    if (o == EX_MSG) {
        take_result(inst, max_result, out);
        out->max_memory_bytes = sb_peak(inst);
    } else {
        out->max_memory_bytes = sb_peak(inst);
        if (o == EX_BROKEN)
            sb_settle(inst);
        else
            sb_kill(inst);
        take_death(inst, o, invocation_id, started, deadline_ms, o == EX_BROKEN ? why : NULL, out);
        out->pids_exhausted = sb_pids_refusals(inst) > 0;
    }
    out->duration_ms = ml_now_ms() - started;
    ring_take(&inst->log, &out->log_tail);
    proto_reader_reset(&inst->rd, PROTO_HEADER_MAX);
    free(hdr);
    return ML_OK;
}

bool sandbox_alive(const sandbox_instance *inst)
{
    struct pollfd pf;

    if (!inst || inst->dead)
        return false;
    if (inst->pidfd < 0)
        return kill(inst->pid, 0) == 0;
    pf.fd = inst->pidfd;
    pf.events = POLLIN;
    pf.revents = 0;
    return poll(&pf, 1, 0) == 0;
}

int sandbox_pid(const sandbox_instance *inst)
{
    return inst ? (int)inst->pid : -1;
}

unsigned sandbox_uid(const sandbox_instance *inst)
{
    return inst ? inst->uid : 0;
}

void sandbox_destroy(sandbox_instance *inst)
{
    if (!inst)
        return;
    if (inst->pid > 0)
        sb_kill(inst);
    cgroup_remove(inst);
    if (inst->pidfd >= 0)
        close(inst->pidfd);
    if (inst->proto_fd >= 0)
        close(inst->proto_fd);
    if (inst->log_fd >= 0)
        close(inst->log_fd);
    if (inst->usage_fd >= 0)
        close(inst->usage_fd);
    uid_free(inst->uid_slot);
    proto_reader_free(&inst->rd);
    free(inst->function_name);
    free(inst->function_version);
    free(inst);
}

void sandbox_result_free(sandbox_result *r)
{
    if (!r)
        return;
    ml_buf_free(&r->payload);
    ml_buf_free(&r->log_tail);
    memset(r, 0, sizeof(*r));
}
