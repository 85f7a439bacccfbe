/* tenancy.c — namespaces and their quotas: the admin routes and the shared helpers (see
 * tenancy.h). */
#include "tenancy.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "fnspec.h"
#include "log.h"
#include "pgpool.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define NS_COLS "name, max_functions::text, max_concurrency::text, builds_per_minute::text, " \
                ISO("created_at") ", " ISO("updated_at") ", log_retention_days::text"

const char *const tenancy_quota_names[TENANCY_NQUOTAS] = { "max_functions", "max_concurrency",
                                                           "builds_per_minute" };
static const char *const default_vars[TENANCY_NQUOTAS] = { "MINILAMBDA_NS_DEFAULT_MAX_FUNCTIONS",
                                                           "MINILAMBDA_NS_DEFAULT_MAX_CONCURRENCY",
                                                           "MINILAMBDA_NS_DEFAULT_BUILDS_PER_MINUTE" };

size_t tenancy_cfg_vars(tenancy *t, cfg_var *vars, size_t max)
{
    const cfg_var own[] = {
        { default_vars[0], CFG_STR, "", 0, 0, NULL,
          "max_functions of a namespace no admin set quotas for (empty: unlimited)", &t->def_text[0], false },
        { default_vars[1], CFG_STR, "", 0, 0, NULL,
          "max_concurrency of a namespace no admin set quotas for (empty: unlimited)", &t->def_text[1], false },
        { default_vars[2], CFG_STR, "", 0, 0, NULL,
          "builds_per_minute of a namespace no admin set quotas for (empty: unlimited)", &t->def_text[2], false },
    };
    return cfg_copy(vars, max, own, ML_ARRAY_LEN(own));
}

int tenancy_default_parse(const char *text, int64_t *out)
{
    if (!text || !*text) {
        *out = TENANCY_UNLIMITED;
        return ML_OK;
    }
    return ml_parse_int64(text, 1, TENANCY_QUOTA_MAX, out);
}

int tenancy_start(tenancy *t, ex_app *app, svc *s)
{
    t->app = app;
    for (size_t i = 0; i < TENANCY_NQUOTAS; i++)
        if (tenancy_default_parse(t->def_text[i], &t->def[i]) != ML_OK) {
            ml_log_error("%s must be empty (unlimited) or 1..%d", default_vars[i], TENANCY_QUOTA_MAX);
            return ML_ERR;
        }
    t->m_changes = metrics_counter(s->metrics, "minilambda_admin_changes_total",
                                   "Changes made through the admin API (namespaces, access keys), by action.",
                                   "action");
    return t->m_changes ? ML_OK : ML_ERR;
}

int tenancy_fail(tenancy_err *e, int status, const char *code, const char *fmt, ...)
{
    va_list ap;

    e->status = status;
    e->code = code;
    va_start(ap, fmt);
    ml_vsnprintf_trunc(e->msg, sizeof(e->msg), fmt, ap);
    va_end(ap);
    return ML_ERR;
}

int tenancy_only_members(const cJSON *body, const char *const *allowed, tenancy_err *e)
{
    const cJSON *m;

    if (!cJSON_IsObject(body))
        return tenancy_fail(e, 400, "invalid_body", "the body must be a JSON object");
    cJSON_ArrayForEach(m, body) {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], m->string) != 0)
            i++;
        if (!allowed[i])
            return tenancy_fail(e, 400, "invalid_field", "unknown field '%.64s'", m->string);
    }
    return ML_OK;
}

/* One quota value: null (unlimited) or an integer 1..TENANCY_QUOTA_MAX. */
static int quota_value(const cJSON *v, const char *name, int64_t *out, tenancy_err *e)
{
    if (cJSON_IsNull(v)) {
        *out = TENANCY_UNLIMITED;
        return ML_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
        v->valuedouble > TENANCY_QUOTA_MAX)
        return tenancy_fail(e, 400, "invalid_field", "quotas.%s must be null (unlimited) or an integer 1..%d",
                            name, TENANCY_QUOTA_MAX);
    *out = (int64_t)v->valuedouble;
    return ML_OK;
}

int tenancy_quotas_parse(const cJSON *q, const int64_t def[TENANCY_NQUOTAS], tenancy_quotas *out,
                         tenancy_err *e)
{
    static const char *const allowed[] = { "max_functions", "max_concurrency", "builds_per_minute", NULL };

    if (!cJSON_IsObject(q))
        return tenancy_fail(e, 400, "invalid_field", "quotas must be an object");
    if (tenancy_only_members(q, allowed, e) != ML_OK)
        return ML_ERR;
    for (size_t i = 0; i < TENANCY_NQUOTAS; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(q, tenancy_quota_names[i]);
        out->set[i] = v != NULL;
        out->val[i] = def[i];
        if (v && quota_value(v, tenancy_quota_names[i], &out->val[i], e) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

int tenancy_create_parse(const cJSON *body, const int64_t def[TENANCY_NQUOTAS],
                         char name[TENANT_MAX + 1], tenancy_quotas *q, tenancy_err *e)
{
    static const char *const allowed[] = { "name", "quotas", NULL };
    const cJSON *n = cJSON_GetObjectItemCaseSensitive(body, "name");
    const cJSON *quotas = cJSON_GetObjectItemCaseSensitive(body, "quotas");

    if (tenancy_only_members(body, allowed, e) != ML_OK)
        return ML_ERR;
    if (!n)
        return tenancy_fail(e, 400, "missing_field", "name is required");
    if (!cJSON_IsString(n) || fnspec_ns_valid(n->valuestring) != ML_OK)
        return tenancy_fail(e, 400, "invalid_namespace",
                            "name must be 1-63 of [a-z0-9-], not starting or ending with '-'");
    ml_strlcpy(name, n->valuestring, TENANT_MAX + 1);
    if (!quotas) {
        for (size_t i = 0; i < TENANCY_NQUOTAS; i++)
            q->val[i] = def[i], q->set[i] = false;
        return ML_OK;
    }
    return tenancy_quotas_parse(quotas, def, q, e);
}

int tenancy_patch_parse(const cJSON *body, const int64_t def[TENANCY_NQUOTAS], tenancy_quotas *q,
                        tenancy_err *e)
{
    static const char *const allowed[] = { "quotas", NULL };
    const cJSON *quotas = cJSON_GetObjectItemCaseSensitive(body, "quotas");

    if (tenancy_only_members(body, allowed, e) != ML_OK)
        return ML_ERR;
    if (!quotas)
        return tenancy_fail(e, 400, "missing_field", "quotas is required");
    return tenancy_quotas_parse(quotas, def, q, e);
}

int tenancy_limit_parse(const char *text, int64_t *out, tenancy_err *e)
{
    if (!text) {
        *out = TENANCY_LIST_DEFAULT;
        return ML_OK;
    }
    if (ml_parse_int64(text, 1, TENANCY_LIST_MAX, out) != ML_OK)
        return tenancy_fail(e, 400, "invalid_query", "limit must be 1..%d", TENANCY_LIST_MAX);
    return ML_OK;
}

deps *tenancy_db(tenancy *t, httpd_resp *resp)
{
    deps *d = app_thread_deps(t->app);
    pgpool_status st = d ? deps_db_acquire(d) : PGPOOL_CONNECT_FAILED;

    if (st == PGPOOL_OK)
        return d;
    httpd_resp_header(resp, "Retry-After", "1");
    httpd_resp_error(resp, 503, "service_unavailable", "lambda database: %s",
                     d ? pgpool_status_str(st) : "no connection");
    return NULL;
}

void tenancy_db_error(deps *d, httpd_resp *resp)
{
    httpd_resp_header(resp, "Retry-After", "1");
    httpd_resp_error(resp, 503, "service_unavailable", "lambda database: %s", pg_error(d->db));
}

void tenancy_count(tenancy *t, const char *action)
{
    if (t->m_changes)
        metric_inc(t->m_changes, (const char *[]){ action });
}

/* A quota as JSON: a number, or null (unlimited). */
static cJSON *quota_json(int64_t v)
{
    return v == TENANCY_UNLIMITED ? cJSON_CreateNull() : cJSON_CreateNumber((double)v);
}

/* A namespace from its row (NS_COLS) as JSON; the caller owns the result. */
static cJSON *ns_row_json(const PGresult *r, int row)
{
    cJSON *o = cJSON_CreateObject(), *q;

    cJSON_AddStringToObject(o, "name", PQgetvalue(r, row, 0));
    q = cJSON_AddObjectToObject(o, "quotas");
    for (int i = 0; i < TENANCY_NQUOTAS; i++) {
        int64_t v = TENANCY_UNLIMITED;
        if (!pg_is_null(r, row, 1 + i))
            pg_get_int64(r, row, 1 + i, &v);
        cJSON_AddItemToObject(q, tenancy_quota_names[i], quota_json(v));
    }
    cJSON_AddBoolToObject(o, "created", true);
    cJSON_AddStringToObject(o, "created_at", PQgetvalue(r, row, 4));
    cJSON_AddStringToObject(o, "updated_at", PQgetvalue(r, row, 5));
    if (pg_is_null(r, row, 6))
        cJSON_AddNullToObject(o, "log_retention_days");
    else
        cJSON_AddNumberToObject(o, "log_retention_days", atof(PQgetvalue(r, row, 6)));
    return o;
}

/* A namespace with no row: the configured defaults. */
static cJSON *ns_default_json(const tenancy *t, const char *name)
{
    cJSON *o = cJSON_CreateObject(), *q;

    cJSON_AddStringToObject(o, "name", name);
    q = cJSON_AddObjectToObject(o, "quotas");
    for (int i = 0; i < TENANCY_NQUOTAS; i++)
        cJSON_AddItemToObject(q, tenancy_quota_names[i], quota_json(t->def[i]));
    cJSON_AddBoolToObject(o, "created", false);
    return o;
}

/* The body's "log_retention_days" (docs/logs.md §1: 1..365, or null for the executor's
 * MINILAMBDA_LOG_RETENTION_DAYS), detached from body so the quota parsers never see it.
 * *set false when absent; text gets the value ("" for null). ML_ERR with e. */
static int retention_take(cJSON *body, bool *set, char text[8], tenancy_err *e)
{
    cJSON *v = cJSON_IsObject(body) ? cJSON_DetachItemFromObjectCaseSensitive(body, "log_retention_days") : NULL;
    int rc = ML_OK;

    *set = v != NULL;
    text[0] = '\0';
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
            v->valuedouble > 365)
            rc = tenancy_fail(e, 400, "invalid_field", "log_retention_days must be null (the default) or 1..365");
        else
            ml_snprintf_trunc(text, 8, "%d", (int)v->valuedouble);
    }
    if (v && rc == ML_OK && !cJSON_GetObjectItemCaseSensitive(body, "quotas"))
        cJSON_AddObjectToObject(body, "quotas"); /* a PATCH of the retention alone */
    cJSON_Delete(v);
    return rc;
}

/* Sets ns's retention when the request named it; *r becomes the updated row. */
static void retention_apply(deps *d, const char *ns, bool set, const char *text, PGresult **r)
{
    PGresult *u;

    if (!set || !*r || PQntuples(*r) != 1)
        return;
    u = pg_query(d->db, "ex_ns_retention",
                 "UPDATE namespaces SET log_retention_days = $2::int, updated_at = now() WHERE name = $1"
                 " RETURNING " NS_COLS, 2, (const char *[]){ ns, text[0] ? text : NULL });
    if (u) {
        PQclear(*r);
        *r = u;
    }
}

static void send_err(httpd_resp *resp, const tenancy_err *e)
{
    httpd_resp_error(resp, e->status, e->code, "%s", e->msg);
}

/* The quotas as query parameters: the value's text, or NULL (SQL NULL) when unlimited. */
static void quota_params(const tenancy_quotas *q, char text[TENANCY_NQUOTAS][24], const char **out)
{
    for (int i = 0; i < TENANCY_NQUOTAS; i++) {
        ml_snprintf_trunc(text[i], 24, "%lld", (long long)q->val[i]);
        out[i] = q->val[i] == TENANCY_UNLIMITED ? NULL : text[i];
    }
}

static httpd_result h_create(httpd_req *req, httpd_resp *resp, void *ud)
{
    tenancy *t = ud;
    cJSON *body = httpd_body_json(req, resp);
    char name[TENANT_MAX + 1], text[TENANCY_NQUOTAS][24], days[8];
    const char *p[4] = { name };
    tenancy_quotas q;
    tenancy_err e;
    PGresult *r = NULL;
    bool days_set;
    deps *d;

    if (!body)
        return HTTPD_DONE;
    if (retention_take(body, &days_set, days, &e) != ML_OK ||
        tenancy_create_parse(body, t->def, name, &q, &e) != ML_OK) {
        send_err(resp, &e);
        goto out;
    }
    quota_params(&q, text, p + 1);
    if (!(d = tenancy_db(t, resp)))
        goto out;
    r = pg_query(d->db, "ex_ns_create",
                 "INSERT INTO namespaces (name, max_functions, max_concurrency, builds_per_minute)"
                 " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING RETURNING " NS_COLS,
                 4, p);
    if (!r)
        tenancy_db_error(d, resp);
    retention_apply(d, name, days_set, days, &r);
    deps_db_release(d);
    if (r && PQntuples(r) == 0)
        httpd_resp_error(resp, 409, "conflict", "namespace '%s' exists (PATCH changes its quotas)", name);
    else if (r) {
        httpd_resp_json(resp, 201, ns_row_json(r, 0));
        tenancy_count(t, "namespace_create");
        ml_log_info("namespace %s created", name);
    }
out:
    PQclear(r);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

/* The keyset cursor of a list: the last name/id of the previous page ("" from the start). */
static int cursor_param(httpd_req *req, const char **out, tenancy_err *e)
{
    const char *c = httpd_query(req, "cursor");

    *out = c ? c : "";
    if (c && (!*c || strlen(c) > 128))
        return tenancy_fail(e, 400, "invalid_query", "cursor must be the next_cursor of a previous page");
    return ML_OK;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    tenancy *t = ud;
    char limit_text[24];
    const char *cursor;
    int64_t limit;
    tenancy_err e;
    PGresult *r;
    deps *d;

    if (tenancy_limit_parse(httpd_query(req, "limit"), &limit, &e) != ML_OK ||
        cursor_param(req, &cursor, &e) != ML_OK) {
        send_err(resp, &e);
        return HTTPD_DONE;
    }
    ml_snprintf_trunc(limit_text, sizeof(limit_text), "%lld", (long long)limit);
    if (!(d = tenancy_db(t, resp)))
        return HTTPD_DONE;
    r = pg_query(d->db, "ex_ns_list",
                 "SELECT " NS_COLS " FROM namespaces WHERE name > $1 ORDER BY name LIMIT $2::int", 2,
                 (const char *[]){ cursor, limit_text });
    if (!r)
        tenancy_db_error(d, resp);
    deps_db_release(d);
    if (!r)
        return HTTPD_DONE;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "namespaces");
    int n = PQntuples(r);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(items, ns_row_json(r, i));
    cJSON_AddItemToObject(o, "next_cursor", n == limit ? cJSON_CreateString(PQgetvalue(r, n - 1, 0))
                                                       : cJSON_CreateNull());
    PQclear(r);
    httpd_resp_json(resp, 200, o);
    return HTTPD_DONE;
}

/* The {ns} path parameter; ML_ERR with a 400 invalid_namespace written. */
static int path_ns(httpd_req *req, httpd_resp *resp, const char **ns)
{
    *ns = httpd_param(req, "ns");
    if (fnspec_ns_valid(*ns) == ML_OK)
        return ML_OK;
    httpd_resp_error(resp, 400, "invalid_namespace",
                     "a namespace name is 1-63 of [a-z0-9-], not starting or ending with '-'");
    return ML_ERR;
}

static httpd_result h_get(httpd_req *req, httpd_resp *resp, void *ud)
{
    tenancy *t = ud;
    const char *ns;
    PGresult *r;
    deps *d;

    if (path_ns(req, resp, &ns) != ML_OK || !(d = tenancy_db(t, resp)))
        return HTTPD_DONE;
    r = pg_query(d->db, "ex_ns_get", "SELECT " NS_COLS " FROM namespaces WHERE name = $1", 1,
                 (const char *[]){ ns });
    if (!r)
        tenancy_db_error(d, resp);
    deps_db_release(d);
    if (r)
        httpd_resp_json(resp, 200, PQntuples(r) ? ns_row_json(r, 0) : ns_default_json(t, ns));
    PQclear(r);
    return HTTPD_DONE;
}

/* Upserts ns: a new row takes q's values (the defaults where the request named none); an
 * existing row changes only the quotas the request named ($5..$7). */
static PGresult *ns_upsert(deps *d, const char *ns, const tenancy_quotas *q)
{
    char text[TENANCY_NQUOTAS][24];
    const char *p[7] = { ns };

    quota_params(q, text, p + 1);
    for (int i = 0; i < TENANCY_NQUOTAS; i++)
        p[4 + i] = q->set[i] ? "t" : "f";
    return pg_query(d->db, "ex_ns_upsert",
                    "INSERT INTO namespaces AS n (name, max_functions, max_concurrency, builds_per_minute)"
                    " VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET"
                    " max_functions = CASE WHEN $5::bool THEN EXCLUDED.max_functions ELSE n.max_functions END,"
                    " max_concurrency = CASE WHEN $6::bool THEN EXCLUDED.max_concurrency ELSE n.max_concurrency END,"
                    " builds_per_minute = CASE WHEN $7::bool THEN EXCLUDED.builds_per_minute"
                    " ELSE n.builds_per_minute END, updated_at = now() RETURNING " NS_COLS,
                    7, p);
}

static httpd_result h_patch(httpd_req *req, httpd_resp *resp, void *ud)
{
    tenancy *t = ud;
    const char *ns;
    cJSON *body = NULL;
    tenancy_quotas q;
    tenancy_err e;
    PGresult *r = NULL;
    char days[8];
    bool days_set;
    deps *d;

    if (path_ns(req, resp, &ns) != ML_OK || !(body = httpd_body_json(req, resp)))
        goto out;
    if (retention_take(body, &days_set, days, &e) != ML_OK ||
        tenancy_patch_parse(body, t->def, &q, &e) != ML_OK) {
        send_err(resp, &e);
        goto out;
    }
    if (!(d = tenancy_db(t, resp)))
        goto out;
    if (!(r = ns_upsert(d, ns, &q)))
        tenancy_db_error(d, resp);
    retention_apply(d, ns, days_set, days, &r);
    deps_db_release(d);
    if (r && PQntuples(r) == 1) {
        httpd_resp_json(resp, 200, ns_row_json(r, 0));
        tenancy_count(t, "namespace_update");
        ml_log_info("namespace %s quotas updated", ns);
    }
out:
    PQclear(r);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

size_t tenancy_routes(tenancy *t, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/admin/namespaces", h_create, t, 16384, true },
        { "GET", "/admin/namespaces", h_list, t, 0, true },
        { "GET", "/admin/namespaces/{ns}", h_get, t, 0, true },
        { "PATCH", "/admin/namespaces/{ns}", h_patch, t, 16384, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
