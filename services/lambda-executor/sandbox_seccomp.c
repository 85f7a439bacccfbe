/* sandbox_seccomp.c — the seccomp filter every instance loads: compiled with libseccomp once
 * at init, kept as raw BPF the child can install without allocating. */
#include <errno.h>
#include <sched.h>
#include <seccomp.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sandbox-int.h"

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
int sb_seccomp_build(bool network, sb_filter *out, char *why, size_t whylen)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
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
