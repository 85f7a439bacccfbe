/* sandbox_seccomp.c — the seccomp allow-list every instance loads: compiled with libseccomp
 * once at init, kept as raw BPF the child can install without allocating.
 *
 * Deny by default with EPERM (not a kill): runtimes probe optional system calls and fall back
 * when refused, and a function that reaches for a forbidden one gets an ordinary OSError /
 * EPERM it can report, instead of a SIGSYS crash with no message. What is allowed was traced
 * (strace -f over the python3, nodejs and provided bootstraps and the sandbox tests' function
 * set, docs/sandbox.md) and completed with what glibc, pthreads and libuv use on other paths
 * (a function's own file, process, time and socket work through the standard library).
 * Extending it: add the name to the group it belongs to, and say why in docs/sandbox.md. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox-int.h"

/* Everything a runtime and a function's own code need; nothing that administers the kernel
 * (mount, modules, keys, bpf, perf, ptrace, namespaces, clocks, swap, quotas, NUMA ...). */
static const char *const allowed_syscalls[] = {
    /* processes and threads (clone: see seccomp_clone) */
    "exit", "exit_group", "fork", "vfork", "execve", "execveat", "wait4", "waitid", "kill",
    "tgkill", "tkill", "getpid", "getppid", "gettid", "getpgid", "getpgrp", "setpgid", "getsid",
    "setsid", "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "futex",
    "futex_waitv", "arch_prctl", "prctl", "sched_yield", "sched_getaffinity",
    "sched_setaffinity", "sched_getparam", "sched_getscheduler", "sched_get_priority_max",
    "sched_get_priority_min", "sched_rr_get_interval", "getpriority", "setpriority",
    "getrusage", "times", "prlimit64", "getrlimit", "setrlimit", "capget", "uname", "sysinfo",
    "getcpu", "pidfd_open", "pidfd_send_signal", "restart_syscall",
    /* identity (reading it; changing it needs capabilities the instance has not) */
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    /* signals and timers */
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigsuspend", "rt_sigpending",
    "rt_sigtimedwait", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "pause", "alarm",
    "signalfd", "signalfd4", "getitimer", "setitimer", "timer_create", "timer_settime",
    "timer_gettime", "timer_getoverrun", "timer_delete", "timerfd_create", "timerfd_settime",
    "timerfd_gettime", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
    "gettimeofday", "time",
    /* memory (V8 and CPython's allocators, pkeys for V8's code space) */
    "brk", "mmap", "munmap", "mprotect", "mremap", "madvise", "msync", "mincore", "mlock",
    "mlock2", "munlock", "membarrier", "memfd_create", "pkey_alloc", "pkey_free",
    "pkey_mprotect",
    /* files (the instance's own tree: read-only root, its /tmp) */
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
    "pwritev2", "open", "openat", "openat2", "creat", "close", "close_range", "lseek", "dup",
    "dup2", "dup3", "fcntl", "flock", "fsync", "fdatasync", "sync_file_range", "truncate",
    "ftruncate", "fallocate", "fadvise64", "readahead", "stat", "fstat", "lstat",
    "newfstatat", "statx", "statfs", "fstatfs", "access", "faccessat", "faccessat2",
    "readlink", "readlinkat", "getdents", "getdents64", "getcwd", "chdir", "fchdir", "mkdir",
    "mkdirat", "rmdir", "unlink", "unlinkat", "rename", "renameat", "renameat2", "link",
    "linkat", "symlink", "symlinkat", "chmod", "fchmod", "fchmodat", "chown", "fchown",
    "lchown", "fchownat", "umask", "utime", "utimes", "utimensat", "futimesat", "mknod",
    "mknodat", "pipe", "pipe2", "splice", "tee", "vmsplice", "sendfile", "copy_file_range",
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "ioctl",
    /* waiting on fds (libuv: epoll; CPython: poll/select) */
    "select", "pselect6", "poll", "ppoll", "epoll_create", "epoll_create1", "epoll_ctl",
    "epoll_wait", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2",
    "getrandom",
    /* sockets already open or unix/netlink ones: socket() itself refuses inet without the
     * network (seccomp_socket), so these reach no network then; netlink needs bind (glibc's
     * if_nameindex, getifaddrs), unix servers listen/accept (multiprocessing) */
    "socketpair", "sendto", "recvfrom", "sendmsg", "recvmsg", "shutdown", "getsockname",
    "getpeername", "setsockopt", "getsockopt", "connect", "bind", "listen", "accept", "accept4",
};

/* Only when the function may use the network: batched datagrams. */
static const char *const network_syscalls[] = {
    "sendmmsg", "recvmmsg",
};

/* ENOSYS rather than EPERM: the callers fall back on "not implemented". io_uring would run
 * the calls it performs past this filter; clone3's flags cannot be inspected, and glibc
 * falls back to clone, whose flags can. */
static const char *const enosys_syscalls[] = {
    "io_uring_setup", "io_uring_enter", "io_uring_register", "clone3",
};

static int seccomp_named(scmp_filter_ctx ctx, const char *name, uint32_t action)
{
    int nr = seccomp_syscall_resolve_name(name);

    if (nr == __NR_SCMP_ERROR)
        return ML_OK;   /* not a syscall on this architecture */
    return seccomp_rule_add(ctx, action, nr, 0) == 0 ? ML_OK : ML_ERR;
}

/* clone without any namespace flag (new threads and processes only). */
static int seccomp_clone(scmp_filter_ctx ctx)
{
    const uint64_t ns = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                        CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;

    return seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                            SCMP_A0(SCMP_CMP_MASKED_EQ, ns, 0)) == 0 ? ML_OK : ML_ERR;
}

/* socket: unix and netlink (route info) always; inet only with the network, else EACCES
 * (what a firewall answers). Other families (packet, alg, vsock, bluetooth ...): EPERM. */
static int seccomp_socket(scmp_filter_ctx ctx, bool network)
{
    static const int always[] = { AF_UNIX, AF_NETLINK };
    static const int inet[] = { AF_INET, AF_INET6 };
    uint32_t inet_action = network ? SCMP_ACT_ALLOW : SCMP_ACT_ERRNO(EACCES);

    for (size_t i = 0; i < ML_ARRAY_LEN(always); i++)
        if (seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, (uint64_t)always[i])) != 0)
            return ML_ERR;
    for (size_t i = 0; i < ML_ARRAY_LEN(inet); i++)
        if (seccomp_rule_add(ctx, inet_action, SCMP_SYS(socket), 1,
                             SCMP_A0(SCMP_CMP_EQ, (uint64_t)inet[i])) != 0)
            return ML_ERR;
    return ML_OK;
}

static int seccomp_rules(scmp_filter_ctx ctx, bool network)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(allowed_syscalls); i++)
        if (seccomp_named(ctx, allowed_syscalls[i], SCMP_ACT_ALLOW) != ML_OK)
            return ML_ERR;
    for (size_t i = 0; network && i < ML_ARRAY_LEN(network_syscalls); i++)
        if (seccomp_named(ctx, network_syscalls[i], SCMP_ACT_ALLOW) != ML_OK)
            return ML_ERR;
    for (size_t i = 0; i < ML_ARRAY_LEN(enosys_syscalls); i++)
        if (seccomp_named(ctx, enosys_syscalls[i], SCMP_ACT_ERRNO(ENOSYS)) != ML_OK)
            return ML_ERR;
    return seccomp_clone(ctx) == ML_OK && seccomp_socket(ctx, network) == ML_OK ? ML_OK : ML_ERR;
}

const char *const *sandbox_seccomp_allowlist(bool network_extra, size_t *n)
{
    *n = network_extra ? ML_ARRAY_LEN(network_syscalls) : ML_ARRAY_LEN(allowed_syscalls);
    return network_extra ? network_syscalls : allowed_syscalls;
}

/* Compiles the filter with libseccomp once, exported as raw BPF the child can load without
 * allocating. out->insns is owned by the caller (free). */
int sb_seccomp_build(bool network, sb_filter *out, char *why, size_t whylen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ERRNO(EPERM));
    int fd = -1, rc = ML_ERR;
    off_t size;

    if (!ctx) {
        ml_snprintf_trunc(why, whylen, "seccomp_init failed");
        return ML_ERR;
    }
    if (seccomp_rules(ctx, network) != ML_OK) {
        ml_snprintf_trunc(why, whylen, "seccomp rules rejected by libseccomp");
        goto out;
    }
    fd = memfd_create("seccomp-bpf", MFD_CLOEXEC);
    if (fd < 0 || seccomp_export_bpf(ctx, fd) != 0 || (size = lseek(fd, 0, SEEK_END)) <= 0 ||
        size % (off_t)sizeof(struct sock_filter) != 0 ||
        size / (off_t)sizeof(struct sock_filter) > USHRT_MAX) {
        ml_snprintf_trunc(why, whylen, "exporting the seccomp program failed");
        goto out;
    }
    out->insns = malloc((size_t)size);
    if (!out->insns || pread(fd, out->insns, (size_t)size, 0) != size) {
        free(out->insns);
        out->insns = NULL;
        ml_snprintf_trunc(why, whylen, "reading the seccomp program failed");
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
