/* sandbox_run.c — sandbox_run: one command (the build-worker's pip / npm) run to its end in a
 * sandbox of its own, with the same plan and child as a function instance (sandbox_plan.c,
 * sandbox_child.c), the caller's directories bound in, and its output drained into a sink.
 * No protocol: the exchange loop waits for the init's death or the deadline. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "sandbox-int.h"

#define RUN_MEMORY_MB 1024
#define RUN_MEMORY_MIN_MB 32
#define RUN_MEMORY_MAX_MB 65536
#define RUN_PIDS 256
#define RUN_PIDS_MAX 4096
#define RUN_TIMEOUT_MS 300000
#define RUN_TIMEOUT_MAX_MS (24 * 3600 * 1000)
#define RUN_MAX_ARGS 256
#define RUN_MAX_ENV 1024
#define RUN_PATH_MAX 256

/* a == b, or a is below b (component-wise). */
static bool path_within(const char *a, const char *b)
{
    size_t n = strlen(b);

    return strncmp(a, b, n) == 0 && (a[n] == '\0' || a[n] == '/');
}

/* A bind's path: strictly below /var, /opt or /work (the rest of the root is fixed: /usr,
 * /etc, /proc, /dev, /tmp ...), plain components, no "." or "..", not too deep. */
static bool bind_path_ok(const char *path)
{
    static const char *const bases[] = { "/var/", "/opt/", "/work/" };
    bool base = false;
    size_t depth = 0, len;

    if (!path || (len = strlen(path)) >= RUN_PATH_MAX || path[len - 1] == '/')
        return false;
    for (size_t i = 0; i < ML_ARRAY_LEN(bases); i++)
        base = base || strncmp(path, bases[i], strlen(bases[i])) == 0;
    if (!base)
        return false;
    for (const char *c = path; *c; ) {
        size_t n;
        c++;   /* the '/' */
        n = strcspn(c, "/");
        if (n == 0 || (n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.') ||
            strspn(c, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") < n)
            return false;
        depth++;
        c += n;
    }
    return depth <= SB_BIND_DEPTH;
}

/* One bind against the host and the binds before it. prefix: the interpreter's install dir
 * shown at its own path ("" if none). */
static int check_bind(const sandbox_run_spec *s, size_t i, const char *prefix, char *err, size_t errlen)
{
    const sandbox_bind *b = &s->binds[i];
    struct stat st;

    if (!bind_path_ok(b->path))
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: bind path \"%.64s\" must be absolute, "
                       "below /var, /opt or /work, of plain components", b->path ? b->path : "");
    if ((sb_host.node_prefix[0] && (path_within(b->path, sb_host.node_prefix) ||
                                    path_within(sb_host.node_prefix, b->path))) ||
        (prefix[0] && (path_within(b->path, prefix) || path_within(prefix, b->path))))
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: bind path %s collides with an "
                       "interpreter's install dir", b->path);
    for (size_t j = 0; j < i; j++)
        if (path_within(b->path, s->binds[j].path) || path_within(s->binds[j].path, b->path))
            return sb_errf(err, errlen, "Sandbox.InvalidConfig: bind paths %s and %s overlap",
                           s->binds[j].path, b->path);
    /* a writable one gets chowned: a real directory, not a link to something else */
    if (!b->host || (b->writable ? lstat(b->host, &st) : stat(b->host, &st)) != 0)
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: bind source %s: %s",
                       b->host ? b->host : "(null)", b->host ? strerror(errno) : "missing");
    if (!S_ISDIR(st.st_mode))
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: bind source %s is not a directory", b->host);
    return ML_OK;
}

static int check_run(const sandbox_run_spec *s, const char *prefix, char *err, size_t errlen)
{
    size_t n = 0;

    if (!sb_host.ready)
        return sb_errf(err, errlen, "Sandbox.SetupError: sandbox_init was not called");
    /* without a mount namespace the binds, the clean root and the kill of the whole tree are
     * all missing: hostile installers do not run on the host itself */
    if (!(sb_host.features & SANDBOX_F_NAMESPACES))
        return sb_errf(err, errlen, "Sandbox.Unavailable: one-shot commands need namespaces, "
                       "which this host does not allow (see sandbox_init's report)");
    if (!s->argv || !s->argv[0] || s->argv[0][0] != '/')
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: argv[0] must be an absolute path");
    while (s->argv[n] && n <= RUN_MAX_ARGS)
        n++;
    if (n > RUN_MAX_ARGS)
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: more than %d arguments", RUN_MAX_ARGS);
    for (n = 0; s->env && s->env[n]; n++)
        if (n >= RUN_MAX_ENV || s->env[n][0] == '=' || !strchr(s->env[n], '='))
            return sb_errf(err, errlen, "Sandbox.InvalidConfig: bad or too many environment "
                           "entries (\"KEY=VALUE\", at most %d)", RUN_MAX_ENV);
    if (s->cwd && s->cwd[0] != '/')
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: cwd must be absolute");
    if ((s->memory_mb && (s->memory_mb < RUN_MEMORY_MIN_MB || s->memory_mb > RUN_MEMORY_MAX_MB)) ||
        s->pids_max < 0 || s->pids_max > RUN_PIDS_MAX || s->timeout_ms < 0 ||
        s->timeout_ms > RUN_TIMEOUT_MAX_MS)
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: memory_mb %d..%d, pids_max 0..%d, "
                       "timeout_ms 0..%d", RUN_MEMORY_MIN_MB, RUN_MEMORY_MAX_MB, RUN_PIDS_MAX,
                       RUN_TIMEOUT_MAX_MS);
    if (s->join_netns && (s->netns_fd < 0 || fcntl(s->netns_fd, F_GETFD) < 0))
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: join_netns without a valid netns_fd");
    if (s->nbinds > SB_MAX_BINDS || (s->nbinds && !s->binds))
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: at most %d binds", SB_MAX_BINDS);
    for (size_t i = 0; i < s->nbinds; i++)
        if (check_bind(s, i, prefix, err, errlen) != ML_OK)
            return ML_ERR;
    return ML_OK;
}

/* A run's bookkeeping is an instance's (sandbox-int.h) without the protocol: sandbox_destroy
 * kills, reaps and frees it. Owned by the caller. */
static sandbox_instance *run_new(int64_t memory_mb, const sandbox_sink *log)
{
    sandbox_instance *in = sb_instance_alloc(memory_mb, true);

    if (in)
        in->flog = log;
    return in;
}

/* The writable binds' top dirs become the run's (the files below stay the caller's). */
static int chown_writable(const sandbox_run_spec *s, unsigned uid, char *err, size_t errlen)
{
    if (!(sb_host.features & SANDBOX_F_UID))
        return ML_OK;
    for (size_t i = 0; i < s->nbinds; i++)
        if (s->binds[i].writable && lchown(s->binds[i].host, uid, uid) != 0)
            return sb_errf(err, errlen, "Sandbox.SetupError: chown %s: %s", s->binds[i].host,
                           strerror(errno));
    return ML_OK;
}

/* Node reserves far more address space than it uses: RLIMIT_AS (the fallback without a
 * memory cgroup) would break it, as for the nodejs runtime. */
static bool runs_node(const char *argv0)
{
    const char *base = strrchr(argv0, '/') ? strrchr(argv0, '/') + 1 : argv0;

    return (sb_host.node[0] && strcmp(argv0, sb_host.node) == 0) || strncmp(base, "node", 4) == 0 ||
           strncmp(base, "npm", 3) == 0 || strncmp(base, "npx", 3) == 0;
}

/* argv under the init shell, envp exactly the caller's; the arrays are the caller's (free),
 * the strings stay spec's. */
static int run_arrays(const sandbox_run_spec *s, char ***argv, char ***envp)
{
    size_t na = 0, ne = 0;

    while (s->argv[na])
        na++;
    while (s->env && s->env[ne])
        ne++;
    *argv = calloc(na + 5, sizeof(**argv));
    *envp = calloc(ne + 1, sizeof(**envp));
    if (!*argv || !*envp)
        return ML_ERR;
    (*argv)[0] = SB_SHELL;
    (*argv)[1] = "-c";
    (*argv)[2] = SB_INIT_SCRIPT;
    (*argv)[3] = "minilambda-init";
    for (size_t i = 0; i < na; i++)
        (*argv)[4 + i] = (char *)s->argv[i];
    for (size_t i = 0; i < ne; i++)
        (*envp)[i] = (char *)s->env[i];
    return ML_OK;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* Clones the plan: stdout/stderr pipes (read ends become in's, non-blocking), stdin
 * /dev/null, the cgroups' tasks files. */
static int run_launch(sandbox_instance *in, const sandbox_run_spec *s, const sb_launch *l, char *err,
                      size_t errlen)
{
    sb_plan *p = calloc(1, sizeof(*p));
    int lp[2][2] = { { -1, -1 }, { -1, -1 } };
    char **argv = NULL, **envp = NULL;
    int rc = ML_ERR;

    if (!p) {
        sb_errf(err, errlen, "Sandbox.SetupError: out of memory");
        goto out;
    }
    p->null_fd = -1;
    if (pipe2(lp[0], O_CLOEXEC) != 0 || pipe2(lp[1], O_CLOEXEC) != 0 ||
        (p->null_fd = sb_open_null()) < 0) {
        sb_errf(err, errlen, "Sandbox.SetupError: fds: %s", strerror(errno));
        goto out;
    }
    sb_plan_base(p, l, sb_host.features);
    p->out_fd = lp[0][1];
    p->err_fd = lp[1][1];
    p->cwd = s->cwd ? s->cwd : "/";
    if (run_arrays(s, &argv, &envp) != ML_OK || p->arena_full) {
        sb_errf(err, errlen, "Sandbox.SetupError: %s", p->arena_full ? "launch plan too large (binds)"
                                                                     : "out of memory");
        goto out;
    }
    p->argv = argv;
    p->envp = envp;
    in->pid = sb_clone(p, &in->pidfd, err, errlen);
    if (in->pid < 0)
        goto out;
    for (int j = 0; j < 2; j++) {
        in->log_fd[j] = lp[j][0];
        lp[j][0] = -1;
        if (fcntl(in->log_fd[j], F_SETFL, O_NONBLOCK) != 0) {
            sb_errf(err, errlen, "Sandbox.SetupError: fcntl: %s", strerror(errno));
            goto out;
        }
    }
    rc = ML_OK;
out:
    for (int j = 0; j < 2; j++)
        for (int i = 0; i < 2; i++)
            close_fd(&lp[j][i]);
    if (p)
        close_fd(&p->null_fd);
    free(argv);
    free(envp);
    free(p);
    return rc;
}

/* Waits for the end (or kills at the deadline), drains what is left, fills out. */
static void run_wait(sandbox_instance *in, int64_t deadline_ms, sandbox_run_result *out)
{
    char why[160] = "";
    sb_outcome o = sb_exchange(in, NULL, deadline_ms, why, sizeof(why));
    int st;

    out->timed_out = o == EX_TIMEOUT;
    if (o == EX_BROKEN)   /* poll itself failed: nothing to wait for any more */
        ml_log_warn("sandbox_run: %s", why);
    /* peak before the cgroup goes; the kill takes the pid namespace with its init */
    out->max_memory_bytes = in->usage_fd >= 0 ? sb_read_int_at(in->usage_fd) : -1;
    sb_kill(in);
    /* the tree is gone, so the pipes end: what they still hold (at most a pipe buffer each) */
    for (int i = 0; i < 8 && (in->log_fd[0] >= 0 || in->log_fd[1] >= 0); i++)
        sb_log_drain(in);
    st = in->wait_status;
    out->exit_code = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1;
    out->oom = sb_oom_kills(in) > 0;
    out->pids_exhausted = sb_pids_refusals(in) > 0;
    sb_ring_take(&in->log, &out->tail);
}

int sandbox_run(const sandbox_run_spec *spec, sandbox_run_result *out, char *err, size_t errlen)
{
    char prefix[PATH_MAX] = "", name[64];
    int64_t memory_mb = spec->memory_mb ? spec->memory_mb : RUN_MEMORY_MB;
    int64_t pids_max = spec->pids_max ? spec->pids_max : RUN_PIDS;
    int64_t timeout_ms = spec->timeout_ms ? spec->timeout_ms : RUN_TIMEOUT_MS, t0;
    int cg_fd[SB_NCG] = { -1, -1, -1 };
    sandbox_instance *in = NULL;
    int rc = ML_ERR;

    memset(out, 0, sizeof(*out));
    out->exit_code = -1;
    out->max_memory_bytes = -1;
    if (err && errlen)
        err[0] = '\0';
    if (!sb_interp_prefix(spec->interpreter, prefix, sizeof(prefix)))
        prefix[0] = '\0';
    if (check_run(spec, prefix, err, errlen) != ML_OK)
        return ML_ERR;
    if (!(in = run_new(memory_mb, spec->log)))
        return sb_errf(err, errlen, "Sandbox.SetupError: out of memory");
    if ((in->uid_slot = sb_uid_alloc(&in->uid)) < 0) {
        sb_errf(err, errlen, "Sandbox.SetupError: all %u sandbox uids are in use", SB_UID_SLOTS);
        goto out;
    }
    in->uid = SB_RUN_UID_BASE + (unsigned)in->uid_slot;
    if (sb_instance_name(name, sizeof(name)) != ML_OK) {
        sb_errf(err, errlen, "Sandbox.SetupError: cgroup name too long");
        goto out;
    }
    /* the cpu quota from the start: unlike a function there is no init to speed up */
    if (sb_cgroup_create(in, memory_mb, pids_max, name, cg_fd, err, errlen) != ML_OK ||
        sb_cgroup_cpu_limit(in, err, errlen) != ML_OK ||
        chown_writable(spec, in->uid, err, errlen) != ML_OK)
        goto out;
    {
        sb_launch l = { .interp_prefix = prefix[0] ? prefix : NULL,
                        .network = spec->join_netns, .own_net = spec->join_netns,
                        .caller_net = spec->join_netns, .net_fd = spec->netns_fd,
                        .keep_packages = spec->host_packages, .binds = spec->binds,
                        .nbinds = spec->nbinds, .memory_mb = memory_mb, .pids_max = pids_max,
                        .uid = in->uid,
                        .rlimit_as = !(sb_host.features & SANDBOX_F_CGROUP_MEMORY) &&
                                     !runs_node(spec->argv[0]),
                        .cg_fd = { cg_fd[0], cg_fd[1], cg_fd[2] } };
        t0 = ml_now_ms();
        if (run_launch(in, spec, &l, err, errlen) != ML_OK)
            goto out;
    }
    run_wait(in, t0 + timeout_ms, out);
    out->duration_ms = ml_now_ms() - t0;
    rc = ML_OK;
out:
    for (int i = 0; i < SB_NCG; i++)
        close_fd(&cg_fd[i]);
    in->flog = NULL;
    sandbox_destroy(in);   /* cgroups removed, uid freed */
    return rc;
}

void sandbox_run_result_free(sandbox_run_result *r)
{
    if (!r)
        return;
    ml_buf_free(&r->tail);
    memset(r, 0, sizeof(*r));
}
