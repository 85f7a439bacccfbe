/* prio.c — background threads at a lower CPU priority (see prio.h). */
#include "prio.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

void ex_thread_background(const char *name)
{
    char shown[16] = { 0 };

    for (size_t i = 0; name && name[i] && i + 1 < sizeof(shown); i++)
        shown[i] = name[i];
    (void)pthread_setname_np(pthread_self(), shown);
    /* Linux: a thread id names one thread for PRIO_PROCESS (nice is per thread) */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), EX_BACKGROUND_NICE);
}
