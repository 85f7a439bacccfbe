/* gateway — the public door: auth, rate limits, routing (see API.md). */
#include <stdlib.h>
#include <string.h>

#include "checks.h"
#include "deps.h"
#include "log.h"
#include "service.h"
#include "token.h"

#define MAX_UPSTREAMS 16

typedef struct gw_config {
    deps_config deps;
    const char *jwt_secret, *build_master_urls, *executor_urls;
} gw_config;

static gw_config cfg;
static check_http_target upstreams[MAX_UPSTREAMS];
static size_t nupstreams;

/* One optional health check per upstream instance in a comma-separated URL list: the
 * gateway itself stays up (answering 503 for that service) when an upstream is down. */
static int add_upstream_checks(svc *s, const char *service, const char *list)
{
    char *copy = strdup(list), *save = NULL;

    if (!copy)
        return ML_ERR;
    for (char *url = strtok_r(copy, ",", &save); url; url = strtok_r(NULL, ",", &save)) {
        ml_buf name = { 0 };
        check_http_target *t = &upstreams[nupstreams];

        if (nupstreams == MAX_UPSTREAMS || ml_buf_printf(&name, "%s@%s", service, url) != ML_OK)
            goto fail;
        t->base_url = strdup(url);
        t->client = httpc_new();
        if (!t->base_url || !t->client ||
            health_add(&s->health, ml_buf_steal(&name, NULL), check_http, t, false) != ML_OK)
            goto fail;
        nupstreams++;
    }
    free(copy);
    return ML_OK;
fail:
    free(copy);
    return ML_ERR;
}

int main(int argc, char **argv)
{
    cfg_var vars[8];
    size_t n;
    svc s;
    deps d = { 0 };
    int rc = 1;

    if (argc > 1 && strcmp(argv[1], "token") == 0)
        return token_main(argc, argv);
    n = deps_cfg_vars(&cfg.deps, DEPS_REDIS, vars, ML_ARRAY_LEN(vars));
    vars[n++] = (cfg_var){ "MINILAMBDA_JWT_SECRET", CFG_STR, NULL, 0, 0, NULL,
                           "HS256 secret that signs client JWTs", &cfg.jwt_secret, true };
    vars[n++] = (cfg_var){ "MINILAMBDA_BUILD_MASTER_URLS", CFG_STR, "http://127.0.0.1:8082", 0, 0,
                           NULL, "comma-separated build-master base URLs", &cfg.build_master_urls, false };
    vars[n++] = (cfg_var){ "MINILAMBDA_EXECUTOR_URLS", CFG_STR, "http://127.0.0.1:8081", 0, 0,
                           NULL, "comma-separated lambda-executor base URLs", &cfg.executor_urls, false };
    if (httpc_global_init() != ML_OK ||
        svc_init(&s, "gateway", "MINILAMBDA_GATEWAY_PORT", "8080", vars, n, argc, argv) != ML_OK)
        return 1;
    if (deps_open(&d, &cfg.deps, DEPS_REDIS, NULL, true, &s) != ML_OK ||
        add_upstream_checks(&s, "build-master", cfg.build_master_urls) != ML_OK ||
        add_upstream_checks(&s, "lambda-executor", cfg.executor_urls) != ML_OK ||
        svc_serve(&s, NULL, 0) != ML_OK)
        goto out;
    rc = 0;
out:
    deps_close(&d);
    svc_free(&s);
    return rc;
}
