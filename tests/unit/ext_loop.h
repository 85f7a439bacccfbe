/* ext_loop.h — test helper: one caller's loop of an external-mode httpd (httpd_loop_*), run
 * in a thread the way the gateway's proxy loops run the server's daemons. */
#ifndef ML_TEST_EXT_LOOP_H
#define ML_TEST_EXT_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "httpd.h"

typedef struct ext_loop {
    httpd *h;
    unsigned idx;
    atomic_bool stop;
    pthread_t t;
} ext_loop;

/* Thread body: runs daemon l->idx until l->stop, waking on its epoll fd, its eventfd (read
 * first), a resume on its own thread (httpd_loop_again) or its timeout (at most 50 ms). */
static inline void *ext_loop_main(void *arg)
{
    ext_loop *l = arg;
    int ep = epoll_create1(0), wake = -1, fd = httpd_loop_fd(l->h, l->idx, &wake);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd }, out[8];
    struct epoll_event wev = { .events = EPOLLIN, .data.fd = wake };

    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    epoll_ctl(ep, EPOLL_CTL_ADD, wake, &wev);
    while (!atomic_load(&l->stop)) {
        int64_t t = httpd_loop_timeout_ms(l->h, l->idx);
        int n = epoll_wait(ep, out, 8, t < 0 || t > 50 ? 50 : (int)t);
        uint64_t v;
        for (int i = 0; i < n; i++) {
            if (out[i].data.fd == wake && read(wake, &v, sizeof(v)) < 0)
                break;
        }
        do
            httpd_loop_run(l->h, l->idx);
        while (httpd_loop_again(l->h, l->idx));
    }
    close(ep);
    return NULL;
}

#endif
