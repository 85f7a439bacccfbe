/* sandbox_probe.c — sandbox_init: prepares each isolation layer, then launches a tiny probe
 * sandbox, dropping the layer whose step fails until it runs; reports what is used. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sandbox-int.h"

static const unsigned cg_feature[SB_NCG] = { SANDBOX_F_CGROUP_MEMORY, SANDBOX_F_CGROUP_PIDS,
                                             SANDBOX_F_CGROUP_CPU };

/* A throw-away cgroup (memory i=0, pids i=1, cpu i=2) for the probe, and its open tasks file. */
static int probe_cgroup(int i, char dir[PATH_MAX], int *fd, char *why, size_t whylen)
{
    const char *parent[SB_NCG] = { sb_host.cg_mem, sb_host.cg_pids, sb_host.cg_cpu };
    char tasks[PATH_MAX];

    if (ml_snprintf(dir, PATH_MAX, "%s/probe-%d", parent[i], (int)getpid()) != ML_OK ||
        (mkdir(dir, 0755) != 0 && errno != EEXIST) ||
        ml_snprintf(tasks, sizeof(tasks), "%s/tasks", dir) != ML_OK ||
        (*fd = open(tasks, O_WRONLY | O_CLOEXEC)) < 0)
        return sb_errf(why, whylen, "%s: %s", dir, strerror(errno));
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
                    .rlimit_as = !(features & SANDBOX_F_CGROUP_MEMORY), .cg_fd = { -1, -1, -1 } };
    char cg[SB_NCG][PATH_MAX] = { "", "", "" };
    int pidfd = -1, status = 0, rc = ML_ERR;
    pid_t pid;

    *step = STEP_SETUP;
    if (!p)
        return ML_ERR;
    p->null_fd = -1;
    for (int i = 0; i < SB_NCG; i++) {
        if (!(features & cg_feature[i]))
            continue;
        if (probe_cgroup(i, cg[i], &l.cg_fd[i], why, whylen) != ML_OK) {
            *step = STEP_CGROUP_MEM + i;
            goto out;
        }
    }
    sb_plan_base(p, &l, features);
    p->argv = argv;
    p->envp = envp;
    p->cwd = "/";
    p->null_fd = p->out_fd = p->err_fd = sb_open_null();
    if (p->null_fd < 0 || p->arena_full) {
        ml_snprintf_trunc(why, whylen, "probe setup failed");
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
        ml_snprintf_trunc(why, whylen, "probe exited with status %d", status);
    }
out:
    if (pidfd >= 0)
        close(pidfd);
    if (p->null_fd >= 0)
        close(p->null_fd);
    for (int i = 0; i < SB_NCG; i++) {
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
    case STEP_CGROUP_CPU: return SANDBOX_F_CGROUP_CPU;
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
        free(sb_host.filter[i].insns);
        sb_host.filter[i].insns = NULL;
        sb_host.filter[i].len = 0;
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
                   drop == SANDBOX_F_CGROUP_MEMORY ? "cgroup memory" :
                   drop == SANDBOX_F_CGROUP_CPU ? "cgroup cpu" : "cgroup pids", why);
        *features &= ~drop;
    }
    return ML_ERR;
}

static void report_summary(ml_buf *rep, unsigned f, bool *fallback)
{
    if (f & SANDBOX_F_NAMESPACES)
        report_add(rep, NULL, "namespaces pid,mnt,net,ipc,uts,cgroup; root read-only via "
                   "pivot_root (/usr + minimal /etc), code ro at /var/task, private tmpfs /tmp, "
                   "%zu host package dirs masked", sb_host.nhidden);
    else
        report_add(rep, fallback, "NO namespaces: functions see the host filesystem (read as "
                   "their uid), host pids and the host network; tree killed by process group");
    if (f & SANDBOX_F_CGROUP_MEMORY)
        report_add(rep, NULL, "cgroup v1 memory at %s%s", sb_host.cg_mem, sb_host.memsw ? " (+memsw)" : "");
    else
        report_add(rep, fallback, "NO memory cgroup: RLIMIT_AS instead (python MemoryError, "
                   "nodejs heap limit), no OOM-kill detection");
    if (f & SANDBOX_F_CGROUP_PIDS)
        report_add(rep, NULL, "cgroup v1 pids at %s", sb_host.cg_pids);
    else
        report_add(rep, fallback, "NO pids cgroup: RLIMIT_NPROC only%s",
                   (f & SANDBOX_F_UID) ? "" : " (not enforced: no uid drop)");
    if (f & SANDBOX_F_CGROUP_CPU)
        report_add(rep, NULL, "cgroup v1 cpu at %s (quota memory_mb/%d vCPU, min %d MB's)",
                   sb_host.cg_cpu, SANDBOX_CPU_MB_PER_VCPU, SANDBOX_CPU_MIN_MB);
    else
        report_add(rep, fallback, "NO cpu cgroup: no CPU limit (one function can take every core)");
    report_add(rep, (f & SANDBOX_F_SECCOMP) ? NULL : fallback, "seccomp %s",
               (f & SANDBOX_F_SECCOMP) ? "on (allow-list)" : "OFF");
    if (f & SANDBOX_F_UID)
        report_add(rep, !sb_uid_host_wide() ? fallback : NULL, "per-instance uid %u+ without "
                   "capabilities, no_new_privs%s", SB_UID_BASE, !sb_uid_host_wide() ?
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

    if (sb_make_root_dir() != ML_OK) {
        report_add(rep, fallback, "FALLBACK namespaces off (mkdir %s: %s)", sb_host.root, strerror(errno));
        *f &= ~SANDBOX_F_NAMESPACES;
    }
    if ((*f & SANDBOX_F_CGROUP_MEMORY) &&
        sb_cgroup_parent("memory", "memory.limit_in_bytes", "67108864", parent, sb_host.cg_mem,
                      sizeof(sb_host.cg_mem), why, sizeof(why)) != ML_OK) {
        report_add(rep, fallback, "FALLBACK cgroup memory off (%s)", why);
        *f &= ~SANDBOX_F_CGROUP_MEMORY;
    }
    if ((*f & SANDBOX_F_CGROUP_PIDS) &&
        sb_cgroup_parent("pids", "pids.max", "16", parent, sb_host.cg_pids, sizeof(sb_host.cg_pids), why,
                      sizeof(why)) != ML_OK) {
        report_add(rep, fallback, "FALLBACK cgroup pids off (%s)", why);
        *f &= ~SANDBOX_F_CGROUP_PIDS;
    }
    if ((*f & SANDBOX_F_CGROUP_CPU) &&
        sb_cgroup_parent("cpu", "cpu.cfs_quota_us", "100000", parent, sb_host.cg_cpu,
                         sizeof(sb_host.cg_cpu), why, sizeof(why)) != ML_OK) {
        report_add(rep, fallback, "FALLBACK cgroup cpu off (%s)", why);
        *f &= ~SANDBOX_F_CGROUP_CPU;
    }

    sb_host.memsw = (*f & SANDBOX_F_CGROUP_MEMORY) &&
               ml_snprintf(memsw, sizeof(memsw), "%s/memory.memsw.limit_in_bytes", sb_host.cg_mem) == ML_OK &&
               access(memsw, W_OK) == 0;
    if ((*f & SANDBOX_F_SECCOMP) &&
        (sb_seccomp_build(true, &sb_host.filter[0], why, sizeof(why)) != ML_OK ||
         sb_seccomp_build(false, &sb_host.filter[1], why, sizeof(why)) != ML_OK)) {
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

    sb_host.ready = false;
    free_filters();
    sb_host.cg_mem[0] = sb_host.cg_pids[0] = sb_host.cg_cpu[0] = '\0';
    ml_buf_init(&detail, 8192);
    ml_buf_init(&rep, 8192);
    sb_find_node();
    sb_find_top_dirs();
    sb_find_hidden();
    prepare_layers(&f, cgroup_parent_name, &detail, &fallback);
    if (probe_features(&f, &detail, &fallback) == ML_OK) {
        report_summary(&rep, f, &fallback);
        if (!sb_host.node[0])
            report_add(&rep, NULL, "nodejs runtime unavailable (no node binary)");
        sb_host.features = f;
        sb_host.ready = true;
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
    return sb_host.ready ? sb_host.features : 0;
}
