/* sandbox_child.c — the launch: clone(CLONE_VM|CLONE_VFORK|CLONE_NEW*) like posix_spawn; the
 * child only runs system calls over the plan (no allocation, no locks, no page-table copy of
 * the executor) and execs. Its pid 1 is /bin/sh running the runtime as its only job: the shell
 * reaps orphans, relays the runtime's exit status, and holds none of the executor's memory.
 *
 * Dying with the executor: the child asks for SIGKILL when its parent dies
 * (PR_SET_PDEATHSIG); the init of a PID namespace takes every process of the namespace with
 * it. The kernel sends that signal when the *thread* that cloned the child exits, not the
 * process, so the clone is always made by one of a few launcher threads that live as long
 * as the process (an instance made by an HTTP worker and reused by an async consumer must
 * not die when the HTTP server stops first at shutdown). */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox-int.h"

#define SB_STACK_SIZE (256u * 1024u)
#define SB_LAUNCHERS 4
#define SB_CLONE_NS (CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS)

/* Child-side code runs on a borrowed address space (CLONE_VM): keep ASan's bookkeeping out. */
#define SB_CHILD __attribute__((no_sanitize_address))

static const char *const step_names[] = {
    "none", "clone", "setup", "cgroup memory", "cgroup pids", "cgroup cpu", "cgroup namespace",
    "mount", "network/hostname", "fds", "uid", "rlimit", "seccomp", "exec"
};

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

/* fds 0 /dev/null, 1 and 2 the stdout and stderr pipes, 3 the protocol socket; everything
 * else closed. */
SB_CHILD static int child_fds(const sb_plan *p)
{
    int in = fcntl(p->null_fd, F_DUPFD, 10);
    int out = fcntl(p->out_fd, F_DUPFD, 10);
    int err = fcntl(p->err_fd, F_DUPFD, 10);
    int proto = p->proto_fd >= 0 ? fcntl(p->proto_fd, F_DUPFD, 10) : -1;

    if (in < 0 || out < 0 || err < 0 || (p->proto_fd >= 0 && proto < 0))
        return -1;
    if (dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
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

/* The executor died before PR_SET_PDEATHSIG was in place (no signal will come): its end of
 * the protocol socket (fd 3 by now) is closed, which shows as a hang-up. */
SB_CHILD static bool child_orphaned(const sb_plan *p)
{
    struct pollfd pf = { .fd = 3, .events = POLLIN, .revents = 0 };

    return p->proto_fd >= 0 && poll(&pf, 1, 0) == 1 && (pf.revents & POLLHUP);
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
    for (int i = 0; i < SB_NCG; i++)
        /* "0" into tasks: this thread moves itself, which skips the cgroup_threadgroup_rwsem
         * (an RCU grace period, ~10 ms) that writing a pid or using cgroup.procs takes. */
        if (p->cg_fd[i] >= 0 && write(p->cg_fd[i], "0", 1) != 1)
            child_fail(p, STEP_CGROUP_MEM + i, -1);
    if (p->ns && unshare(CLONE_NEWCGROUP) != 0)
        child_fail(p, STEP_NS, -1);
    if (p->own_net && setns(p->net_fd, CLONE_NEWNET) != 0)
        child_fail(p, STEP_NET, -1);
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
    /* After the uid switch: changing credentials clears the parent-death signal. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0)
        child_fail(p, STEP_SETUP, -1);
    if (child_orphaned(p))
        _exit(125);
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

/* Starts the plan on the calling thread (a launcher). */
static pid_t clone_here(sb_plan *p, int *pidfd, char *err, size_t errlen)
{
    int flags = CLONE_VM | CLONE_VFORK | SIGCHLD;
    char *stack = malloc(SB_STACK_SIZE);
    sigset_t all, old;
    pid_t pid;
    int saved;

    *pidfd = -1;
    if (!stack) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: out of memory");
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
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: clone: %s", strerror(saved));
        return -1;
    }
    if (p->fail_step != STEP_NONE) {
        int op = p->fail_op;
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: %s%s%s: %s", step_names[p->fail_step],
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

/* ---------------------------------------------------------------- the launcher threads */

typedef struct launch_job {
    sb_plan *p;
    int *pidfd;
    char *err;
    size_t errlen;
    pid_t pid;
    bool done;
    struct launch_job *next;
} launch_job;

static struct {
    pthread_mutex_t lock;
    pthread_cond_t work, done;
    launch_job *head, *tail;
    pid_t owner;          /* the process whose threads these are (a fork child has none) */
} lq = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, NULL, 0 };

static void *launcher_main(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&lq.lock);
    for (;;) {
        launch_job *j;

        while (!(j = lq.head))
            pthread_cond_wait(&lq.work, &lq.lock);
        lq.head = j->next;
        if (!lq.head)
            lq.tail = NULL;
        pthread_mutex_unlock(&lq.lock);
        j->pid = clone_here(j->p, j->pidfd, j->err, j->errlen);
        pthread_mutex_lock(&lq.lock);
        j->done = true;
        pthread_cond_broadcast(&lq.done);
    }
    return NULL;
}

/* Starts the launchers once per process (again in a forked child, which inherits none).
 * Called with lq.lock held. Detached and never stopped: they must outlive every instance. */
static int launchers_start(char *err, size_t errlen)
{
    sigset_t all, old;
    pthread_attr_t a;
    int started = 0;

    if (lq.owner == getpid())
        return ML_OK;
    if (lq.owner) { /* a fork child: its copies of the parent's queue and waiters are stale */
        lq.head = lq.tail = NULL;
        pthread_cond_init(&lq.work, NULL);
        pthread_cond_init(&lq.done, NULL);
    }
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old); /* the launchers take no signals */
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    for (int i = 0; i < SB_LAUNCHERS; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, launcher_main, NULL) == 0)
            started++;
    }
    pthread_attr_destroy(&a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (!started) {
        ml_snprintf_trunc(err, errlen, "Sandbox.SetupError: cannot start a launcher thread");
        return ML_ERR;
    }
    lq.owner = getpid();
    return ML_OK;
}

/* Starts the plan on a launcher thread and waits for the child to exec (or fail). Returns
 * the pid (and *pidfd, -1 if the kernel has none) or -1 with err. */
pid_t sb_clone(sb_plan *p, int *pidfd, char *err, size_t errlen)
{
    launch_job j = { .p = p, .pidfd = pidfd, .err = err, .errlen = errlen, .pid = -1 };

#if defined(__SANITIZE_THREAD__)
    /* TSan cannot follow a CLONE_VM child run on another thread's TLS: it loses that thread's
     * synchronisation and reports every hand-off as a race. TSan builds clone on the caller
     * (as before the launchers); the launchers are tested by the other builds. */
    (void)j;
    return clone_here(p, pidfd, err, errlen);
#endif
    *pidfd = -1;
    pthread_mutex_lock(&lq.lock);
    if (launchers_start(err, errlen) != ML_OK) {
        pthread_mutex_unlock(&lq.lock);
        return -1;
    }
    if (lq.tail)
        lq.tail->next = &j;
    else
        lq.head = &j;
    lq.tail = &j;
    pthread_cond_signal(&lq.work);
    while (!j.done)
        pthread_cond_wait(&lq.done, &lq.lock);
    pthread_mutex_unlock(&lq.lock);
    return j.pid;
}
