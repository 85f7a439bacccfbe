/* tenancy.h — the executor's admin API for namespaces and their quotas (docs/tenants.md).
 *
 * POST/GET /admin/namespaces and GET/PATCH /admin/namespaces/{ns} keep rows in
 * lambda_service_db's `namespaces` (migration 0012). A valid name with no row reads as the
 * configured defaults (MINILAMBDA_NS_DEFAULT_*) with "created": false; PATCH creates the
 * row when needed. The gateway routes these with scope admin; here, as every executor
 * route, they need only the internal token. A quota is a positive integer or null
 * (unlimited). The helpers below (db borrowing, the change counter, member checks) are
 * shared with accesskeys.c. */
#ifndef EX_TENANCY_H
#define EX_TENANCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "app.h"
#include "config.h"
#include "httpd.h"
#include "tenant.h"

#define TENANCY_NQUOTAS 3
#define TENANCY_UNLIMITED (-1)
#define TENANCY_QUOTA_MAX 2147483647 /* the column is an integer */
#define TENANCY_LIST_DEFAULT 100
#define TENANCY_LIST_MAX 1000

/* The quota names, in the order of every int64_t[TENANCY_NQUOTAS] below. */
extern const char *const tenancy_quota_names[TENANCY_NQUOTAS];

/* A 4xx answer found while checking a request: code (static) and message. */
typedef struct tenancy_err {
    int status;
    const char *code;
    char msg[256];
} tenancy_err;

/* Quotas from a request: val[i] is a positive integer or TENANCY_UNLIMITED; set[i] tells
 * whether the request named it (PATCH leaves the others as they are). */
typedef struct tenancy_quotas {
    int64_t val[TENANCY_NQUOTAS];
    bool set[TENANCY_NQUOTAS];
} tenancy_quotas;

typedef struct tenancy {
    ex_app *app;
    const char *def_text[TENANCY_NQUOTAS]; /* config; "" = unlimited */
    int64_t def[TENANCY_NQUOTAS];          /* parsed by tenancy_start */
    metric *m_changes;                     /* minilambda_admin_changes_total{action} */
} tenancy;

/* Appends MINILAMBDA_NS_DEFAULT_{MAX_FUNCTIONS,MAX_CONCURRENCY,BUILDS_PER_MINUTE}; returns
 * how many (at most max). Call before svc_init. */
size_t tenancy_cfg_vars(tenancy *t, cfg_var *vars, size_t max);

/* After svc_init (before app_start: it only keeps app for later): parses the defaults and
 * registers the change counter on s->metrics. ML_ERR (logged, naming the variable) when a
 * default is not empty or 1..TENANCY_QUOTA_MAX. */
int tenancy_start(tenancy *t, ex_app *app, svc *s);

/* Writes the four namespace routes (blocking) to out; returns how many (at most max). */
size_t tenancy_routes(tenancy *t, httpd_route *out, size_t max);

/* A configured default: "" -> TENANCY_UNLIMITED, else 1..TENANCY_QUOTA_MAX. ML_ERR otherwise. */
int tenancy_default_parse(const char *text, int64_t *out);

/* Checks a {"quotas":{...}} member value q (an object of only the quota names, each a
 * positive integer or null). Names absent get def[i] with set[i] false. ML_ERR with e. */
int tenancy_quotas_parse(const cJSON *q, const int64_t def[TENANCY_NQUOTAS], tenancy_quotas *out,
                         tenancy_err *e);

/* POST /admin/namespaces body: {"name", "quotas"?}. ML_ERR with e. */
int tenancy_create_parse(const cJSON *body, const int64_t def[TENANCY_NQUOTAS],
                         char name[TENANT_MAX + 1], tenancy_quotas *q, tenancy_err *e);

/* PATCH /admin/namespaces/{ns} body: {"quotas": {...}}. ML_ERR with e. */
int tenancy_patch_parse(const cJSON *body, const int64_t def[TENANCY_NQUOTAS], tenancy_quotas *q,
                        tenancy_err *e);

/* ML_OK if body is an object whose members are all in allowed (NULL-terminated); ML_ERR
 * with e (400 invalid_body / unknown_field) otherwise. */
int tenancy_only_members(const cJSON *body, const char *const *allowed, tenancy_err *e);

/* Fills e (status, code, printf message); returns ML_ERR for `return tenancy_fail(...)`. */
int tenancy_fail(tenancy_err *e, int status, const char *code, const char *fmt, ...) ML_PRINTF(4, 5);

/* ?limit= (absent: TENANCY_LIST_DEFAULT; 1..TENANCY_LIST_MAX). ML_ERR with e. */
int tenancy_limit_parse(const char *text, int64_t *out, tenancy_err *e);

/* This thread's deps with its connection borrowed (pair with deps_db_release); NULL with
 * a 503 and Retry-After written to resp. */
deps *tenancy_db(tenancy *t, httpd_resp *resp);

/* 503 with the database's error (after a failed statement on d). */
void tenancy_db_error(deps *d, httpd_resp *resp);

/* Counts one successful admin change (action: a static string such as "key_create"). */
void tenancy_count(tenancy *t, const char *action);

#endif
