/* proxy_floor — the gateway's proxy path with none of the gateway's own work: the same
 * external-mode HTTP server (shared/httpd.c, libmicrohttpd) run by the same loops
 * (services/gateway/proxy.c: libcurl multi, keep-alive upstream connections, epoll), but no
 * authentication, no rate-limit decision, no header translation, no function lookup. The
 * gateway benchmark runs it beside nginx and the gateway: what it reaches is the ceiling the
 * two libraries leave, and the gap to the gateway is what minilambda itself costs.
 *   proxy_floor PORT UPSTREAM_BASE_URL [THREADS]
 * Proxies POST /functions/{fn}/invoke; runs until SIGTERM/SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "httpc.h"
#include "httpd.h"
#include "proxy.h"

typedef struct call {
    gw_task task;
    httpd_req *req;
    httpd_resp *resp;
    gw_xfer *x;
} call;

static gw_proxy *g_proxy;
static gw_pool g_pool;

static void on_done(gw_xfer *x)
{
    call *c = x->ud;

    if (x->result == GW_XFER_OK) {
        c->resp->status = (int)x->status;
        ml_buf_free(&c->resp->body);
        c->resp->body = x->resp_body;
        memset(&x->resp_body, 0, sizeof(x->resp_body));
    } else {
        httpd_resp_error(c->resp, 502, "bad_gateway", "%s", x->error);
    }
    gw_xfer_free(x);
    httpd_complete(c->req);
    free(c);
}

static void on_task(gw_loop *l, gw_task *t, bool cancelled)
{
    call *c = (call *)t;
    gw_xfer *x = c->x;

    x->inst = cancelled ? NULL : gw_pool_pick(&g_pool, GW_CAP_INVOKE, NULL, ml_now_ms(), &x->admit);
    if (!x->inst) {
        x->result = GW_XFER_SHUTDOWN;
        on_done(x);
        return;
    }
    gw_loop_start(l, x);
}

static httpd_result h_invoke(httpd_req *req, httpd_resp *resp, void *ud)
{
    call *c = calloc(1, sizeof(*c));
    gw_xfer *x = gw_xfer_new();
    struct curl_slist *h = NULL;

    ML_UNUSED(ud);
    if (!c || !x || !(x->path = strdup(httpd_path(req))) ||
        !(h = curl_slist_append(NULL, "Content-Type: application/json")) ||
        !(x->headers = curl_slist_append(h, "Expect:"))) {
        curl_slist_free_all(h);
        gw_xfer_free(x);
        free(c);
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return HTTPD_DONE;
    }
    x->pool = &g_pool;
    x->method = "POST";
    x->body = httpd_body(req, &x->body_len);
    x->timeout_ms = 30000;
    x->connect_timeout_ms = 1000;
    x->max_response = 1 << 20;
    x->done = on_done;
    x->ud = c;
    *c = (call){ { on_task, NULL }, req, resp, x };
    gw_proxy_run(g_proxy, &c->task);
    return HTTPD_ASYNC;
}

static httpd_result h_health(httpd_req *req, httpd_resp *resp, void *ud)
{
    ML_UNUSED(req);
    ML_UNUSED(ud);
    httpd_resp_text(resp, 200, "application/json", "{\"status\":\"ok\"}");
    return HTTPD_DONE;
}

int main(int argc, char **argv)
{
    static const httpd_route routes[] = {
        { "POST", "/functions/{fn}/invoke", h_invoke, NULL, 0, false },
        { "GET", "/health", h_health, NULL, 0, false },
    };
    gw_breaker_cfg breaker = { 0 };
    int64_t port = 0, threads = 2;
    char err[256];
    httpd *h = NULL;
    sigset_t set;
    int sig, rc = 1;

    if (argc < 3 || ml_parse_int64(argv[1], 1, 65535, &port) != ML_OK ||
        (argc > 3 && ml_parse_int64(argv[3], 1, 64, &threads) != ML_OK)) {
        fprintf(stderr, "usage: proxy_floor PORT UPSTREAM_BASE_URL [THREADS]\n");
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    httpd_config cfg = { .service = "floor", .bind_addr = "127.0.0.1", .port = (uint16_t)port,
                         .threads = (unsigned)threads, .external = true };
    if (httpc_global_init() != ML_OK ||
        gw_pool_init(&g_pool, "upstream", argv[2], &breaker, 0, NULL, err, sizeof(err)) != ML_OK ||
        !(h = httpd_start(&cfg, routes, ML_ARRAY_LEN(routes), err, sizeof(err)))) {
        fprintf(stderr, "proxy_floor: %s\n", err);
        goto out;
    }
    gw_proxy_config pc = { httpd_loops(h), 0, NULL, h };
    if (!(g_proxy = gw_proxy_start(&pc, err, sizeof(err)))) {
        fprintf(stderr, "proxy_floor: %s\n", err);
        goto out;
    }
    sigwait(&set, &sig);
    httpd_drain(h);
    rc = 0;
out:
    gw_proxy_stop(g_proxy);
    httpd_stop(h);
    gw_pool_free(&g_pool);
    httpc_global_cleanup();
    return rc;
}
