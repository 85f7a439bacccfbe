/* sandbox_stem.c — stem cells (sandbox_stem.h, docs/sandbox.md "Stem cells"): a refill thread
 * keeps sandboxes started ahead per key; a cold start takes one, gives it the function's
 * cgroup limits, mounts the code at /var/task from inside its mount namespace, and sends the
 * runtime "specialise" (handler + the function's environment), then waits for ready as
 * sandbox_start does. */
#include "sandbox_stem.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fnspec.h"
#include "log.h"
#include "sandbox-int.h"

#define STEM_MAX_AGE_MS 600000
#define STEM_PY_MEMORY_MB 128    /* a python stem's limit until specialised (idle ~10 MB) */
#define STEM_SHARES_IDLE 2       /* cpu.shares while a stem: the lowest weight (v1 minimum) */
#define STEM_SHARES_LIVE 1024    /* an instance's default weight */
#define STEM_START_MS 30000      /* a stem starts at the lowest weight: slow on a busy host */
#define STEM_RETRY_MS 2000       /* after a failed stem start, per key */
#define STEM_MAX_KEYS 32
#define STEM_HELPER_STACK (64u * 1024u)

typedef struct stem_key {
    struct stem_key *next;
    char runtime[32];
    char interpreter[PATH_MAX];   /* resolved: never NULL */
    char runtimes_dir[PATH_MAX];
    int64_t memory_mb;            /* node: its heap limit is fixed at start; python: 0 */
    sandbox_instance **idle;      /* oldest first */
    int64_t *born;
    size_t nidle;
    int64_t starting, retry_at;
} stem_key;

struct sandbox_stem_pool {
    pthread_mutex_t lock;
    pthread_cond_t wake, changed;
    stem_key *keys;
    size_t nkeys;
    sandbox_stem_config cfg;
    atomic_bool enabled;          /* cleared for good when the host refuses the mount API */
    bool stop, thread_started;
    pthread_t thread;
    metric *m_cells;
};

/* ---------------------------------------------------------------- keys */

static const char *family_of(const sandbox_spec *s)
{
    return s->runtime && fnspec_runtime_valid(s->runtime) == ML_OK ? fnspec_runtime_family(s->runtime) : "";
}

static bool is_node(const char *fam)
{
    return strcmp(fam, "nodejs") == 0;
}

static const char *interp_of(const sandbox_spec *s)
{
    if (s->interpreter)
        return s->interpreter;
    return is_node(family_of(s)) ? sb_host.node : "/usr/bin/python3";
}

static bool key_matches(const stem_key *k, const sandbox_spec *s)
{
    int64_t mb = is_node(family_of(s)) ? s->memory_mb : 0;

    return strcmp(k->runtime, s->runtime) == 0 && strcmp(k->interpreter, interp_of(s)) == 0 &&
           strcmp(k->runtimes_dir, s->runtimes_dir) == 0 && k->memory_mb == mb;
}

/* spec's key, created when absent (at most STEM_MAX_KEYS). Called with the lock held. */
static stem_key *key_get(sandbox_stem_pool *sp, const sandbox_spec *s)
{
    stem_key *k;

    for (k = sp->keys; k; k = k->next)
        if (key_matches(k, s))
            return k;
    if (sp->nkeys >= STEM_MAX_KEYS || !(k = calloc(1, sizeof(*k))))
        return NULL;
    k->idle = calloc((size_t)sp->cfg.per_runtime, sizeof(*k->idle));
    k->born = calloc((size_t)sp->cfg.per_runtime, sizeof(*k->born));
    if (!k->idle || !k->born || ml_strlcpy(k->runtime, s->runtime, sizeof(k->runtime)) != ML_OK ||
        ml_strlcpy(k->interpreter, interp_of(s), sizeof(k->interpreter)) != ML_OK ||
        ml_strlcpy(k->runtimes_dir, s->runtimes_dir, sizeof(k->runtimes_dir)) != ML_OK) {
        free(k->idle);
        free(k->born);
        free(k);
        return NULL;
    }
    k->memory_mb = is_node(family_of(s)) ? s->memory_mb : 0;
    k->next = sp->keys;
    sp->keys = k;
    sp->nkeys++;
    return k;
}

/* Removes idle stem i of k (lock held); the caller destroys it. */
static sandbox_instance *key_remove(stem_key *k, size_t i)
{
    sandbox_instance *in = k->idle[i];

    memmove(k->idle + i, k->idle + i + 1, (k->nidle - i - 1) * sizeof(*k->idle));
    memmove(k->born + i, k->born + i + 1, (k->nidle - i - 1) * sizeof(*k->born));
    k->nidle--;
    return in;
}

/* ---------------------------------------------------------------- eligibility */

/* Variables the interpreter reads while it starts (a stem has started already with the
 * platform's): a function setting one starts the usual way, so it behaves as it always did. */
static bool env_affects_start(const char *kv)
{
    static const char *const prefixes[] = { "LANG=", "LC_", "LANGUAGE=", "TZ=", "NODE_", "UV_",
                                            "PYTHON", "LD_", "MALLOC_", "GLIBC_TUNABLES=",
                                            "OPENSSL_", "SSL_CERT_", "ICU_" };

    for (size_t i = 0; i < ML_ARRAY_LEN(prefixes); i++)
        if (strncmp(kv, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

bool sandbox_stem_eligible(const sandbox_spec *spec)
{
    const char *fam = family_of(spec);

    if (spec->network || !spec->runtimes_dir || (strcmp(fam, "python3") != 0 && !is_node(fam)))
        return false;
    if (is_node(fam) && !spec->interpreter && !sb_host.node[0])
        return false;
    for (size_t i = 0; spec->env && spec->env[i]; i++)
        if (env_affects_start(spec->env[i]))
            return false;
    return true;
}

/* ---------------------------------------------------------------- the refill thread */

/* Starts one stem of k (lock not held). */
static sandbox_instance *stem_start(const stem_key *k, int64_t pids_max)
{
    sandbox_spec s = { .runtime = k->runtime, .interpreter = k->interpreter, .handler = "",
                       .runtimes_dir = k->runtimes_dir, .function_name = "", .function_version = "",
                       .memory_mb = k->memory_mb ? k->memory_mb : STEM_PY_MEMORY_MB,
                       .pids_max = pids_max };
    sandbox_instance *in = NULL;
    char err[256] = "";

    if (sb_stem_launch(&s, STEM_SHARES_IDLE, ml_now_ms() + STEM_START_MS, &in, err, sizeof(err)) != ML_OK) {
        ml_log_kv(ML_LOG_WARN, "stem cell did not start", "runtime", k->runtime, "error", err, NULL);
        return NULL;
    }
    return in;
}

/* The next piece of work (lock held): a key short of stems (*start), or an idle stem past
 * its age (*old, removed). False when there is none. */
static bool next_work(sandbox_stem_pool *sp, int64_t now, stem_key **start, sandbox_instance **old)
{
    int64_t max_age = sp->cfg.max_age_ms > 0 ? sp->cfg.max_age_ms : STEM_MAX_AGE_MS;

    *start = NULL;
    *old = NULL;
    if (!sp->enabled)
        return false;
    for (stem_key *k = sp->keys; k; k = k->next) {
        if (k->nidle && now - k->born[0] >= max_age) {
            *old = key_remove(k, 0);
            return true;
        }
        if ((int64_t)k->nidle + k->starting < sp->cfg.per_runtime && now >= k->retry_at && !*start)
            *start = k;
    }
    return *start != NULL;
}

static void timed_wait(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

static void *refill_main(void *arg)
{
    sandbox_stem_pool *sp = arg;
    struct sched_param none = { 0 };

    /* Background work: it must not take the CPU from invocations (the stems themselves
     * start in a cpu cgroup of the lowest weight). */
    (void)pthread_setschedparam(pthread_self(), SCHED_BATCH, &none);
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    pthread_mutex_lock(&sp->lock);
    while (!sp->stop) {
        stem_key *k;
        sandbox_instance *old, *in;

        if (!next_work(sp, ml_now_ms(), &k, &old)) {
            timed_wait(&sp->wake, &sp->lock, 1000);
            continue;
        }
        if (old) {
            pthread_mutex_unlock(&sp->lock);
            sandbox_destroy(old);
            pthread_mutex_lock(&sp->lock);
            continue;
        }
        k->starting++;
        pthread_mutex_unlock(&sp->lock);
        in = stem_start(k, sp->cfg.pids_max > 0 ? sp->cfg.pids_max : 64);
        pthread_mutex_lock(&sp->lock);
        k->starting--;
        if (!in) {
            k->retry_at = ml_now_ms() + STEM_RETRY_MS;
        } else if (sp->stop || (int64_t)k->nidle >= sp->cfg.per_runtime) {
            pthread_mutex_unlock(&sp->lock);
            sandbox_destroy(in);
            pthread_mutex_lock(&sp->lock);
        } else {
            k->idle[k->nidle] = in;
            k->born[k->nidle++] = ml_now_ms();
        }
        pthread_cond_broadcast(&sp->changed);
    }
    pthread_mutex_unlock(&sp->lock);
    return NULL;
}

/* ---------------------------------------------------------------- metrics */

static void collect(metrics_registry *reg, void *ud)
{
    sandbox_stem_pool *sp = ud;
    metric_sample samples[STEM_MAX_KEYS * 2];
    const char *values[STEM_MAX_KEYS * 2][2];
    size_t n = 0;

    ML_UNUSED(reg);
    pthread_mutex_lock(&sp->lock);
    for (stem_key *k = sp->keys; k; k = k->next) {
        const double counts[2] = { (double)k->nidle, (double)k->starting };
        static const char *const states[2] = { "idle", "starting" };
        for (size_t st = 0; st < 2; st++) {
            size_t i = 0;
            while (i < n && !(strcmp(values[i][0], k->runtime) == 0 && strcmp(values[i][1], states[st]) == 0))
                i++;
            if (i == n && n < ML_ARRAY_LEN(samples)) {
                values[n][0] = k->runtime;
                values[n][1] = states[st];
                samples[n] = (metric_sample){ values[n], 0 };
                n++;
            }
            if (i < n)
                samples[i].value += counts[st];
        }
    }
    metric_gauge_replace(sp->m_cells, samples, n);
    pthread_mutex_unlock(&sp->lock);
}

/* ---------------------------------------------------------------- the pool */

sandbox_stem_pool *sandbox_stem_pool_new(const sandbox_stem_config *cfg)
{
    const unsigned need = SANDBOX_F_NAMESPACES | SANDBOX_F_CGROUP_MEMORY | SANDBOX_F_CGROUP_PIDS;
    sandbox_stem_pool *sp = calloc(1, sizeof(*sp));

    if (!sp)
        return NULL;
    sp->cfg = *cfg;
    pthread_mutex_init(&sp->lock, NULL);
    pthread_cond_init(&sp->wake, NULL);
    pthread_cond_init(&sp->changed, NULL);
    sp->enabled = cfg->per_runtime > 0 && sb_host.ready && (sb_host.features & need) == need;
#if defined(__SANITIZE_THREAD__)
    /* TSan cannot follow the CLONE_VM mount helper on the caller's TLS (a test_stem child spun
     * for minutes): TSan builds start every instance fresh; the other builds test stems. */
    sp->enabled = false;
#endif
    if (cfg->per_runtime > 0 && !sp->enabled)
        ml_log_warn("stem cells off: they need namespaces and the memory and pids cgroups");
    if (cfg->metrics) {
        sp->m_cells = metrics_gauge(cfg->metrics, "minilambda_stem_cells",
                                    "Sandboxes started ahead (stem cells) by runtime and state.",
                                    "runtime,state");
        if (sp->m_cells)
            metrics_add_collector(cfg->metrics, collect, sp);
    }
    if (sp->enabled && pthread_create(&sp->thread, NULL, refill_main, sp) == 0)
        sp->thread_started = true;
    else
        sp->enabled = false;
    return sp;
}

void sandbox_stem_pool_free(sandbox_stem_pool *sp)
{
    stem_key *k;

    if (!sp)
        return;
    pthread_mutex_lock(&sp->lock);
    sp->stop = true;
    pthread_cond_broadcast(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
    if (sp->thread_started)
        pthread_join(sp->thread, NULL);
    if (sp->cfg.metrics && sp->m_cells)
        metrics_remove_collector(sp->cfg.metrics, collect, sp);
    while ((k = sp->keys)) {
        sp->keys = k->next;
        for (size_t i = 0; i < k->nidle; i++)
            sandbox_destroy(k->idle[i]);
        free(k->idle);
        free(k->born);
        free(k);
    }
    pthread_cond_destroy(&sp->wake);
    pthread_cond_destroy(&sp->changed);
    pthread_mutex_destroy(&sp->lock);
    free(sp);
}

void sandbox_stem_want(sandbox_stem_pool *sp, const sandbox_spec *spec)
{
    if (!sp || !sp->enabled || !sandbox_stem_eligible(spec))
        return;
    pthread_mutex_lock(&sp->lock);
    if (key_get(sp, spec))
        pthread_cond_signal(&sp->wake);
    pthread_mutex_unlock(&sp->lock);
}

void sandbox_stem_counts(sandbox_stem_pool *sp, int64_t *idle, int64_t *starting)
{
    *idle = *starting = 0;
    if (!sp)
        return;
    pthread_mutex_lock(&sp->lock);
    for (stem_key *k = sp->keys; k; k = k->next) {
        *idle += (int64_t)k->nidle;
        *starting += k->starting;
    }
    pthread_mutex_unlock(&sp->lock);
}

int sandbox_stem_wait_ready(sandbox_stem_pool *sp, const sandbox_spec *spec, int64_t n,
                            int64_t timeout_ms)
{
    int64_t deadline = ml_now_ms() + timeout_ms;
    int rc = ML_ERR;
    stem_key *k;

    if (!sp || !sp->enabled || !sandbox_stem_eligible(spec))
        return ML_ERR;
    pthread_mutex_lock(&sp->lock);
    if ((k = key_get(sp, spec)))
        pthread_cond_signal(&sp->wake);
    while (k && rc != ML_OK) {
        if ((int64_t)k->nidle >= n)
            rc = ML_OK;
        else if (ml_now_ms() >= deadline)
            break;
        else
            timed_wait(&sp->changed, &sp->lock, 50);
    }
    pthread_mutex_unlock(&sp->lock);
    return rc;
}

/* ---------------------------------------------------------------- specialising */

/* The function's memory and pids limits on the stem's cgroups; ML_ERR (the stem is refused)
 * when it already uses more memory than the function may. */
static int set_limits(sandbox_instance *in, const sandbox_spec *s, int64_t stem_pids, char *err,
                      size_t errlen)
{
    char path[PATH_MAX], val[32], usage[32];
    int64_t used = 0, limit = s->memory_mb << 20, pids = s->pids_max ? s->pids_max : 64;
    bool memsw_first = limit > (in->memory_mb << 20);   /* raising: memsw may never be below */

    if (ml_snprintf(path, sizeof(path), "%s/memory.usage_in_bytes", in->cg[0]) != ML_OK ||
        sb_read_file(path, usage, sizeof(usage)) != ML_OK ||
        (usage[strcspn(usage, "\n")] = '\0', ml_parse_int64(usage, 0, INT64_MAX, &used)) != ML_OK)
        return sb_errf(err, errlen, "Sandbox.SetupError: stem memory usage unknown");
    /* RLIMIT_NPROC (pids_max + margin) was fixed at the stem's exec: changing another
     * process's limits needs CAP_SYS_RESOURCE, which a container may lack */
    if ((sb_host.features & SANDBOX_F_UID) && pids != stem_pids)
        return sb_errf(err, errlen, "Sandbox.SetupError: stem pids_max %" PRId64 ", function %" PRId64,
                       stem_pids, pids);
    if (used > limit)
        return sb_errf(err, errlen, "Sandbox.SetupError: stem uses %" PRId64 " bytes, above the "
                       "function's %" PRId64 " MB", used, s->memory_mb);
    if (ml_snprintf(val, sizeof(val), "%" PRId64, limit) != ML_OK)
        return ML_ERR;
    for (int pass = 0; pass < 2; pass++) {
        bool memsw = (pass == 0) == memsw_first;
        if (memsw && !sb_host.memsw)
            continue;
        if (ml_snprintf(path, sizeof(path), "%s/%s", in->cg[0],
                        memsw ? "memory.memsw.limit_in_bytes" : "memory.limit_in_bytes") != ML_OK ||
            sb_write_file(path, val) != ML_OK)
            return sb_errf(err, errlen, "Sandbox.SetupError: stem memory limit: %s", strerror(errno));
    }
    in->memory_mb = s->memory_mb;
    if (ml_snprintf(val, sizeof(val), "%" PRId64, pids) != ML_OK ||
        ml_snprintf(path, sizeof(path), "%s/pids.max", in->cg[1]) != ML_OK || sb_write_file(path, val) != ML_OK)
        return sb_errf(err, errlen, "Sandbox.SetupError: stem pids limit: %s", strerror(errno));
    return ML_OK;
}

typedef struct mount_job {
    int mntns, tree;
    const char *tmp_opts;
    volatile int fail_step, fail_errno;
} mount_job;

/* The helper: joins the stem's mount namespace, sizes its /tmp as the function's, and
 * attaches the code tree at /var/task. Runs on a borrowed address space (CLONE_VM): only
 * system calls. */
__attribute__((no_sanitize_address)) static int mount_child(void *arg)
{
    mount_job *j = arg;

    if (syscall(SYS_setns, j->mntns, CLONE_NEWNS) != 0)
        j->fail_step = 1;
    else if (mount(NULL, "/tmp", NULL, MS_REMOUNT | MS_NOSUID | MS_NODEV, j->tmp_opts) != 0)
        j->fail_step = 2;
    else if (syscall(SYS_move_mount, j->tree, "", AT_FDCWD, SB_TASK, MOVE_MOUNT_F_EMPTY_PATH) != 0)
        j->fail_step = 3;
    if (j->fail_step)
        j->fail_errno = errno;
    _exit(j->fail_step ? 1 : 0);
}

/* Shows code_dir read-only, nosuid, nodev at the stem's /var/task (open_tree in the host,
 * move_mount from a short-lived helper inside its mount namespace). *refused: the host does
 * not allow these calls at all (EPERM/ENOSYS, e.g. an older container seccomp profile). */
static int mount_code(sandbox_instance *in, const sandbox_spec *s, bool *refused, char *err,
                      size_t errlen)
{
    static const char *const steps[] = { "", "setns", "remount /tmp", "move_mount" };
    struct mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV };
    char path[64], opts[48];
    mount_job j = { .mntns = -1, .tree = -1, .tmp_opts = opts };
    char *stack = NULL;
    sigset_t all, old;
    pid_t pid;
    int rc = ML_ERR, st = 0;

    if (ml_snprintf(path, sizeof(path), "/proc/%d/ns/mnt", (int)in->pid) != ML_OK ||
        ml_snprintf(opts, sizeof(opts), "size=%" PRId64 "m", s->memory_mb) != ML_OK)
        goto out;
    if ((j.mntns = open(path, O_RDONLY | O_CLOEXEC)) < 0 ||
        (j.tree = (int)syscall(SYS_open_tree, AT_FDCWD, s->code_dir, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)) < 0 ||
        syscall(SYS_mount_setattr, j.tree, "", AT_EMPTY_PATH, &attr, sizeof(attr)) != 0) {
        *refused = errno == EPERM || errno == ENOSYS;
        sb_errf(err, errlen, "Sandbox.SetupError: stem code tree: %s", strerror(errno));
        goto out;
    }
    if (!(stack = malloc(STEM_HELPER_STACK)))
        goto out;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pid = clone(mount_child, stack + STEM_HELPER_STACK, CLONE_VM | CLONE_VFORK | SIGCHLD, &j);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pid < 0) {
        sb_errf(err, errlen, "Sandbox.SetupError: stem mount helper: %s", strerror(errno));
        goto out;
    }
    while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR)
        ;
    if (j.fail_step || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        *refused = j.fail_step != 2 && (j.fail_errno == EPERM || j.fail_errno == ENOSYS);
        sb_errf(err, errlen, "Sandbox.SetupError: stem %s: %s", steps[j.fail_step % 4], strerror(j.fail_errno));
        goto out;
    }
    rc = ML_OK;
out:
    if (rc != ML_OK && !err[0])
        sb_errf(err, errlen, "Sandbox.SetupError: stem mount: out of memory");
    if (j.mntns >= 0)
        close(j.mntns);
    if (j.tree >= 0)
        close(j.tree);
    free(stack);
    return rc;
}

/* The "specialise" message: header {"type","handler"}, body the JSON array of the
 * environment exactly as sandbox_start would exec it. *hdr and *body owned by the caller. */
static int specialise_msg(const sandbox_spec *s, char **hdr, char **body, char *err, size_t errlen)
{
    sb_plan *p = calloc(1, sizeof(*p));
    char **env = NULL, rt[PATH_MAX];
    cJSON *h = cJSON_CreateObject(), *a = cJSON_CreateArray();
    int rc = ML_ERR;

    *hdr = *body = NULL;
    if (!p || !h || !a || ml_snprintf(rt, sizeof(rt), "%s/%s", s->runtimes_dir, family_of(s)) != ML_OK) {
        sb_errf(err, errlen, "Sandbox.SetupError: out of memory");
        goto out;
    }
    if (!(env = sb_build_env(p, s, true, rt, err, errlen)))
        goto out;
    for (size_t i = 0; env[i]; i++)
        if (strncmp(env[i], "PWD=", 4) != 0 && !cJSON_AddItemToArray(a, cJSON_CreateString(env[i])))
            goto out;
    /* what the init shell exports to the runtime it starts on the fresh path */
    if (!cJSON_AddItemToArray(a, cJSON_CreateString("PWD=" SB_TASK)))
        goto out;
    if (!cJSON_AddStringToObject(h, "type", "specialise") || !cJSON_AddStringToObject(h, "handler", s->handler) ||
        !(*hdr = cJSON_PrintUnformatted(h)) || !(*body = cJSON_PrintUnformatted(a)))
        goto out;
    rc = ML_OK;
out:
    if (rc != ML_OK && !err[0])
        sb_errf(err, errlen, "Sandbox.SetupError: out of memory");
    if (rc != ML_OK) {
        free(*hdr);
        free(*body);
        *hdr = *body = NULL;
    }
    cJSON_Delete(h);
    cJSON_Delete(a);
    free(env);
    free(p);
    return rc;
}

/* The stem becomes s's instance: names, limits, code, then specialise and ready. ML_ERR with
 * err; *fallback when nothing of the function ran yet (the caller may start the usual way). */
static int specialise(sandbox_instance *in, const sandbox_spec *s, int64_t stem_pids, int64_t t0,
                      bool *fallback, bool *refused, char *err, size_t errlen)
{
    int64_t deadline = ml_now_ms() + (s->init_timeout_ms > 0 ? s->init_timeout_ms : 10000);
    char *hdr = NULL, *body = NULL, *name = strdup(s->function_name), *ver = strdup(s->function_version);
    proto_writer w;
    int rc = ML_ERR;

    *fallback = true;
    if (!name || !ver) {
        sb_errf(err, errlen, "Sandbox.SetupError: out of memory");
        goto out;
    }
    free(in->function_name);
    free(in->function_version);
    in->function_name = name;
    in->function_version = ver;
    name = ver = NULL;
    in->timeout_ms = s->timeout_s > 0 ? s->timeout_s * 1000 : 0;
    sb_log_drain(in);            /* whatever the stem printed is not the function's */
    in->log.head = in->log.len = 0;
    if (!sandbox_alive(in) || set_limits(in, s, stem_pids, err, errlen) != ML_OK ||
        mount_code(in, s, refused, err, errlen) != ML_OK ||
        sb_cgroup_cpu_shares(in, STEM_SHARES_LIVE, err, errlen) != ML_OK)
        goto out;
    *fallback = false;   /* from here on, what happens is the function's start */
    if (specialise_msg(s, &hdr, &body, err, errlen) != ML_OK ||
        proto_writer_init(&w, hdr, strlen(hdr), body, strlen(body)) != ML_OK) {
        if (!err[0])
            sb_errf(err, errlen, "Sandbox.InvalidConfig: function settings too long");
        goto out;
    }
    in->flog = s->log;
    if (sb_start_handshake(in, &w, deadline, err, errlen) != ML_OK ||
        sb_cgroup_cpu_limit(in, err, errlen) != ML_OK)
        goto out;
    in->init_us = sb_now_us() - t0;
    rc = ML_OK;
out:
    if (rc != ML_OK)
        sb_log_drain(in);   /* the last of what a failed start printed */
    in->flog = NULL;
    free(name);
    free(ver);
    free(hdr);
    free(body);
    return rc;
}

int sandbox_start_from_stem(sandbox_stem_pool *sp, const sandbox_spec *spec,
                            sandbox_instance **out, char *err, size_t errlen)
{
    int64_t t0 = sb_now_us();
    sandbox_instance *in = NULL;
    bool fallback = true, refused = false;
    stem_key *k;
    int rc;

    *out = NULL;
    if (!sp || !sp->enabled || !sandbox_stem_eligible(spec))
        return SANDBOX_STEM_NONE;
    if (sb_check_spec(spec, err, errlen) != ML_OK)
        return ML_ERR;   /* what sandbox_start would answer */
    pthread_mutex_lock(&sp->lock);
    if ((k = key_get(sp, spec)) && k->nidle)
        in = key_remove(k, k->nidle - 1);   /* the newest */
    if (k)
        pthread_cond_signal(&sp->wake);    /* refill it */
    pthread_mutex_unlock(&sp->lock);
    if (!in)
        return SANDBOX_STEM_NONE;
    rc = specialise(in, spec, sp->cfg.pids_max > 0 ? sp->cfg.pids_max : 64, t0, &fallback, &refused,
                    err, errlen);
    if (rc == ML_OK) {
        *out = in;
        return ML_OK;
    }
    sandbox_destroy(in);
    if (refused && atomic_exchange(&sp->enabled, false))
        ml_log_kv(ML_LOG_WARN, "stem cells off: the host refuses the mount API they need", "error", err, NULL);
    if (fallback) {
        ml_log_kv(ML_LOG_WARN, "stem cell refused", "function", spec->function_name, "error", err, NULL);
        err[0] = '\0';
        return SANDBOX_STEM_NONE;
    }
    return ML_ERR;
}
