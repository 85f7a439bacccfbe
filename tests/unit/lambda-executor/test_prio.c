/* test_prio.c — background threads: named, and at a lower CPU priority than the request path. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "prio.h"

typedef struct seen {
    int nice_before, nice_after;
    char name[16];
} seen;

static void *background(void *arg)
{
    seen *s = arg;

    s->nice_before = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    ex_thread_background("audit-writer-long-name");
    s->nice_after = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
    pthread_getname_np(pthread_self(), s->name, sizeof(s->name));
    return NULL;
}

/* The thread itself is lowered and named; the process's other threads keep their priority. */
static void test_background_thread_lowered(void **state)
{
    seen s = { 0 };
    pthread_t t;
    int main_nice = getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));

    (void)state;
    assert_int_equal(pthread_create(&t, NULL, background, &s), 0);
    pthread_join(t, NULL);
    assert_int_equal(s.nice_before, main_nice);
    assert_int_equal(s.nice_after, main_nice + EX_BACKGROUND_NICE > 19 ? 19 : main_nice + EX_BACKGROUND_NICE);
    assert_string_equal(s.name, "audit-writer-lo"); /* cut to the kernel's 15 characters */
    assert_int_equal(getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid)), main_nice);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_background_thread_lowered),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
