/* prio.h — the CPU priority of the executor's background threads (docs/latency.md).
 *
 * On a busy host the request path (the server's threads, the invocation workers) and the
 * background (the audit writer, log shipping, reapers) want the same cores; work nobody is
 * waiting on yields to the request path when both are runnable, and still gets the CPU the
 * request path leaves (nice, never SCHED_IDLE: the backlog must drain under sustained load). */
#ifndef EX_PRIO_H
#define EX_PRIO_H

#define EX_BACKGROUND_NICE 10 /* CFS weight 110 against a request thread's 1024 */

/* Names the calling thread (at most 15 characters shown, for perf and top) and lowers its
 * priority to EX_BACKGROUND_NICE. Best effort: failures change nothing else. */
void ex_thread_background(const char *name);

#endif
