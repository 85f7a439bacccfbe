/* versions_http.c — the routes of published versions and aliases (docs/versions.md) and
 * GET /functions/{fn}?qualifier=. Every route resolves {fn} within the request's namespace
 * first (registry_get, as invoke does): another namespace's function is 404 like a missing
 * one, and every statement below is then keyed by the function's id. */
#include "versions-int.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "secretbox.h"

#define PAGE_DEFAULT 20
#define PAGE_MAX 100

/* The request's function within its namespace: its id into id. ML_ERR with 400/404/503
 * written. */
static int fn_id_of(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, char id[ML_UUID_LEN])
{
    char ns[FN_NS_MAX], err[256] = "";
    const char *fn = httpd_param(req, "fn");
    fn_info *f;
    int rc;

    if (registry_req_ns(req, resp, ns) != ML_OK)
        return ML_ERR;
    if (!(f = malloc(sizeof(*f)))) {
        httpd_resp_error(resp, 500, "internal", "out of memory");
        return ML_ERR;
    }
    rc = registry_get(ctx->reg, ns, fn, f, err, sizeof(err));
    if (rc == ML_OK)
        ml_strlcpy(id, f->id, ML_UUID_LEN);
    else if (rc == REGISTRY_NOT_FOUND)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn ? fn : "");
    else {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 503, "service_unavailable", "function registry: %s", err);
    }
    free(f);
    return rc == ML_OK ? ML_OK : ML_ERR;
}

static bool reveal_env(httpd_req *req)
{
    const char *v = httpd_header(req, SECRETBOX_REVEAL_HEADER);

    return v && strcmp(v, SECRETBOX_REVEAL_VALUE) == 0;
}

/* env values, stored sealed, become "***" or (reveal) their plaintext: the document's own
 * env and that of every element of its list member. */
static int render_env(cJSON *doc, const char *list, bool reveal)
{
    char err[256];
    cJSON *e, *arr = list ? cJSON_GetObjectItemCaseSensitive(doc, list) : NULL;

    if (cJSON_GetObjectItemCaseSensitive(doc, "env") &&
        secretbox_env_render(secretbox_global(), cJSON_GetObjectItemCaseSensitive(doc, "env"), reveal, err,
                             sizeof(err)) != ML_OK)
        return ML_ERR;
    cJSON_ArrayForEach(e, arr)
        if (secretbox_env_render(secretbox_global(), cJSON_GetObjectItemCaseSensitive(e, "env"), reveal, err,
                                 sizeof(err)) != ML_OK)
            return ML_ERR;
    return ML_OK;
}

/* Answers Postgres' json text compactly, env rendered. */
static void reply_text(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, int status, const char *text,
                       const char *list)
{
    cJSON *o = text ? cJSON_Parse(text) : NULL;

    if (!o || render_env(o, list, reveal_env(req)) != ML_OK) {
        cJSON_Delete(o);
        httpd_resp_error(resp, 500, "internal", "cannot render the document");
        return;
    }
    registry_decorate(ctx->reg, o);
    httpd_resp_json(resp, status, o);
}

static void db_fail(httpd_resp *resp, pg_conn *db, const char *what)
{
    ml_log_warn("versions: %s: %s", what, pg_error(db));
    if (pg_error_is_connection(db)) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "function database unavailable");
    } else {
        httpd_resp_error(resp, 500, "internal", "%s failed", what);
    }
}

/* How a statement keyed by key is answered: its failure names what; no row is a 404 of
 * code, "no <noun> 'key'"; a row is its document with status, or status 204 without one. */
typedef struct row_answer {
    const char *what, *code, *noun;
    int status;
} row_answer;

static void answer_row(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, pg_conn *db, PGresult *res,
                       const row_answer *a, const char *key)
{
    if (!res)
        db_fail(resp, db, a->what);
    else if (PQntuples(res) == 0)
        httpd_resp_error(resp, 404, a->code, "no %s '%s'", a->noun, key);
    else if (a->status == 204)
        resp->status = 204;
    else
        reply_text(ctx, req, resp, a->status, pg_get_text(res, 0, 0), NULL);
}

/* The statement of a list route, after (cursor text) and limit already checked. */
typedef PGresult *(*list_stmt)(pg_conn *db, const char *fn_id, const char *after, const char *limit);

/* Runs a list statement on a borrowed connection and answers its document (env rendered in
 * the elements of member list). */
static void answer_list(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, const char *id, list_stmt stmt,
                        const char *after, const char *limit, const char *what, const char *list)
{
    pg_conn *db = ver_need_db(ctx, resp);
    PGresult *res;

    if (!db)
        return;
    if (!(res = stmt(db, id, after, limit)))
        db_fail(resp, db, what);
    else
        reply_text(ctx, req, resp, 200, pg_get_text(res, 0, 0), list);
    PQclear(res);
    ver_put_db(ctx);
}

/* ?limit= into limit (text); ML_ERR with 400 written. */
static int page_limit(httpd_req *req, httpd_resp *resp, char limit[8])
{
    const char *s = httpd_query(req, "limit");
    int64_t n = PAGE_DEFAULT;

    if ((s && ml_parse_int64(s, 1, PAGE_MAX, &n) != ML_OK) || ml_snprintf(limit, 8, "%lld", (long long)n) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_query", "limit must be 1..%d and cursor a value from next_cursor", PAGE_MAX);
        return ML_ERR;
    }
    return ML_OK;
}

/* The optional publish body: description and code_sha256 (NULL when absent). ML_ERR: 400. */
static int publish_body(httpd_req *req, httpd_resp *resp, cJSON **body, const char **desc, const char **sha)
{
    size_t len = 0;
    const cJSON *d, *s;

    *desc = *sha = NULL;
    *body = NULL;
    httpd_body(req, &len);
    if (len == 0)
        return ML_OK;
    if (!(*body = httpd_body_json(req, resp)))
        return ML_ERR;
    d = cJSON_GetObjectItemCaseSensitive(*body, "description");
    s = cJSON_GetObjectItemCaseSensitive(*body, "code_sha256");
    if (!cJSON_IsObject(*body) || (d && !cJSON_IsNull(d) && (!cJSON_IsString(d) || strlen(d->valuestring) > VER_DESC_MAX)) ||
        (s && !cJSON_IsNull(s) && !cJSON_IsString(s))) {
        httpd_resp_error(resp, 400, "invalid_body", "the body is {\"description\": text (<= %d), \"code_sha256\": text}",
                         VER_DESC_MAX);
        return ML_ERR;
    }
    *desc = cJSON_IsString(d) ? d->valuestring : NULL;
    *sha = cJSON_IsString(s) ? s->valuestring : NULL;
    return ML_OK;
}

/* Answers a publish outcome other than success. */
static void publish_refused(httpd_resp *resp, pg_conn *db, int rc, const char *fn)
{
    if (rc == PUB_NOT_FOUND)
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn);
    else if (rc == PUB_NOT_ACTIVE)
        httpd_resp_error(resp, 409, "not_active", "function '%s' is not active or a build is in progress", fn);
    else if (rc == PUB_SHA_MISMATCH)
        httpd_resp_error(resp, 412, "precondition_failed", "code_sha256 is not the current code's sha256");
    else
        db_fail(resp, db, "publishing a version");
}

static httpd_result h_publish(httpd_req *req, httpd_resp *resp, void *ud)
{
    ver_ctx *ctx = ud;
    char id[ML_UUID_LEN];
    const char *desc, *sha;
    cJSON *body = NULL;
    PGresult *res = NULL;
    pg_conn *db;
    int64_t n = 0;
    bool created;
    int rc;

    if (fn_id_of(ctx, req, resp, id) != ML_OK || publish_body(req, resp, &body, &desc, &sha) != ML_OK ||
        !(db = ver_need_db(ctx, resp)))
        goto out;
    rc = ver_store_publish(db, id, desc, sha, &n, &created);
    if (rc != ML_OK)
        publish_refused(resp, db, rc, httpd_param(req, "fn"));
    else if (!(res = ver_store_doc(db, id, n)) || PQntuples(res) == 0)
        db_fail(resp, db, "reading the published version");
    else
        reply_text(ctx, req, resp, 201, pg_get_text(res, 0, 0), NULL);
    ver_put_db(ctx);
    if (rc == ML_OK && created)
        ml_log_kv(ML_LOG_INFO, "version published", "function_id", id, NULL);
out:
    PQclear(res);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    ver_ctx *ctx = ud;
    const char *cursor = httpd_query(req, "cursor");
    char id[ML_UUID_LEN], limit[8], after[24] = "-1";
    int64_t c;

    if (fn_id_of(ctx, req, resp, id) != ML_OK || page_limit(req, resp, limit) != ML_OK)
        return HTTPD_DONE;
    if (cursor && (ml_parse_int64(cursor, 0, VER_NUMBER_MAX, &c) != ML_OK ||
                   ml_snprintf(after, sizeof(after), "%lld", (long long)c) != ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_query", "cursor must be a value from next_cursor");
        return HTTPD_DONE;
    }
    answer_list(ctx, req, resp, id, ver_store_list, after, limit, "listing versions", "versions");
    return HTTPD_DONE;
}

/* The start of the {v} routes: the function's id, v's number into *n (0: $LATEST, refused
 * unless latest_ok) and a borrowed connection; NULL with the answer written. */
static pg_conn *version_begin(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, bool latest_ok, char id[ML_UUID_LEN],
                              int64_t *n)
{
    const char *v = httpd_param(req, "v");
    qual_kind k;

    *n = 0;
    k = ver_qualifier_kind(v, n);
    if (fn_id_of(ctx, req, resp, id) != ML_OK)
        return NULL;
    if (k == QUAL_LATEST && !latest_ok)
        httpd_resp_error(resp, 400, "invalid_version", "$LATEST cannot be deleted");
    else if (k != QUAL_LATEST && k != QUAL_NUMBER)
        httpd_resp_error(resp, 404, "version_not_found",
                         latest_ok ? "no version '%s' ($LATEST or a number)" : "no version '%s'", v ? v : "");
    else
        return ver_need_db(ctx, resp);
    return NULL;
}

static httpd_result h_get_version(httpd_req *req, httpd_resp *resp, void *ud)
{
    static const row_answer a = { "reading a version", "version_not_found", "version", 200 };
    ver_ctx *ctx = ud;
    char id[ML_UUID_LEN];
    int64_t n;
    pg_conn *db = version_begin(ctx, req, resp, true, id, &n);
    PGresult *res;

    if (!db)
        return HTTPD_DONE;
    res = ver_store_doc(db, id, n);
    answer_row(ctx, req, resp, db, res, &a, httpd_param(req, "v"));
    PQclear(res);
    ver_put_db(ctx);
    return HTTPD_DONE;
}

static httpd_result h_delete_version(httpd_req *req, httpd_resp *resp, void *ud)
{
    static const row_answer a = { "deleting a version", "version_not_found", "version", 204 };
    ver_ctx *ctx = ud;
    const char *v = httpd_param(req, "v");
    char id[ML_UUID_LEN];
    int64_t n;
    pg_conn *db = version_begin(ctx, req, resp, false, id, &n);
    PGresult *res;

    if (!db)
        return HTTPD_DONE;
    res = ver_store_delete(db, id, v);
    if (!res && strcmp(pg_sqlstate(db), "23503") == 0) /* an alias's foreign key */
        httpd_resp_error(resp, 409, "version_in_use", "an alias routes to version %s: change the alias first", v);
    else
        answer_row(ctx, req, resp, db, res, &a, v);
    ver_put_db(ctx);
    if (res && PQntuples(res) > 0)
        qualifier_forget(ctx, id, n);
    PQclear(res);
    return HTTPD_DONE;
}

/* ---- aliases ---- */

/* A PUT body as the statements' parameters (see ver_store_alias_update); bufs hold the
 * numbers' text. ML_ERR with 400 written. */
typedef struct alias_put {
    const char *p[9];
    char version[24], extra[24], weight[40];
} alias_put;

/* version (a string or a number: "$LATEST" or a published version) into ap; ML_ERR: 400. */
static int put_version(const cJSON *v, alias_put *ap, int64_t *n, httpd_resp *resp)
{
    char buf[24];
    const char *s = cJSON_IsString(v) ? v->valuestring : NULL;

    if (cJSON_IsNumber(v) && ml_snprintf(buf, sizeof(buf), "%.0f", v->valuedouble) == ML_OK && v->valuedouble >= 1)
        s = buf;
    if (s && !s[0])
        s = NULL; /* "" is no version (ver_qualifier_kind would take it for $LATEST) */
    switch (s ? ver_qualifier_kind(s, n) : QUAL_INVALID) {
    case QUAL_LATEST:
        *n = 0;
        ap->p[3] = NULL;
        return ML_OK;
    case QUAL_NUMBER:
        if (ml_snprintf(ap->version, sizeof(ap->version), "%lld", (long long)*n) != ML_OK)
            break;
        ap->p[3] = ap->version;
        return ML_OK;
    default:
        break;
    }
    httpd_resp_error(resp, 400, "invalid_field", "version must be \"$LATEST\" or a published version number");
    return ML_ERR;
}

/* The routing member into ap; ML_ERR: 400. */
static int put_routing(const cJSON *r, alias_put *ap, int64_t primary, bool primary_given, httpd_resp *resp)
{
    ver_routing vr;
    char err[256];

    if (ver_routing_parse(r, &vr, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_field", "%s", err);
        return ML_ERR;
    }
    if (vr.extra && primary_given && primary == 0) {
        httpd_resp_error(resp, 400, "invalid_field", "routing needs a published version: not with $LATEST");
        return ML_ERR;
    }
    if (vr.extra && primary_given && vr.extra == primary) {
        httpd_resp_error(resp, 400, "invalid_field", "routing must name another version than the alias's own");
        return ML_ERR;
    }
    if (vr.extra) { /* SQL parameters are never cut */
        if (ml_snprintf(ap->extra, sizeof(ap->extra), "%lld", (long long)vr.extra) != ML_OK ||
            ml_snprintf(ap->weight, sizeof(ap->weight), "%.17g", vr.weight) != ML_OK) {
            httpd_resp_error(resp, 500, "internal", "cannot format the routing");
            return ML_ERR;
        }
        ap->p[7] = ap->extra;
        ap->p[8] = ap->weight;
    }
    return ML_OK;
}

static int alias_body(const cJSON *b, alias_put *ap, bool *version_given, httpd_resp *resp)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(b, "version");
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(b, "description");
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(b, "routing");
    int64_t primary = 0;

    *version_given = v && !cJSON_IsNull(v);
    ap->p[2] = *version_given ? "true" : "false";
    ap->p[4] = d ? "true" : "false";
    ap->p[6] = r ? "true" : "false";
    if (!cJSON_IsObject(b)) {
        httpd_resp_error(resp, 400, "invalid_body", "the request body must be a JSON object");
        return ML_ERR;
    }
    if (*version_given && put_version(v, ap, &primary, resp) != ML_OK)
        return ML_ERR;
    if (d && !cJSON_IsNull(d) && (!cJSON_IsString(d) || strlen(d->valuestring) > VER_DESC_MAX)) {
        httpd_resp_error(resp, 400, "invalid_field", "description must be text of at most %d characters", VER_DESC_MAX);
        return ML_ERR;
    }
    ap->p[5] = cJSON_IsString(d) ? d->valuestring : "";
    return put_routing(r, ap, primary, *version_given, resp);
}

/* A refused alias statement: 404 for a version that does not exist, 400 for a split the
 * alias cannot have. */
static void alias_failed(httpd_resp *resp, pg_conn *db)
{
    if (strcmp(pg_sqlstate(db), "23503") == 0)
        httpd_resp_error(resp, 404, "version_not_found", "the alias names a version that is not published");
    else if (strcmp(pg_sqlstate(db), "23514") == 0)
        httpd_resp_error(resp, 400, "invalid_field",
                         "routing needs a published version as the alias's version, and another one to split to");
    else
        db_fail(resp, db, "writing an alias");
}

/* Create or update as the preconditions allow; *status 201/200, or 0 with resp written. */
static PGresult *alias_write(pg_conn *db, alias_put *ap, bool version_given, httpd_req *req, httpd_resp *resp,
                             int *status)
{
    const char *inm = httpd_header(req, "If-None-Match"), *im = httpd_header(req, "If-Match");
    bool create_only = inm && strcmp(inm, "*") == 0, update_only = im && strcmp(im, "*") == 0;
    PGresult *res = NULL;

    *status = 0;
    for (int round = 0; round < 2; round++) { /* an insert that lost a race updates instead */
        if (!create_only && (res = ver_store_alias_update(db, ap->p)) && PQntuples(res) > 0) {
            *status = 200;
            return res;
        }
        if (!create_only && !res)
            break;
        PQclear(res);
        res = NULL;
        if (update_only) {
            httpd_resp_error(resp, 404, "alias_not_found", "no alias '%s'", ap->p[1]);
            return NULL;
        }
        if (!version_given) {
            httpd_resp_error(resp, 400, "invalid_field", "version is required to create an alias");
            return NULL;
        }
        if (!(res = ver_store_alias_create(db, ap->p)))
            break;
        if (PQntuples(res) > 0) {
            *status = 201;
            return res;
        }
        PQclear(res);
        res = NULL;
        if (create_only) {
            httpd_resp_error(resp, 409, "alias_exists", "alias '%s' exists", ap->p[1]);
            return NULL;
        }
    }
    alias_failed(resp, db);
    return NULL;
}

static httpd_result h_put_alias(httpd_req *req, httpd_resp *resp, void *ud)
{
    ver_ctx *ctx = ud;
    const char *name = httpd_param(req, "alias");
    char id[ML_UUID_LEN];
    alias_put ap = { .p = { id, name } };
    cJSON *body = NULL;
    PGresult *res = NULL;
    pg_conn *db;
    bool version_given;
    int status;

    if (fn_id_of(ctx, req, resp, id) != ML_OK)
        goto out;
    if (!ver_alias_name_valid(name)) {
        httpd_resp_error(resp, 400, "invalid_alias_name", "an alias name is 1-128 of [A-Za-z0-9_-], not all digits");
        goto out;
    }
    if (!(body = httpd_body_json(req, resp)) || alias_body(body, &ap, &version_given, resp) != ML_OK ||
        !(db = ver_need_db(ctx, resp)))
        goto out;
    res = alias_write(db, &ap, version_given, req, resp, &status);
    ver_put_db(ctx);
    qualifier_forget(ctx, id, 0);
    if (res)
        reply_text(ctx, req, resp, status, pg_get_text(res, 0, 0), NULL);
out:
    PQclear(res);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

/* The statement of an {alias} route, keyed by the function and the alias name. */
typedef PGresult *(*alias_stmt)(pg_conn *db, const char *fn_id, const char *name);

/* GET and DELETE of one alias: a name that cannot be an alias is 404 like a missing one;
 * forget: the cached resolutions of the function go (the statement changed them). */
static httpd_result alias_route(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, alias_stmt stmt, const row_answer *a,
                                bool forget)
{
    const char *name = httpd_param(req, "alias");
    char id[ML_UUID_LEN];
    PGresult *res;
    pg_conn *db;

    if (fn_id_of(ctx, req, resp, id) != ML_OK)
        return HTTPD_DONE;
    if (!ver_alias_name_valid(name)) {
        httpd_resp_error(resp, 404, "alias_not_found", "no alias '%s'", name ? name : "");
        return HTTPD_DONE;
    }
    if (!(db = ver_need_db(ctx, resp)))
        return HTTPD_DONE;
    res = stmt(db, id, name);
    answer_row(ctx, req, resp, db, res, a, name);
    ver_put_db(ctx);
    if (forget)
        qualifier_forget(ctx, id, 0);
    PQclear(res);
    return HTTPD_DONE;
}

static httpd_result h_get_alias(httpd_req *req, httpd_resp *resp, void *ud)
{
    static const row_answer a = { "reading an alias", "alias_not_found", "alias", 200 };

    return alias_route(ud, req, resp, ver_store_alias_doc, &a, false);
}

static httpd_result h_list_aliases(httpd_req *req, httpd_resp *resp, void *ud)
{
    ver_ctx *ctx = ud;
    const char *cursor = httpd_query(req, "cursor");
    char id[ML_UUID_LEN], limit[8];

    if (fn_id_of(ctx, req, resp, id) != ML_OK || page_limit(req, resp, limit) != ML_OK)
        return HTTPD_DONE;
    if (cursor && !ver_alias_name_valid(cursor)) {
        httpd_resp_error(resp, 400, "invalid_query", "cursor must be a value from next_cursor");
        return HTTPD_DONE;
    }
    answer_list(ctx, req, resp, id, ver_store_alias_list, cursor, limit, "listing aliases", NULL);
    return HTTPD_DONE;
}

static httpd_result h_delete_alias(httpd_req *req, httpd_resp *resp, void *ud)
{
    static const row_answer a = { "deleting an alias", "alias_not_found", "alias", 204 };

    return alias_route(ud, req, resp, ver_store_alias_delete, &a, true);
}

/* ---- GET /functions/{fn}?qualifier= ---- */

/* The version document's code and configuration replace $LATEST's in the function's. */
static void overlay_doc(cJSON *fn, cJSON *ver)
{
    static const char *const keys[] = { "runtime", "handler", "memory_mb", "timeout_s", "env", "network",
                                        "description", "artifact" };
    cJSON *rev = cJSON_DetachItemFromObjectCaseSensitive(ver, "code_revision");
    cJSON *qv = cJSON_DetachItemFromObjectCaseSensitive(ver, "version");

    for (size_t i = 0; i < ML_ARRAY_LEN(keys); i++) {
        cJSON *v = cJSON_DetachItemFromObjectCaseSensitive(ver, keys[i]);
        if (!v)
            continue;
        if (cJSON_HasObjectItem(fn, keys[i]))
            cJSON_ReplaceItemInObjectCaseSensitive(fn, keys[i], v);
        else
            cJSON_AddItemToObject(fn, keys[i], v);
    }
    if (rev)
        cJSON_ReplaceItemInObjectCaseSensitive(fn, "version", rev);
    if (qv)
        cJSON_AddItemToObject(fn, "qualifier_version", qv);
}

/* The function document the registry answered, with qualifier version n's configuration. */
static void qualified_doc(ver_ctx *ctx, httpd_req *req, httpd_resp *resp, const char *id, int64_t n)
{
    cJSON *fn = cJSON_ParseWithLength(ml_buf_cstr(&resp->body), resp->body.len), *ver = NULL;
    pg_conn *db = ver_need_db(ctx, resp);
    PGresult *res = db ? ver_store_doc(db, id, n) : NULL;

    if (db && !res)
        db_fail(resp, db, "reading a version");
    else if (res && PQntuples(res) == 0)
        httpd_resp_error(resp, 404, "qualifier_not_found", "no version '%s'", httpd_query(req, "qualifier"));
    else if (res && (!fn || !(ver = cJSON_Parse(pg_get_text(res, 0, 0))) || render_env(ver, NULL, reveal_env(req)) != ML_OK))
        httpd_resp_error(resp, 500, "internal", "cannot render the document");
    else if (res) {
        overlay_doc(fn, ver);
        registry_decorate(ctx->reg, fn);
        httpd_resp_json(resp, 200, fn);
        fn = NULL;
    }
    if (db)
        ver_put_db(ctx);
    PQclear(res);
    cJSON_Delete(ver);
    cJSON_Delete(fn);
}

static httpd_result h_get_fn(httpd_req *req, httpd_resp *resp, void *ud)
{
    ver_ctx *ctx = ud;
    const char *q = httpd_query(req, "qualifier");
    char id[ML_UUID_LEN];
    int64_t n = 0;
    qual_rc rc;

    if (!q)
        return ctx->get_fn(req, resp, ctx->get_ud);
    if (httpd_query(req, "wait")) {
        httpd_resp_error(resp, 400, "invalid_query", "wait and qualifier cannot be combined");
        return HTTPD_DONE;
    }
    if (fn_id_of(ctx, req, resp, id) != ML_OK)
        return HTTPD_DONE;
    rc = qualifier_main_version(ctx, id, q, &n);
    if (rc == QR_ERR) {
        httpd_resp_header(resp, "Retry-After", "1");
        httpd_resp_error(resp, 503, "service_unavailable", "cannot resolve the qualifier now");
        return HTTPD_DONE;
    }
    if (rc != QR_OK) {
        httpd_resp_error(resp, 404, "qualifier_not_found", "no version or alias '%s'", q);
        return HTTPD_DONE;
    }
    if (ctx->get_fn(req, resp, ctx->get_ud) == HTTPD_DONE && resp->status == 200)
        qualified_doc(ctx, req, resp, id, n);
    return HTTPD_DONE;
}

void versions_wrap_get(ver_ctx *ctx, httpd_route *table, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (strcmp(table[i].method, "GET") == 0 && strcmp(table[i].pattern, "/functions/{fn}") == 0) {
            ctx->get_fn = table[i].fn;
            ctx->get_ud = table[i].ud;
            table[i].fn = h_get_fn;
            table[i].ud = ctx;
        }
    }
}

size_t versions_routes(ver_ctx *ctx, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/functions/{fn}/versions", h_publish, ctx, 0, true },
        { "GET", "/functions/{fn}/versions", h_list, ctx, 0, true },
        { "GET", "/functions/{fn}/versions/{v}", h_get_version, ctx, 0, true },
        { "DELETE", "/functions/{fn}/versions/{v}", h_delete_version, ctx, 0, true },
        { "PUT", "/functions/{fn}/aliases/{alias}", h_put_alias, ctx, 0, true },
        { "GET", "/functions/{fn}/aliases/{alias}", h_get_alias, ctx, 0, true },
        { "GET", "/functions/{fn}/aliases", h_list_aliases, ctx, 0, true },
        { "DELETE", "/functions/{fn}/aliases/{alias}", h_delete_alias, ctx, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
