/* sandbox_cgroup.c — cgroup v1 memory, pids and cpu: the parents under our own cgroup (swept of
 * what dead executors left), one child of each per instance, and their event counters. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sandbox-int.h"

/* Our own cgroup path for a v1 controller from /proc/self/cgroup ("4:memory:/a/b"), without
 * the leading slash ("" for the root). */
static int own_cgroup(const char *controller, char *out, size_t len)
{
    char buf[4096], *save = NULL;

    if (sb_read_file("/proc/self/cgroup", buf, sizeof(buf)) != ML_OK)
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
void sb_cgroup_kill_tasks(const char *dir)
{
    for (int round = 0; round < 100; round++) {
        char path[PATH_MAX], buf[8192], *save = NULL;
        bool any = false;

        if (ml_snprintf(path, sizeof(path), "%s/cgroup.procs", dir) != ML_OK ||
            sb_read_file(path, buf, sizeof(buf)) != ML_OK)
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

/* The start time (clock ticks since boot, /proc/<pid>/stat field 22) of a live process; 0
 * when it is gone. With the pid it names one process for good: a pid is reused, the pair
 * is not. */
int64_t sb_pid_start_time(pid_t pid)
{
    char path[64], buf[1024], *p;
    int64_t v = 0;

    if (ml_snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid) != ML_OK ||
        sb_read_file(path, buf, sizeof(buf)) != ML_OK || !(p = strrchr(buf, ')')))
        return 0;
    for (int field = 2; field < 22 && p; field++) /* fields 3.. follow ") " */
        p = strchr(p + 1, ' ');
    if (p)
        p[1 + strcspn(p + 1, " ")] = '\0';
    if (!p || ml_parse_int64(p + 1, 1, INT64_MAX, &v) != ML_OK)
        return 0;
    return v;
}

/* Whether the executor that made a cgroup named "i<pid>.<start>-<seq>" (or the older
 * "i<pid>-<seq>", "probe-<pid>") is still running: the same pid with the same start time.
 * A sibling executor on the host is alive and keeps its cgroups; a previous instance of
 * this one (even under the same pid, as in a container) is not. */
static bool owner_alive(const char *name)
{
    size_t skip = name[0] == 'i' ? 1 : strncmp(name, "probe-", 6) == 0 ? 6 : 0;
    size_t n = skip ? strspn(name + skip, "0123456789") : 0;
    const char *rest = name + skip + n;
    char num[32];
    int64_t pid = 0, start = 0;

    if (n == 0 || n >= sizeof(num))
        return true; /* not ours: leave it */
    memcpy(num, name + skip, n);
    num[n] = '\0';
    if (ml_parse_int64(num, 1, INT32_MAX, &pid) != ML_OK)
        return true;
    if (*rest == '.') {
        size_t m = strspn(rest + 1, "0123456789");
        if (m == 0 || m >= sizeof(num))
            return true;
        memcpy(num, rest + 1, m);
        num[m] = '\0';
        if (ml_parse_int64(num, 1, INT64_MAX, &start) != ML_OK)
            return true;
        return sb_pid_start_time((pid_t)pid) == start;
    }
    return pid == getpid() || kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

/* Removes what executors that are gone left behind: their instances' processes are killed
 * first (the start-up sweep; parent-death signals normally leave nothing to find). */
static void cgroup_sweep(const char *parent)
{
    DIR *d = opendir(parent);
    struct dirent *e;

    if (!d)
        return;
    while ((e = readdir(d))) {
        char path[PATH_MAX];

        if (e->d_name[0] == '.' || owner_alive(e->d_name) ||
            ml_snprintf(path, sizeof(path), "%s/%s", parent, e->d_name) != ML_OK)
            continue;
        sb_cgroup_kill_tasks(path);
        for (int tries = 0; rmdir(path) != 0 && errno == EBUSY && tries < 100; tries++)
            ml_sleep_ms(5);
    }
    closedir(d);
}

/* Prepares <mount>/<own cgroup>/<name> for one controller and checks we can create children
 * with limits in it. */
int sb_cgroup_parent(const char *controller, const char *limit_file, const char *limit,
                         const char *name, char *out, size_t len, char *why, size_t whylen)
{
    char own[PATH_MAX], probe[PATH_MAX], file[PATH_MAX];
    int rc = ML_ERR;

    if (own_cgroup(controller, own, sizeof(own)) != ML_OK) {
        ml_snprintf_trunc(why, whylen, "no v1 %s controller in /proc/self/cgroup", controller);
        return ML_ERR;
    }
    if (ml_snprintf(out, len, "/sys/fs/cgroup/%s/%s%s%s", controller, own, own[0] ? "/" : "",
                    name) != ML_OK ||
        ml_snprintf(probe, sizeof(probe), "%s/probe-%d", out, (int)getpid()) != ML_OK ||
        ml_snprintf(file, sizeof(file), "%s/%s", probe, limit_file) != ML_OK)
        return ML_ERR;
    if (mkdir(out, 0755) != 0 && errno != EEXIST) {
        ml_snprintf_trunc(why, whylen, "mkdir %s: %s", out, strerror(errno));
        return ML_ERR;
    }
    if (mkdir(probe, 0755) != 0 && errno != EEXIST) {
        ml_snprintf_trunc(why, whylen, "mkdir %s: %s", probe, strerror(errno));
        return ML_ERR;
    }
    if (sb_write_file(file, limit) == ML_OK)
        rc = ML_OK;
    else
        ml_snprintf_trunc(why, whylen, "write %s: %s", file, strerror(errno));
    (void)rmdir(probe);
    if (rc == ML_OK)
        cgroup_sweep(out);
    return rc;
}

/* Writes value to <dir>/<file>; ML_ERR with err on failure. */
static int cg_write(const char *dir, const char *file, const char *value, char *err, size_t errlen)
{
    char path[PATH_MAX];

    if (ml_snprintf(path, sizeof(path), "%s/%s", dir, file) != ML_OK || sb_write_file(path, value) != ML_OK)
        return sb_errf(err, errlen, "Sandbox.SetupError: cgroup %s/%s: %s", dir, file, strerror(errno));
    return ML_OK;
}

static int cg_open(const char *dir, const char *file, int flags, int *fd, char *err, size_t errlen)
{
    char path[PATH_MAX];

    if (ml_snprintf(path, sizeof(path), "%s/%s", dir, file) != ML_OK ||
        (*fd = open(path, flags | O_CLOEXEC)) < 0)
        return sb_errf(err, errlen, "Sandbox.SetupError: cgroup %s/%s: %s", dir, file, strerror(errno));
    return ML_OK;
}

int64_t sandbox_cpu_quota_us(int64_t memory_mb)
{
    int64_t mb = memory_mb < SANDBOX_CPU_MIN_MB ? SANDBOX_CPU_MIN_MB : memory_mb;

    return (int64_t)SANDBOX_CPU_PERIOD_US * mb / SANDBOX_CPU_MB_PER_VCPU;
}

#define SB_SHARES_TASK 1024     /* a v1 cpu group's default weight: one busy task's */
#define SB_SHARES_MAX 262144

static pthread_mutex_t cpu_weight_lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t cpu_live;

/* The functions' parent cpu cgroup weighs as many tasks as it has instances, as the runtimes
 * did against the host's other tasks before they had a cpu cgroup (at the default weight,
 * a hundred cold starts together would get the CPU of one postgres backend). Best effort. */
static void cpu_weight_adjust(int delta)
{
    char path[PATH_MAX], val[32];
    int64_t w;

    pthread_mutex_lock(&cpu_weight_lock);
    cpu_live += delta;
    w = (cpu_live > 0 ? cpu_live : 1) * SB_SHARES_TASK;
    if (ml_snprintf(path, sizeof(path), "%s/cpu.shares", sb_host.cg_cpu) == ML_OK &&
        ml_snprintf(val, sizeof(val), "%" PRId64, w < SB_SHARES_MAX ? w : SB_SHARES_MAX) == ML_OK)
        (void)sb_write_file(path, val);
    pthread_mutex_unlock(&cpu_weight_lock);
}

/* The instance's cpu cgroup, unthrottled until sb_cgroup_cpu_limit (init runs at full speed). */
static int cgroup_create_cpu(sandbox_instance *in, const char *name, int *fd, char *err, size_t errlen)
{
    char val[32];

    if (ml_snprintf(val, sizeof(val), "%d", SANDBOX_CPU_PERIOD_US) != ML_OK ||
        ml_snprintf(in->cg[2], sizeof(in->cg[2]), "%s/%s", sb_host.cg_cpu, name) != ML_OK ||
        mkdir(in->cg[2], 0755) != 0)
        return sb_errf(err, errlen, "Sandbox.SetupError: mkdir %s: %s", in->cg[2], strerror(errno));
    in->cpu_weighed = true;
    cpu_weight_adjust(1);
    if (cg_write(in->cg[2], "cpu.cfs_period_us", val, err, errlen) != ML_OK ||
        cg_open(in->cg[2], "tasks", O_WRONLY, fd, err, errlen) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

/* Once the handler is loaded: the instance's CPU share from its memory size. */
int sb_cgroup_cpu_limit(sandbox_instance *in, char *err, size_t errlen)
{
    char val[32], path[PATH_MAX];

    if (!in->cg[2][0])
        return ML_OK;
    if (ml_snprintf(val, sizeof(val), "%" PRId64, sandbox_cpu_quota_us(in->memory_mb)) != ML_OK)
        return sb_errf(err, errlen, "Sandbox.SetupError: bad cpu quota");
    if (cg_write(in->cg[2], "cpu.cfs_quota_us", val, err, errlen) != ML_OK)
        return ML_ERR;
    /* unused quota carries over up to one period's worth, so a short burst of invocations is
     * not stopped for the rest of the period; best effort (cpu.cfs_burst_us: Linux 5.14+) */
    if (ml_snprintf(path, sizeof(path), "%s/cpu.cfs_burst_us", in->cg[2]) == ML_OK && access(path, W_OK) == 0)
        (void)sb_write_file(path, val);
    return ML_OK;
}

/* An instance's cpu weight (a stem idles at the lowest; specialised, it gets the default). */
int sb_cgroup_cpu_shares(sandbox_instance *in, int64_t shares, char *err, size_t errlen)
{
    char path[PATH_MAX], val[32];

    if (!in->cg[2][0])
        return ML_OK;
    if (ml_snprintf(path, sizeof(path), "%s/cpu.shares", in->cg[2]) != ML_OK ||
        ml_snprintf(val, sizeof(val), "%" PRId64, shares) != ML_OK || sb_write_file(path, val) != ML_OK)
        return sb_errf(err, errlen, "Sandbox.SetupError: cpu.shares: %s", strerror(errno));
    return ML_OK;
}

/* Lifts the quota of an instance being killed: its processes exit at full speed. */
void sb_cgroup_cpu_unlimit(sandbox_instance *in)
{
    char path[PATH_MAX];

    if (in->cg[2][0] && ml_snprintf(path, sizeof(path), "%s/cpu.cfs_quota_us", in->cg[2]) == ML_OK)
        (void)sb_write_file(path, "-1");
}

/* The instance's memory, pids and cpu cgroups with their limits (pids_max > 0); cg_fd gets
 * their "tasks" for the child to join. */
int sb_cgroup_create(sandbox_instance *in, int64_t memory_mb, int64_t pids_max, const char *name,
                     int cg_fd[SB_NCG], char *err, size_t errlen)
{
    char val[32];

    if (sb_host.features & SANDBOX_F_CGROUP_MEMORY) {
        if (ml_snprintf(val, sizeof(val), "%" PRId64, memory_mb << 20) != ML_OK)
            return sb_errf(err, errlen, "Sandbox.SetupError: bad memory limit");
        if (ml_snprintf(in->cg[0], sizeof(in->cg[0]), "%s/%s", sb_host.cg_mem, name) != ML_OK ||
            mkdir(in->cg[0], 0755) != 0)
            return sb_errf(err, errlen, "Sandbox.SetupError: mkdir %s: %s", in->cg[0], strerror(errno));
        /* memsw = limit: the limit cannot be escaped into swap */
        if (cg_write(in->cg[0], "memory.limit_in_bytes", val, err, errlen) != ML_OK ||
            (sb_host.memsw && cg_write(in->cg[0], "memory.memsw.limit_in_bytes", val, err, errlen) != ML_OK) ||
            cg_open(in->cg[0], "memory.max_usage_in_bytes", O_RDWR, &in->usage_fd, err, errlen) != ML_OK ||
            cg_open(in->cg[0], "tasks", O_WRONLY, &cg_fd[0], err, errlen) != ML_OK)
            return ML_ERR;
    }
    if (sb_host.features & SANDBOX_F_CGROUP_PIDS) {
        if (ml_snprintf(val, sizeof(val), "%" PRId64, pids_max) != ML_OK)
            return sb_errf(err, errlen, "Sandbox.SetupError: bad pids limit");
        if (ml_snprintf(in->cg[1], sizeof(in->cg[1]), "%s/%s", sb_host.cg_pids, name) != ML_OK ||
            mkdir(in->cg[1], 0755) != 0)
            return sb_errf(err, errlen, "Sandbox.SetupError: mkdir %s: %s", in->cg[1], strerror(errno));
        if (cg_write(in->cg[1], "pids.max", val, err, errlen) != ML_OK ||
            cg_open(in->cg[1], "tasks", O_WRONLY, &cg_fd[1], err, errlen) != ML_OK)
            return ML_ERR;
    }
    if ((sb_host.features & SANDBOX_F_CGROUP_CPU) &&
        cgroup_create_cpu(in, name, &cg_fd[2], err, errlen) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

void sb_cgroup_remove(sandbox_instance *in)
{
    if (in->cpu_weighed)
        cpu_weight_adjust(-1);
    in->cpu_weighed = false;
    for (int i = 0; i < SB_NCG; i++) {
        if (!in->cg[i][0])
            continue;
        /* The last tasks may still be leaving after the init was reaped. */
        for (int tries = 0; rmdir(in->cg[i]) != 0 && errno == EBUSY && tries < 200; tries++)
            ml_sleep_ms(5);
        in->cg[i][0] = '\0';
    }
}

/* The counter after key ("oom_kill ", "max ") in a cgroup events file, 0 when unknown. */
static int64_t cg_event_count(const char *cg, const char *file, const char *key)
{
    char path[PATH_MAX], buf[512], num[24];
    const char *k;
    size_t n;
    int64_t v = 0;

    if (!cg[0] || ml_snprintf(path, sizeof(path), "%s/%s", cg, file) != ML_OK ||
        sb_read_file(path, buf, sizeof(buf)) != ML_OK || !(k = strstr(buf, key)))
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
int64_t sb_oom_kills(const sandbox_instance *in)
{
    return cg_event_count(in->cg[0], "memory.oom_control", "oom_kill ");
}

/* How often the instance's pids cgroup refused a fork at pids.max (0 when unknown). */
int64_t sb_pids_refusals(const sandbox_instance *in)
{
    return cg_event_count(in->cg[1], "pids.events", "max ");
}
