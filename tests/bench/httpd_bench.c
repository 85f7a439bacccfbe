/* httpd_bench — serves a tiny JSON "hello" so wrk can compare threading modes:
 *   httpd_bench shared PORT THREADS   our httpd layer (epoll pool; /hello inline,
 *                                      /hello-blocking on the worker pool)
 *   httpd_bench tpc PORT              raw libmicrohttpd, thread per connection (baseline)
 * Runs until SIGTERM/SIGINT. */
#include <microhttpd.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "httpd.h"

static const char hello[] = "{\"hello\":\"world\"}";

static httpd_result h_hello(httpd_req *req, httpd_resp *resp, void *ud)
{
    ML_UNUSED(req);
    ML_UNUSED(ud);
    httpd_resp_text(resp, 200, "application/json", hello);
    return HTTPD_DONE;
}

/* A stand-in lambda-executor for the gateway benchmark: function config and a trivial invoke. */
static httpd_result h_function(httpd_req *req, httpd_resp *resp, void *ud)
{
    char body[256];

    ML_UNUSED(ud);
    ml_snprintf(body, sizeof(body),
                "{\"id\":\"00000000-0000-4000-8000-000000000001\",\"name\":\"%s\",\"state\":\"active\","
                "\"version\":1,\"timeout_s\":30,\"rate_limit\":{\"rps\":1000000,\"burst\":1000000}}",
                httpd_param(req, "fn"));
    httpd_resp_text(resp, 200, "application/json", body);
    return HTTPD_DONE;
}

static enum MHD_Result tpc_hello(void *cls, struct MHD_Connection *c, const char *url,
                                 const char *method, const char *version, const char *data,
                                 size_t *size, void **con_cls)
{
    struct MHD_Response *r;
    enum MHD_Result ret;

    ML_UNUSED(cls), ML_UNUSED(url), ML_UNUSED(method), ML_UNUSED(version), ML_UNUSED(data);
    ML_UNUSED(size), ML_UNUSED(con_cls);
    r = MHD_create_response_from_buffer(sizeof(hello) - 1, (void *)hello, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(r, "Content-Type", "application/json");
    ret = MHD_queue_response(c, 200, r);
    MHD_destroy_response(r);
    return ret;
}

int main(int argc, char **argv)
{
    static const httpd_route routes[] = {
        { "GET", "/hello", h_hello, NULL, 0, false },
        { "GET", "/hello-blocking", h_hello, NULL, 0, true },
        { "GET", "/health", h_hello, NULL, 0, false },
        { "GET", "/functions/{fn}", h_function, NULL, 0, false },
        { "POST", "/functions/{fn}/invoke", h_hello, NULL, 0, false },
    };
    int64_t port = 0, threads = 2;
    sigset_t set;
    int sig;

    if (argc < 3 || ml_parse_int64(argv[2], 1, 65535, &port) != ML_OK ||
        (argc > 3 && ml_parse_int64(argv[3], 1, 64, &threads) != ML_OK)) {
        fprintf(stderr, "usage: httpd_bench shared|tpc PORT [THREADS]\n");
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (strcmp(argv[1], "tpc") == 0) {
        struct MHD_Daemon *d = MHD_start_daemon(
            MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)port, NULL,
            NULL, tpc_hello, NULL, MHD_OPTION_END);
        if (!d)
            return 1;
        sigwait(&set, &sig);
        MHD_stop_daemon(d);
        return 0;
    }
    httpd_config cfg = { .service = "bench", .bind_addr = "127.0.0.1", .port = (uint16_t)port,
                         .threads = (unsigned)threads, .workers = 16 };
    char err[128];
    httpd *h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    if (!h) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    sigwait(&set, &sig);
    httpd_stop(h);
    return 0;
}
