/* sandbox_plan.c — the launch plan: the parent prepares everything the child will do (mount
 * table, rlimits, seccomp program, argv, envp) in one block, strings in its arena. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "log.h"
#include "fnspec.h"
#include "netns.h"
#include "sandbox-int.h"

#define SB_NPROC_MARGIN 8   /* RLIMIT_NPROC past pids.max when the pids cgroup enforces it */
#define SB_MAX_ENV 1024
#define SB_PYTHON "/usr/bin/python3" /* a spec without an interpreter (tests, benchmarks) */

/* Formats a string into the plan's arena; NULL (and arena_full) when it does not fit. */
static const char *plan_str(sb_plan *p, const char *fmt, ...) ML_PRINTF(2, 3);
static const char *plan_str(sb_plan *p, const char *fmt, ...)
{
    va_list ap;
    size_t room = sizeof(p->arena) - p->arena_used;
    char *dst = p->arena + p->arena_used;
    int rc;

    va_start(ap, fmt);
    rc = ml_vsnprintf(dst, room, fmt, ap);
    va_end(ap);
    if (rc != ML_OK) {
        p->arena_full = true;
        return NULL;
    }
    p->arena_used += strlen(dst) + 1;
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
    const char *dst = plan_str(p, "%s%s", sb_host.root, rel);
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
    sb_op *o = plan_op(p, OP_FILE, plan_str(p, "%s%s", sb_host.root, rel));

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
    sb_op *o = plan_op(p, OP_MKDIR, plan_str(p, "%s%s", sb_host.root, rel));

    if (o)
        o->mode = mode;
}

static void plan_symlink(sb_plan *p, const char *target, const char *rel)
{
    sb_op *o = plan_op(p, OP_SYMLINK, plan_str(p, "%s%s", sb_host.root, rel));

    if (o)
        o->src = target;
}

static void plan_node(sb_plan *p, const char *name, unsigned major, unsigned minor)
{
    sb_op *o = plan_op(p, OP_NODE, plan_str(p, "%s/dev/%s", sb_host.root, name));

    if (o) {
        o->src = plan_str(p, "/dev/%s", name);
        o->mode = 0666;
        o->dev = makedev(major, minor);
    }
}

/* The parent dirs of root-relative path rel ("/work/a/b": /work, /work/a). */
static void plan_mkdir_parents(sb_plan *p, const char *rel)
{
    char part[PATH_MAX];
    size_t n = strlen(rel);

    for (size_t i = 1; i < n; i++) {
        if (rel[i] != '/' || i >= sizeof(part))
            continue;
        memcpy(part, rel, i);
        part[i] = '\0';
        plan_mkdir(p, plan_str(p, "%s", part), 0755);
    }
}

/* Binds a host directory outside /usr at the same path (e.g. a node install in /opt). */
static void plan_bind_same_path(sb_plan *p, const char *host)
{
    plan_mkdir_parents(p, host);
    plan_bind_ro(p, host, host, false);
}

/* A run's binds (sandbox_run.c checked them): read-only ones as every other bind; writable
 * ones stay read-write but nosuid, nodev. */
static void plan_binds(sb_plan *p, const sb_launch *l)
{
    for (size_t i = 0; i < l->nbinds; i++) {
        const sandbox_bind *b = &l->binds[i];
        const char *dst;

        plan_mkdir_parents(p, b->path);
        if (!b->writable) {
            plan_bind_ro(p, b->host, b->path, false);
            continue;
        }
        dst = plan_str(p, "%s%s", sb_host.root, b->path);
        plan_mkdir(p, b->path, 0755);
        plan_mount(p, b->host, dst, NULL, MS_BIND, NULL);
        plan_mount(p, NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV, NULL);
    }
}

/* Masks the host's third-party package dirs (sb_find_hidden) with an empty read-only tmpfs
 * each: one mount call, nothing of the host below it reachable. */
static void plan_hide_packages(sb_plan *p)
{
    for (size_t i = 0; i < sb_host.nhidden; i++)
        plan_mount(p, "tmpfs", plan_str(p, "%s%s", sb_host.root, sb_host.hidden[i]), "tmpfs",
                   MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0555");
}

/* The minimal /etc: our own passwd, group, hosts, and what the host's tools need of its own. */
static void plan_etc(sb_plan *p, const sb_launch *l)
{
    const char *etc_passwd = plan_str(p,
        "root:x:0:0:root:/root:/usr/sbin/nologin\n"
        "sbx_user:x:%u:%u:minilambda function:/tmp:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n", l->uid, l->uid);
    const char *etc_group = plan_str(p, "root:x:0:\nsbx_user:x:%u:\nnogroup:x:65534:\n", l->uid);
    struct stat st;

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
    if (l->caller_net)   /* the caller's namespace (a build's egress proxy): no resolver */
        return;
    if (l->own_net)   /* its resolver is the policy's (netns.h), not the host's */
        plan_file(p, "/etc/resolv.conf", netns_resolv_conf());
    else if (l->network && stat("/etc/resolv.conf", &st) == 0)
        plan_bind_ro(p, "/etc/resolv.conf", "/etc/resolv.conf", true);
}

/* /dev: the harmless character devices and the usual symlinks. */
static void plan_dev(sb_plan *p)
{
    static const struct { const char *name; unsigned major, minor; } nodes[] = {
        { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }
    };

    for (size_t i = 0; i < ML_ARRAY_LEN(nodes); i++)
        plan_node(p, nodes[i].name, nodes[i].major, nodes[i].minor);
    plan_symlink(p, "/proc/self/fd", "/dev/fd");
    plan_symlink(p, "/proc/self/fd/0", "/dev/stdin");
    plan_symlink(p, "/proc/self/fd/1", "/dev/stdout");
    plan_symlink(p, "/proc/self/fd/2", "/dev/stderr");
    plan_symlink(p, "/tmp", "/dev/shm");
}

/* The mount table of an instance root (namespaces on). */
static void plan_root(sb_plan *p, const sb_launch *l)
{
    static const char *const dirs[] = { "/usr", "/etc", "/etc/ssl", "/dev", "/proc", "/tmp",
                                        "/var", SB_TASK, SB_RUNTIME };
    sb_op *o;

    plan_mount(p, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    plan_mount(p, "tmpfs", sb_host.root, "tmpfs", MS_NOSUID, "size=1m,nr_inodes=512,mode=0755");
    for (size_t i = 0; i < ML_ARRAY_LEN(dirs); i++)
        plan_mkdir(p, dirs[i], 0755);
    for (size_t i = 0; i < sb_host.ntop; i++) {
        const char *rel = plan_str(p, "/%s", sb_host.top[i].name);
        if (sb_host.top[i].link[0])
            plan_symlink(p, sb_host.top[i].link, rel);
        else
            plan_bind_ro(p, plan_str(p, "/%s", sb_host.top[i].name), rel, false);
    }
    plan_bind_ro(p, "/usr", "/usr", false);
    if (sb_host.node_prefix[0])
        plan_bind_same_path(p, sb_host.node_prefix);
    if (l->interp_prefix && (!sb_host.node_prefix[0] || strcmp(l->interp_prefix, sb_host.node_prefix) != 0))
        plan_bind_same_path(p, l->interp_prefix);
    if (!l->keep_packages)
        plan_hide_packages(p);
    plan_etc(p, l);
    if (l->code_dir)
        plan_bind_ro(p, l->code_dir, SB_TASK, false);
    if (l->runtime_dir)
        plan_bind_ro(p, l->runtime_dir, SB_RUNTIME, false);
    plan_binds(p, l);
    plan_mount(p, "tmpfs", plan_str(p, "%s/tmp", sb_host.root), "tmpfs", MS_NOSUID | MS_NODEV,
               plan_str(p, "size=%" PRId64 "m,mode=1777", l->memory_mb));
    plan_dev(p);
    plan_mount(p, "proc", plan_str(p, "%s/proc", sb_host.root), "proc",
               MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    plan_mount(p, NULL, sb_host.root, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, NULL);
    plan_op(p, OP_PIVOT, sb_host.root);
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

void sb_plan_base(sb_plan *p, const sb_launch *l, unsigned features)
{
    p->ns = features & SANDBOX_F_NAMESPACES;
    p->newnet = p->ns && !l->network;
    p->own_net = p->ns && l->network && l->own_net;
    p->net_fd = l->net_fd;
    p->drop_uid = features & SANDBOX_F_UID;
    p->uid = l->uid;
    for (int i = 0; i < SB_NCG; i++)
        p->cg_fd[i] = l->cg_fd[i];
    p->proto_fd = -1;
    if (features & SANDBOX_F_SECCOMP) {
        const sb_filter *f = &sb_host.filter[l->network ? 0 : 1];
        p->prog.len = f->len;
        p->prog.filter = f->insns;
    }
    if (p->ns)
        plan_root(p, l);
    plan_limits(p, l);
}

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
char **sb_build_env(sb_plan *p, const sandbox_spec *s, bool ns, const char *runtime_dir,
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
        ml_snprintf_trunc(err, errlen, "Sandbox.InvalidConfig: more than %d environment variables", SB_MAX_ENV);
        return NULL;
    }
    env = calloc(nuser + ML_ARRAY_LEN(defaults) + 12, sizeof(*env));
    if (!env) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: out of memory");
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
            ml_snprintf_trunc(err, errlen, "Sandbox.InvalidConfig: bad environment entry \"%.64s\"", s->env[i]);
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
        ml_snprintf_trunc(err, errlen, "Sandbox.InvalidConfig: function settings too long");
        free(env);
        return NULL;
    }
    return env;
}

/* argv: sh as init running the runtime as its one job. */
char **sb_build_argv(sb_plan *p, const sandbox_spec *s, bool ns, const char *runtime_dir)
{
    char **a = calloc(12, sizeof(*a));
    size_t n = 0;
    const char *rt = ns ? SB_RUNTIME : runtime_dir;
    const char *task = ns ? SB_TASK : s->code_dir;
    const char *fam = fnspec_runtime_family(s->runtime);

    if (!a)
        return NULL;
    a[n++] = SB_SHELL;
    a[n++] = "-c";
    a[n++] = SB_INIT_SCRIPT;
    a[n++] = "minilambda-init";
    if (fam && strcmp(fam, "python3") == 0) {
        /* -I: ignore PYTHON* env and user site; -S: skip site (4 ms); -B: task dir is read-only */
        a[n++] = (char *)(s->interpreter ? s->interpreter : SB_PYTHON);
        a[n++] = "-I", a[n++] = "-S", a[n++] = "-B";
        a[n++] = (char *)plan_str(p, "%s/bootstrap.py", rt);
    } else if (fam && strcmp(fam, "nodejs") == 0) {
        a[n++] = (char *)(s->interpreter ? s->interpreter : sb_host.node);
        a[n++] = (char *)plan_str(p, "--max-old-space-size=%" PRId64, s->memory_mb * 3 / 4);
        a[n++] = (char *)plan_str(p, "%s/bootstrap.js", rt);
    } else {
        a[n++] = (char *)plan_str(p, "%s/bootstrap", task);
    }
    return a;
}
