/* sandbox_exchange.c — the parent's side of a running instance: one protocol exchange against
 * a deadline, the log tail drained meanwhile, and its death noticed, settled and told. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "sandbox-int.h"

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
void sb_ring_take(sb_ring *r, ml_buf *out)
{
    size_t first = r->len < SB_LOG_TAIL - r->head ? r->len : SB_LOG_TAIL - r->head;

    ml_buf_init(out, SB_LOG_TAIL);
    ml_buf_append(out, r->data + r->head, first);
    ml_buf_append(out, r->data, r->len - first);
    r->head = r->len = 0;
}

int64_t sb_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One read of output pipe s into the tail and the invocation's log; false when it had
 * nothing (or is closed). */
static bool log_read(sandbox_instance *in, int s, char *chunk, size_t len)
{
    ssize_t n;

    if (in->log_fd[s] < 0)
        return false;
    do
        n = read(in->log_fd[s], chunk, len);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        ring_add(&in->log, chunk, (size_t)n);
        if (in->flog && in->flog->feed)
            in->flog->feed(in->flog->ctx, s + 1, chunk, (size_t)n);
        return true;
    }
    if (n == 0) {   /* every writer is gone */
        close(in->log_fd[s]);
        in->log_fd[s] = -1;
    }
    return false;
}

/* Reads what stdout and stderr hold now, in turns — at most 1 MiB per call, so a function
 * printing without pause cannot keep the caller from its deadline checks (nor cost more than
 * this thread's reads: lines past the invocation's limit are only counted) — then hands the
 * complete lines to the log queue. */
void sb_log_drain(sandbox_instance *in)
{
    char chunk[16384];

    for (int i = 0; i < 32; i++) {
        bool out = log_read(in, 0, chunk, sizeof(chunk));
        bool err = log_read(in, 1, chunk, sizeof(chunk));
        if (!out && !err)
            break;
    }
    if (in->flog && in->flog->flush)
        in->flog->flush(in->flog->ctx);
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
void sb_kill(sandbox_instance *in)
{
    sb_cgroup_cpu_unlimit(in);   /* a throttled tree would take many periods to exit */
    if (!in->reaped) {
        if (in->pidfd < 0 || syscall(SYS_pidfd_send_signal, in->pidfd, SIGKILL, NULL, 0) != 0)
            kill(in->pid, SIGKILL);
        if (!in->ns)
            kill(-in->pid, SIGKILL);   /* its session / process group */
    }
    /* Without a pid namespace, processes that left the group are still in the cgroups. */
    for (int i = 0; !in->ns && i < SB_NCG; i++)
        if (in->cg[i][0])
            sb_cgroup_kill_tasks(in->cg[i]);
    sb_reap(in, true);
    in->dead = true;
}

/* Sends w (if any) and reads one message into in->rd before deadline_ms, draining the log.
 * EX_BROKEN: the channel failed (why says how); the caller decides what that means. */
sb_outcome sb_exchange(sandbox_instance *in, proto_writer *w, int64_t deadline_ms,
                              char *why, size_t whylen)
{
    for (;;) {
        struct pollfd pf[4] = {
            { .fd = in->proto_fd, .events = POLLIN },
            { .fd = in->log_fd[0], .events = POLLIN },
            { .fd = in->pidfd, .events = POLLIN },
            { .fd = in->log_fd[1], .events = POLLIN },
        };
        int64_t left = deadline_ms - ml_now_ms();
        int rc;

        if (left <= 0)
            return EX_TIMEOUT;
        if (w && !proto_writer_done(w))
            pf[0].events |= POLLOUT;
        if (in->pidfd < 0 && left > 20)
            left = 20;   /* no pidfd: notice the death by polling waitpid */
        rc = poll(pf, 4, (int)(left > INT32_MAX ? INT32_MAX : left));
        if (rc < 0 && errno != EINTR) {
            ml_snprintf_trunc(why, whylen, "poll: %s", strerror(errno));
            return EX_BROKEN;
        }
        if (rc <= 0) {
            if (in->pidfd < 0 && (sb_reap(in, false), in->reaped))
                return EX_DEAD;
            continue;
        }
        if (pf[1].revents || pf[3].revents)
            sb_log_drain(in);
        if ((pf[0].revents & POLLOUT) && proto_writer_step(w, in->proto_fd) != ML_OK) {
            ml_snprintf_trunc(why, whylen, "the runtime stopped reading (%s)", strerror(errno));
            return EX_BROKEN;
        }
        if (pf[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            proto_status st = proto_reader_step(&in->rd, in->proto_fd);
            if (st == PROTO_DONE) {
                sb_log_drain(in);
                if (w && !proto_writer_done(w)) {
                    ml_snprintf_trunc(why, whylen, "the runtime answered before reading the event");
                    return EX_BROKEN;
                }
                return EX_MSG;
            }
            if (st == PROTO_EOF || st == PROTO_ERROR) {
                ml_snprintf_trunc(why, whylen, "%s", st == PROTO_EOF ? "the runtime closed its channel"
                                                                      : in->rd.error);
                return EX_BROKEN;
            }
        }
        if (pf[2].revents & POLLIN) {
            sb_log_drain(in);
            sb_reap(in, true);
            return EX_DEAD;
        }
    }
}

/* After EX_BROKEN: a runtime that is exiting gets a moment to do so (its status tells crash
 * from OOM); one that is alive but broke the protocol is killed. */
void sb_settle(sandbox_instance *in)
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
    sb_log_drain(in);
    sb_kill(in);
}

/* "exit status 3" / "signal: killed" of the init (which relays the runtime's as 128+n). */
void sb_exit_text(const sandbox_instance *in, char *out, size_t len)
{
    int st = in->wait_status;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : (code > 128 ? code - 128 : 0);

    if (st == -1)
        ml_snprintf_trunc(out, len, "unknown exit status");
    else if (sig)
        ml_snprintf_trunc(out, len, "signal: %s", sig == SIGKILL ? "killed"
                          : sigdescr_np(sig) ? sigdescr_np(sig) : "unknown");
    else
        ml_snprintf_trunc(out, len, "exit status %d", code);
}

/* The "type" of a received header ("" if absent or not JSON), into out. */
void sb_header_type(const proto_reader *r, char *out, size_t len)
{
    cJSON *h = cJSON_ParseWithLength(r->header.data ? r->header.data : "", r->header.len);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(h, "type");

    ml_strlcpy(out, cJSON_IsString(t) ? t->valuestring : "", len);
    cJSON_Delete(h);
}
