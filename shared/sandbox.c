/* sandbox.c — an instance's life: sandbox_start checks the spec, makes its cgroups, launches
 * the runtime and waits for "ready"; sandbox_destroy kills and frees it (see sandbox.h and
 * docs/sandbox.md; sandbox-int.h lists the other rooms). */
#include "sandbox.h"
#include "fnspec.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "netns.h"
#include "sandbox-int.h"

sandbox_instance *sb_instance_alloc(int64_t memory_mb, bool ns)
{
    sandbox_instance *in = calloc(1, sizeof(*in));

    if (!in)
        return NULL;
    in->pid = -1;
    in->pidfd = in->proto_fd = in->log_fd[0] = in->log_fd[1] = in->usage_fd = -1;
    in->uid_slot = -1;
    in->wait_status = -1;
    in->ns = ns;
    in->memory_mb = memory_mb;
    proto_reader_init(&in->rd, PROTO_HEADER_MAX);
    return in;
}

static sandbox_instance *instance_new(const sandbox_spec *s)
{
    sandbox_instance *in = sb_instance_alloc(s->memory_mb, sb_host.features & SANDBOX_F_NAMESPACES);

    if (!in)
        return NULL;
    in->timeout_ms = s->timeout_s > 0 ? s->timeout_s * 1000 : 0;
    in->function_name = strdup(s->function_name);
    in->function_version = strdup(s->function_version);
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

    sb_exit_text(in, how, sizeof(how));
    sb_ring_take(&in->log, &tail);
    t = ml_buf_cstr(&tail);
    /* the last ~512 bytes, from a line start when possible */
    if (tail.len > 512 && (nl = strchr(t + tail.len - 512, '\n')))
        t = nl + 1;
    if (sb_oom_kills(in) > 0)
        ml_snprintf_trunc(err, errlen, "Runtime.OutOfMemory: memory limit of %" PRId64 " MB exceeded "
                          "while loading the function: %s", in->memory_mb, t);
    else
        ml_snprintf_trunc(err, errlen, "Runtime.ExitError: runtime exited during init (%s%s%s): %s",
                          why ? why : "", why ? ", " : "", how, t);
    ml_buf_free(&tail);
}

/* Sends w (a stem's "specialise", or NULL) and waits for "ready" or "init_error". */
int sb_start_handshake(sandbox_instance *in, proto_writer *w, int64_t deadline, char *err, size_t errlen)
{
    char why[160] = "", type[32];
    sb_outcome o = sb_exchange(in, w, deadline, why, sizeof(why));

    if (o == EX_TIMEOUT) {
        sb_kill(in);
        ml_snprintf_trunc(err, errlen, "Runtime.InitTimeout: the function did not finish loading in time");
        return ML_ERR;
    }
    if (o != EX_MSG) {
        if (o == EX_BROKEN)
            sb_settle(in);
        start_died(in, o == EX_BROKEN ? why : NULL, err, errlen);
        return ML_ERR;
    }
    sb_header_type(&in->rd, type, sizeof(type));
    if (strcmp(type, "ready") == 0)
        return ML_OK;
    if (strcmp(type, "init_error") == 0) {
        cJSON *e = cJSON_ParseWithLength(ml_buf_cstr(&in->rd.body), in->rd.body.len);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "errorType");
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "errorMessage");
        ml_snprintf_trunc(err, errlen, "%s: %s", cJSON_IsString(t) ? t->valuestring : "Runtime.InitError",
                          cJSON_IsString(m) ? m->valuestring : "the handler could not be loaded");
        cJSON_Delete(e);
    } else {
        ml_snprintf_trunc(err, errlen, "Runtime.ExitError: the runtime sent \"%.32s\" instead of ready", type);
    }
    sb_kill(in);
    return ML_ERR;
}

/* The protocol socketpair, the stdout and stderr pipes (lp[0], lp[1]; read end [0]) and
 * /dev/null (all close-on-exec; the child dups its ends to fds 0-3). */
static int launch_fds(int sv[2], int lp[2][2], int *null_fd, char *err, size_t errlen)
{
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0 || pipe2(lp[0], O_CLOEXEC) != 0 ||
        pipe2(lp[1], O_CLOEXEC) != 0 || (*null_fd = sb_open_null()) < 0)
        return sb_errf(err, errlen, "Sandbox.SetupError: fds: %s", strerror(errno));
    return ML_OK;
}

/* Closes what is left of launch_fds' pairs (-1: taken or never opened). */
static void launch_fds_close(int sv[2], int lp[2][2])
{
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        for (int j = 0; j < 2; j++)
            if (lp[j][i] >= 0)
                close(lp[j][i]);
    }
}

/* After the clone: our ends of the channel and the output pipes become the instance's,
 * non-blocking. */
static int launch_adopt(sandbox_instance *in, int sv[2], int lp[2][2], char *err, size_t errlen)
{
    in->proto_fd = sv[0];
    sv[0] = -1;
    for (int j = 0; j < 2; j++) {
        in->log_fd[j] = lp[j][0];
        lp[j][0] = -1;
    }
    if (fcntl(in->proto_fd, F_SETFL, O_NONBLOCK) == 0 && fcntl(in->log_fd[0], F_SETFL, O_NONBLOCK) == 0 &&
        fcntl(in->log_fd[1], F_SETFL, O_NONBLOCK) == 0)
        return ML_OK;
    return sb_errf(err, errlen, "Sandbox.SetupError: fcntl: %s", strerror(errno));
}

/* An interpreter outside /usr (/opt/python3.12/bin/python3.12): its install dir, two levels
 * up, to show at the same path; false when it is under /usr (already shown) or none. */
bool sb_interp_prefix(const char *interpreter, char *out, size_t len)
{
    char *slash;

    if (!interpreter || strncmp(interpreter, "/usr/", 5) == 0 ||
        ml_strlcpy(out, interpreter, len) != ML_OK)
        return false;
    for (int i = 0; i < 2 && (slash = strrchr(out, '/')) && slash != out; i++)
        *slash = '\0';
    return out[0] == '/' && out[1] != '\0';
}

/* A stem's environment at exec: the platform's defaults and a marker (the function's
 * environment replaces it at specialise; nothing here is secret, /proc/self/environ keeps
 * showing it). */
static char *const stem_env[] = { "PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C.UTF-8", "TZ=UTC",
                                  "HOME=/tmp", "TMPDIR=/tmp", "MINILAMBDA_STEM=1", NULL };

/* argv plus the stem flag ("--stem": wait for specialise before loading a handler). */
static char **stem_argv(char **argv)
{
    size_t n = 0;

    while (argv && argv[n])
        n++;
    if (argv && n + 1 < 12)   /* sb_build_argv leaves room for 12 */
        argv[n] = "--stem";
    return argv;
}

/* The parts of sandbox_start around the clone: fds, plan, launch. A stem (stem true) gets no
 * code at /var/task and the generic environment. */
static int start_launch(sandbox_instance *in, const sandbox_spec *s, int cg_fd[SB_NCG], bool stem,
                        char *err, size_t errlen)
{
    sb_plan *p = calloc(1, sizeof(*p));
    char runtime_dir[PATH_MAX] = "", prefix[PATH_MAX];
    const char *fam = fnspec_runtime_family(s->runtime);
    int sv[2] = { -1, -1 }, lp[2][2] = { { -1, -1 }, { -1, -1 } };
    char **argv = NULL, **envp = NULL;
    int rc = ML_ERR, net_lease = -1;
    bool provided = strcmp(fam, "provided") == 0;
    sb_launch l = { .code_dir = stem ? NULL : s->code_dir, .network = s->network, .memory_mb = s->memory_mb,
                    .pids_max = s->pids_max ? s->pids_max : 64, .uid = in->uid,
                    .rlimit_as = !(sb_host.features & SANDBOX_F_CGROUP_MEMORY) &&
                                 strcmp(fam, "nodejs") != 0,
                    .cg_fd = { cg_fd[0], cg_fd[1], cg_fd[2] } };

    if (p)
        p->null_fd = -1;
    if (!p || (!provided && ml_snprintf(runtime_dir, sizeof(runtime_dir), "%s/%s",
                                        s->runtimes_dir, fam) != ML_OK)) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: out of memory or path too long");
        goto out;
    }
    l.runtime_dir = provided ? NULL : runtime_dir;
    l.interp_prefix = !provided && sb_interp_prefix(s->interpreter, prefix, sizeof(prefix)) ? prefix : NULL;
    if (launch_fds(sv, lp, &p->null_fd, err, errlen) != ML_OK)
        goto out;
    if (s->network && in->ns && netns_enabled()) {   /* its own namespace (netns.h) */
        if (netns_acquire(&net_lease, &l.net_fd, err, errlen) != ML_OK)
            goto out;
        l.own_net = true;
    }
    sb_plan_base(p, &l, sb_host.features);
    p->proto_fd = sv[1];
    p->out_fd = lp[0][1];
    p->err_fd = lp[1][1];
    p->cwd = in->ns ? SB_TASK : s->code_dir;
    envp = stem ? NULL : sb_build_env(p, s, in->ns, runtime_dir, err, errlen);
    argv = sb_build_argv(p, s, in->ns, runtime_dir);
    if (!envp && !stem)
        goto out;
    if (!argv || p->arena_full) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: launch plan too large");
        goto out;
    }
    p->argv = stem ? stem_argv(argv) : argv;
    p->envp = stem ? stem_env : envp;
    in->pid = sb_clone(p, &in->pidfd, err, errlen);
    netns_lease_end(net_lease, in->pid);   /* torn down after the instance exits */
    net_lease = -1;
    if (in->pid >= 0)
        rc = launch_adopt(in, sv, lp, err, errlen);
out:
    netns_lease_end(net_lease, -1);
    launch_fds_close(sv, lp);
    if (p && p->null_fd >= 0)
        close(p->null_fd);
    free(argv);
    free(envp);
    free(p);
    return rc;
}

int sb_check_spec(const sandbox_spec *s, char *err, size_t errlen)
{
    struct stat st;
    char path[PATH_MAX];
    bool others = sb_host.features & SANDBOX_F_UID;   /* the function runs as another uid */
    const fnspec_field *mem = fnspec_field_get(FNSPEC_MEMORY_MB);

    if (!sb_host.ready)
        return sb_errf(err, errlen, "Sandbox.SetupError: sandbox_init was not called");
    if (!s->runtime || !s->handler || !s->code_dir || !s->runtimes_dir || !s->function_name ||
        !s->function_version)
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: incomplete spec");
    if (fnspec_runtime_valid(s->runtime) != ML_OK)
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: unknown runtime %.32s", s->runtime);
    if (strcmp(fnspec_runtime_family(s->runtime), "nodejs") == 0 && !s->interpreter && !sb_host.node[0])
        return sb_errf(err, errlen, "Sandbox.RuntimeUnavailable: node is not installed");
    if (s->memory_mb < mem->min || s->memory_mb > mem->max || s->pids_max < 0 || s->pids_max > 4096)
        return sb_errf(err, errlen, "Sandbox.InvalidConfig: memory_mb %" PRId64 "..%" PRId64
                       ", pids_max 0..4096", mem->min, mem->max);
    if (fnspec_handler_valid(s->runtime, s->handler) != ML_OK)
        return sb_errf(err, errlen, "Runtime.MalformedHandlerName: bad handler \"%.64s\"", s->handler);
    if (stat(s->code_dir, &st) != 0)
        return sb_errf(err, errlen, "Sandbox.SetupError: code dir %s: %s", s->code_dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return sb_errf(err, errlen, "Sandbox.SetupError: code dir %s is not a directory", s->code_dir);
    if (others && (st.st_mode & 05) != 05)
        return sb_errf(err, errlen, "Sandbox.SetupError: code dir %s must be world-readable (0755): "
                    "the function runs as an unprivileged uid", s->code_dir);
    if (strcmp(fnspec_runtime_family(s->runtime), "provided") == 0 &&
        (ml_snprintf(path, sizeof(path), "%s/bootstrap", s->code_dir) != ML_OK ||
         stat(path, &st) != 0 || !S_ISREG(st.st_mode) ||
         !(st.st_mode & (others ? S_IXOTH : S_IXUSR))))
        return sb_errf(err, errlen, "Runtime.InvalidEntrypoint: the code has no executable "
                    "\"bootstrap\" file (mode 0755)");
    return ML_OK;
}

/* The runtime is the init's only child: /proc/<init>/task/<init>/children. */
void sb_find_runtime_pid(sandbox_instance *in)
{
    char path[96], buf[256];
    int64_t pid;

    if (ml_snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)in->pid, (int)in->pid) != ML_OK ||
        sb_read_file(path, buf, sizeof(buf)) != ML_OK)
        return;
    buf[strcspn(buf, " \n")] = '\0';
    if (ml_parse_int64(buf, 1, INT32_MAX, &pid) == ML_OK)
        in->runtime_pid = (pid_t)pid;
}

/* The cgroup name of a new instance (or run): "i<pid>.<start time>-<seq>", so the start-up
 * sweep of a later process tells ours from a live sibling's and from a dead predecessor's
 * that had the same pid. */
int sb_instance_name(char *out, size_t len)
{
    return ml_snprintf(out, len, "i%d.%lld-%lu", (int)getpid(), (long long)sb_pid_start_time(getpid()),
                       (unsigned long)atomic_fetch_add(&sb_host.seq, 1));
}
/* Closes the cgroup directory fds a launch opened (-1: none). */
static void cg_fds_close(int cg_fd[SB_NCG])
{
    for (int i = 0; i < SB_NCG; i++)
        if (cg_fd[i] >= 0)
            close(cg_fd[i]);
}


int sandbox_start(const sandbox_spec *spec, sandbox_instance **out, char *err, size_t errlen)
{
    int64_t t0 = sb_now_us();
    int64_t deadline = ml_now_ms() + (spec->init_timeout_ms > 0 ? spec->init_timeout_ms : 10000);
    sandbox_instance *in = NULL;
    int cg_fd[SB_NCG] = { -1, -1, -1 };
    char name[64];
    int rc = ML_ERR;

    *out = NULL;
    if (sb_check_spec(spec, err, errlen) != ML_OK)
        return ML_ERR;
    if (!(in = instance_new(spec))) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: out of memory");
        return ML_ERR;
    }
    in->flog = spec->log;   /* what loading prints belongs to the cold-starting invocation */
    if ((in->uid_slot = sb_uid_alloc(&in->uid)) < 0) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: all %u sandbox uids are in use", SB_UID_SLOTS);
        goto out;
    }
    if (sb_instance_name(name, sizeof(name)) != ML_OK) {
        sb_errf(err, errlen, "Sandbox.SetupError: cgroup name too long");
        goto out;
    }
    if (sb_cgroup_create(in, spec->memory_mb, spec->pids_max ? spec->pids_max : 64, name, cg_fd,
                         err, errlen) != ML_OK ||
        start_launch(in, spec, cg_fd, false, err, errlen) != ML_OK ||
        sb_start_handshake(in, NULL, deadline, err, errlen) != ML_OK ||
        sb_cgroup_cpu_limit(in, err, errlen) != ML_OK)
        goto out;
    if (in->usage_fd < 0)
        sb_find_runtime_pid(in);
    in->init_us = sb_now_us() - t0;
    in->flog = NULL;
    *out = in;
    in = NULL;
    rc = ML_OK;
out:
    cg_fds_close(cg_fd);
    if (in) {
        sb_log_drain(in);   /* the last of what a failed start printed */
        in->flog = NULL;
    }
    sandbox_destroy(in);
    return rc;
}

/* A stem cell (sandbox_stem.c): every layer of an instance (cgroups with spec's memory and
 * pids_max, cpu at weight shares until specialised), the runtime started with "--stem" and
 * no code, until it says "stem_ready". spec->handler, code_dir, function_* are unused. */
int sb_stem_launch(const sandbox_spec *spec, int64_t cpu_shares, int64_t deadline,
                   sandbox_instance **out, char *err, size_t errlen)
{
    sandbox_instance *in = sb_instance_alloc(spec->memory_mb, sb_host.features & SANDBOX_F_NAMESPACES);
    int cg_fd[SB_NCG] = { -1, -1, -1 };
    char name[64], why[160] = "", type[32] = "";
    int rc = ML_ERR;
    sb_outcome o;

    *out = NULL;
    if (!in || !(in->function_name = strdup("")) || !(in->function_version = strdup(""))) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: out of memory");
        goto out;
    }
    if ((in->uid_slot = sb_uid_alloc(&in->uid)) < 0) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: all %u sandbox uids are in use", SB_UID_SLOTS);
        goto out;
    }
    if (sb_instance_name(name, sizeof(name)) != ML_OK ||
        sb_cgroup_create(in, spec->memory_mb, spec->pids_max ? spec->pids_max : 64, name, cg_fd,
                         err, errlen) != ML_OK ||
        sb_cgroup_cpu_shares(in, cpu_shares, err, errlen) != ML_OK ||
        start_launch(in, spec, cg_fd, true, err, errlen) != ML_OK)
        goto out;
    o = sb_exchange(in, NULL, deadline, why, sizeof(why));
    if (o == EX_MSG)
        sb_header_type(&in->rd, type, sizeof(type));
    if (strcmp(type, "stem_ready") != 0) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: stem did not start (%s%s)",
                          o == EX_TIMEOUT ? "timeout" : o == EX_DEAD ? "exited" : o == EX_BROKEN ? why : "sent ",
                          type);
        goto out;
    }
    proto_reader_reset(&in->rd, PROTO_HEADER_MAX);
    sb_find_runtime_pid(in);
    *out = in;
    in = NULL;
    rc = ML_OK;
out:
    cg_fds_close(cg_fd);
    sandbox_destroy(in);
    return rc;
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

int64_t sandbox_init_us(const sandbox_instance *inst)
{
    return inst ? inst->init_us : 0;
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
    sb_cgroup_remove(inst);
    if (inst->pidfd >= 0)
        close(inst->pidfd);
    if (inst->proto_fd >= 0)
        close(inst->proto_fd);
    for (int i = 0; i < 2; i++)
        if (inst->log_fd[i] >= 0)
            close(inst->log_fd[i]);
    if (inst->usage_fd >= 0)
        close(inst->usage_fd);
    sb_uid_free(inst->uid_slot);
    proto_reader_free(&inst->rd);
    free(inst->function_name);
    free(inst->function_version);
    free(inst);
}
