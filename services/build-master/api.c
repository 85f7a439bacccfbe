/* api.c — POST /functions, PUT /functions/{fn}/code, GET /builds/{id},
 * GET /functions/{fn}/builds. */
#include "api.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accept.h"
#include "crypto.h"
#include "httpc.h"
#include "intauth.h"
#include "log.h"
#include "multipart.h"
#include "pgpool.h"
#include "secretbox.h"
#include "ssrf.h"
#include "tenant.h"

/* The request's fields as JSON plus the package, whatever the content type. */
typedef struct upload {
    cJSON *fields;
    const char *zip;
    size_t zip_len;
    unsigned char *decoded; /* owned: a code_base64 package */
    bool form;              /* multipart: fields are strings */
} upload;

static void upload_free(upload *u)
{
    cJSON_Delete(u->fields);
    free(u->decoded);
}

static int parse_multipart(httpd_req *req, const char *ctype, upload *u, httpd_resp *resp)
{
    char boundary[80], err[128] = "multipart/form-data needs a boundary parameter";
    multipart_form form;
    size_t len;
    const char *body = httpd_body(req, &len);

    if (multipart_boundary(ctype, boundary, sizeof(boundary)) != ML_OK ||
        multipart_parse(body, len, boundary, &form, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_body", "%s", err);
        return ML_ERR;
    }
    u->fields = cJSON_CreateObject();
    u->form = true;
    for (size_t i = 0; i < form.nparts; i++) {
        const multipart_part *p = &form.parts[i];
        if (strcmp(p->name, "code") == 0) {
            u->zip = p->data;
            u->zip_len = p->len;
        } else if (multipart_field_text(&form, i, err, sizeof(err)) != ML_OK) {
            httpd_resp_error(resp, 400, "invalid_field", "%s", err);
            return ML_ERR;
        } else {
            char *v = strndup(p->data, p->len);
            cJSON_AddItemToObject(u->fields, p->name, cJSON_CreateString(v ? v : ""));
            free(v);
        }
    }
    return ML_OK;
}

static int parse_json(httpd_req *req, upload *u, httpd_resp *resp)
{
    cJSON *code;
    size_t n, cap;

    u->fields = httpd_body_json(req, resp);
    if (!u->fields)
        return ML_ERR;
    if (!cJSON_IsObject(u->fields)) {
        httpd_resp_error(resp, 400, "invalid_body", "the request body must be a JSON object");
        return ML_ERR;
    }
    code = cJSON_GetObjectItemCaseSensitive(u->fields, "code_base64");
    if (!code)
        return ML_OK;
    if (!cJSON_IsString(code)) {
        httpd_resp_error(resp, 400, "invalid_field", "code_base64 must be a base64 string");
        return ML_ERR;
    }
    n = strlen(code->valuestring);
    cap = n / 4 * 3 + 3;
    if (cap > BM_MAX_ZIP + 3) {
        httpd_resp_error(resp, 413, "payload_too_large", "the ZIP exceeds %d MiB", BM_MAX_ZIP >> 20);
        return ML_ERR;
    }
    u->decoded = malloc(cap ? cap : 1);
    if (!u->decoded || crypto_base64_decode(code->valuestring, n, u->decoded, cap, &u->zip_len) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_field", "code_base64 is not valid base64");
        return ML_ERR;
    }
    u->zip = (const char *)u->decoded;
    cJSON_DeleteItemFromObjectCaseSensitive(u->fields, "code_base64"); /* free the text early */
    return ML_OK;
}

/* Parses the body and checks the package; ML_ERR with resp written. */
static int parse_upload(httpd_req *req, upload *u, httpd_resp *resp)
{
    const char *ctype = httpd_header(req, "Content-Type");
    int rc;

    memset(u, 0, sizeof(*u));
    if (ctype && strncasecmp(ctype, "multipart/form-data", 19) == 0)
        rc = parse_multipart(req, ctype, u, resp);
    else if (ctype && strncasecmp(ctype, "application/json", 16) == 0)
        rc = parse_json(req, u, resp);
    else {
        httpd_resp_error(resp, 415, "unsupported_media_type",
                         "send multipart/form-data (file field 'code') or application/json (code_base64)");
        return ML_ERR;
    }
    if (rc != ML_OK)
        return ML_ERR;
    if (!u->zip || u->zip_len == 0) {
        httpd_resp_error(resp, 400, "missing_field", "code is required: a ZIP of the function");
        return ML_ERR;
    }
    if (u->zip_len > BM_MAX_ZIP) {
        httpd_resp_error(resp, 413, "payload_too_large", "the ZIP exceeds %d MiB", BM_MAX_ZIP >> 20);
        return ML_ERR;
    }
    /* local file header, or the end-of-central-directory record of an empty archive */
    if (u->zip_len < 4 || memcmp(u->zip, "PK", 2) != 0 ||
        !((u->zip[2] == 3 && u->zip[3] == 4) || (u->zip[2] == 5 && u->zip[3] == 6))) {
        httpd_resp_error(resp, 400, "invalid_zip", "code is not a ZIP archive");
        return ML_ERR;
    }
    return ML_OK;
}

static deps *need_deps(bm_app *app, httpd_resp *resp)
{
    deps *d = bm_deps(app);

    if (!d) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "cannot reach the build services");
    }
    return d;
}

/* A user's URL against the SSRF policy, at create/update as at delivery (docs/secrets.md):
 * ML_ERR with 400 invalid_url written when refused. A name that does not resolve now is
 * accepted (it may later; delivery checks again and refuses it then). */
static int url_allowed(const bm_app *app, const char *field, const char *url, httpd_resp *resp)
{
    char why[256];
    ssrf_result r;

    if (!url || !url[0])
        return ML_OK;
    r = ssrf_check_url(url, &app->ssrf, NULL, why, sizeof(why));
    if (r == SSRF_OK || r == SSRF_UNRESOLVED)
        return ML_OK;
    httpd_resp_error(resp, 400, "invalid_url", "%s: %s", field, why);
    return ML_ERR;
}

/* env values are stored sealed (docs/secrets.md); ML_ERR with 500 written. */
static int seal_env(cJSON *config, httpd_resp *resp)
{
    char err[256];

    if (secretbox_env_seal(secretbox_global(), cJSON_GetObjectItemCaseSensitive(config, "env"), NULL,
                           err, sizeof(err)) == ML_OK)
        return ML_OK;
    ml_log_error("build-master: %s", err);
    httpd_resp_error(resp, 500, "internal", "cannot encrypt env");
    return ML_ERR;
}

/* The namespace the request acts in (docs/tenants.md: the gateway's TENANT_HEADER, absent =
 * default); ML_ERR with 400 invalid_namespace written. Every route acts only inside it. */
static int req_ns(httpd_req *req, char ns[TENANT_MAX + 1], httpd_resp *resp)
{
    if (tenant_from_header(httpd_header(req, TENANT_HEADER), ns) == ML_OK)
        return ML_OK;
    httpd_resp_error(resp, 400, "invalid_namespace", "%s must be a namespace name: 1-63 of [a-z0-9-],"
                     " not starting or ending with '-'", TENANT_HEADER);
    return ML_ERR;
}

static httpd_result h_create(httpd_req *req, httpd_resp *resp, void *ud)
{
    bm_app *app = ud;
    upload u = { 0 };
    fn_spec spec = { 0 };
    const char *field = NULL;
    char err[256], ns[TENANT_MAX + 1];
    int64_t quota;
    deps *d;

    if (req_ns(req, ns, resp) != ML_OK)
        goto out;
    if (validate_quota_functions(httpd_header(req, TENANT_QUOTA_FUNCTIONS_HEADER), &quota) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_header", "%s must be a whole number 0..%lld",
                         TENANT_QUOTA_FUNCTIONS_HEADER, VALIDATE_QUOTA_MAX);
        goto out;
    }
    if (parse_upload(req, &u, resp) != ML_OK)
        goto out;
    if (validate_function(u.fields, u.form, &spec, &field, err, sizeof(err)) != ML_OK) {
        httpd_resp_error(resp, 400, "invalid_field", "%s", err);
        goto out;
    }
    if (bmr_check(&app->runtimes, app->executor_url, spec.runtime, resp) != ML_OK ||
        url_allowed(app, "webhook_url", spec.webhook_url, resp) != ML_OK || seal_env(spec.config, resp) != ML_OK)
        goto out;
    if ((d = need_deps(app, resp)) != NULL)
        accept_build(app, d, &(accept_req){ .ns = ns, .max_functions = quota, .spec = &spec,
                                            .zip = u.zip, .zip_len = u.zip_len }, resp);
out:
    validate_free(&spec);
    upload_free(&u);
    return HTTPD_DONE;
}

/* Borrows this thread's database connection for one group of queries (deps_db_acquire);
 * ML_ERR with 503 written when none is free. Pair with deps_db_release. */
static int db_acquire(deps *d, httpd_resp *resp)
{
    pgpool_status st = deps_db_acquire(d);

    if (st == PGPOOL_OK)
        return ML_OK;
    httpd_resp_header(resp, "Retry-After", "5");
    httpd_resp_error(resp, 503, "service_unavailable", "build database: no free connection (%s)",
                     pgpool_status_str(st));
    return ML_ERR;
}

/* Resolves {fn} (id or name) to a live function's id in namespace ns; ML_ERR with 404/503
 * written. Another namespace's function is the same 404 as a missing one (docs/tenants.md). */
static int resolve_function(deps *d, const char *ns, const char *fn, char id[ML_UUID_LEN],
                            httpd_resp *resp)
{
    const char *params[] = { fn, ns };
    PGresult *r;
    int rc = ML_ERR;

    if (db_acquire(d, resp) != ML_OK)
        return ML_ERR;
    r = pg_query(d->db, "bm_resolve",
                           "SELECT id FROM build_functions WHERE deleted_at IS NULL AND namespace = $2"
                           " AND (name = $1 OR (length($1) = 36 AND id::text = lower($1)))",
                           2, params);
    if (!r) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    } else if (PQntuples(r) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no function '%s'", fn);
    } else {
        rc = pg_get_text_copy(r, 0, 0, id, ML_UUID_LEN);
    }
    PQclear(r);
    deps_db_release(d);
    return rc;
}

/* Before a code update: the function's runtime and handler as the executor has them (a
 * PATCH there changes them, docs/versions.md) become the build side's, which the build is
 * made and checked with. ML_ERR: 503 written (database); an executor that cannot say is no
 * error (the build side's values stay). */
static int follow_executor(bm_app *app, deps *d, const char *ns, const char *id, httpd_resp *resp)
{
    char rt[FNSPEC_RUNTIME_MAX + 1], hd[FNSPEC_HANDLER_MAX + 1];
    const char *params[] = { id, rt, hd };
    int rc;

    if (bmr_current(app->executor_url, ns, id, rt, hd) != ML_OK)
        return ML_OK;
    if (db_acquire(d, resp) != ML_OK)
        return ML_ERR;
    rc = pg_exec(d->db, "bm_follow_executor", "UPDATE build_functions SET runtime = $2, handler = $3"
                 " WHERE id = $1 AND (runtime, handler) IS DISTINCT FROM ($2, $3)", 3, params, NULL);
    if (rc != ML_OK) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    }
    deps_db_release(d);
    return rc;
}

static httpd_result h_update_code(httpd_req *req, httpd_resp *resp, void *ud)
{
    bm_app *app = ud;
    upload u = { 0 };
    char id[ML_UUID_LEN], err[256], ns[TENANT_MAX + 1];
    const cJSON *url;
    deps *d;

    if (req_ns(req, ns, resp) != ML_OK || parse_upload(req, &u, resp) != ML_OK)
        goto out;
    url = cJSON_GetObjectItemCaseSensitive(u.fields, "webhook_url");
    if (url && (!cJSON_IsString(url) || validate_webhook_url(url->valuestring, err, sizeof(err)) != ML_OK)) {
        httpd_resp_error(resp, 400, "invalid_field", "%s", cJSON_IsString(url) ? err : "webhook_url must be a string");
        goto out;
    }
    if (url && url_allowed(app, "webhook_url", url->valuestring, resp) != ML_OK)
        goto out;
    if ((d = need_deps(app, resp)) == NULL || resolve_function(d, ns, httpd_param(req, "fn"), id, resp) != ML_OK ||
        follow_executor(app, d, ns, id, resp) != ML_OK)
        goto out;
    accept_build(app, d,
                 &(accept_req){ .ns = ns, .max_functions = -1, .function_id = id,
                                .webhook_url = url && url->valuestring[0] ? url->valuestring : NULL,
                                .zip = u.zip, .zip_len = u.zip_len },
                 resp);
out:
    upload_free(&u);
    return HTTPD_DONE;
}

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
/* A build as the contract shows it, built by Postgres. */
#define BUILD_JSON                                                                             \
    "json_build_object('build_id', b.id, 'function_id', b.function_id, 'status', b.status,"    \
    " 'error', b.error, 'created_at', " ISO("b.created_at") ", 'started_at', "                 \
    ISO("b.started_at") ", 'finished_at', " ISO("b.finished_at") ","                           \
    " 'artifact', CASE WHEN b.status = 'completed' THEN json_build_object('sha256',"           \
    " b.artifact_sha256, 'size_bytes', b.artifact_size, 'files', b.artifact_files) END)"

/* Postgres' json text is padded ("k" : v); re-serialise it compactly, keeping key order. */
static void reply_json_text(httpd_resp *resp, const char *text)
{
    cJSON *o = cJSON_Parse(text);

    if (!o)
        httpd_resp_error(resp, 500, "internal", "malformed JSON from the database");
    else
        httpd_resp_json(resp, 200, o);
}

static httpd_result h_get_build(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id = httpd_param(req, "build_id");
    char ns[TENANT_MAX + 1];
    const char *params[] = { id, ns };
    PGresult *r;
    deps *d;

    if (req_ns(req, ns, resp) != ML_OK)
        return HTTPD_DONE;
    if (ml_uuid_valid(id) != ML_OK) {
        httpd_resp_error(resp, 404, "not_found", "no build '%s'", id);
        return HTTPD_DONE;
    }
    if ((d = need_deps(ud, resp)) == NULL || db_acquire(d, resp) != ML_OK)
        return HTTPD_DONE;
    /* a build of another namespace's function is the same 404 as a missing one */
    r = pg_query(d->db, "bm_get_build", "SELECT " BUILD_JSON "::text FROM builds b"
                 " JOIN build_functions f ON f.id = b.function_id WHERE b.id = $1 AND f.namespace = $2",
                 2, params);
    if (!r)
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    else if (PQntuples(r) == 0)
        httpd_resp_error(resp, 404, "not_found", "no build '%s'", id);
    else
        reply_json_text(resp, pg_get_text(r, 0, 0));
    PQclear(r);
    deps_db_release(d);
    return HTTPD_DONE;
}

static httpd_result h_list_builds(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *limit_s = httpd_query(req, "limit"), *cursor = httpd_query(req, "cursor");
    char id[ML_UUID_LEN], limit[8], ns[TENANT_MAX + 1];
    int64_t n = 20;
    PGresult *r;
    deps *d;

    if (req_ns(req, ns, resp) != ML_OK)
        return HTTPD_DONE;
    if ((limit_s && ml_parse_int64(limit_s, 1, 100, &n) != ML_OK) ||
        (cursor && ml_uuid_valid(cursor) != ML_OK) ||
        ml_snprintf(limit, sizeof(limit), "%lld", (long long)n) != ML_OK) { /* 1..100 fits */
        httpd_resp_error(resp, 400, "invalid_query", "limit must be 1..100 and cursor a value from next_cursor");
        return HTTPD_DONE;
    }
    if ((d = need_deps(ud, resp)) == NULL || db_acquire(d, resp) != ML_OK)
        return HTTPD_DONE;
    if (resolve_function(d, ns, httpd_param(req, "fn"), id, resp) != ML_OK) /* nested: one borrow */
        goto out;
    /* keyset pagination: newest first, the cursor is the last build id of the previous page */
    r = pg_query(d->db, "bm_list_builds",
                 "WITH page AS (SELECT b.* FROM builds b WHERE b.function_id = $1 AND ($2::uuid IS NULL"
                 " OR (b.created_at, b.id) < (SELECT created_at, id FROM builds WHERE id = $2::uuid))"
                 " ORDER BY b.created_at DESC, b.id DESC LIMIT $3::int)"
                 " SELECT json_build_object('builds', coalesce(json_agg(" BUILD_JSON
                 " ORDER BY b.created_at DESC, b.id DESC), '[]'), 'next_cursor', CASE WHEN count(*) = $3::int"
                 " THEN (array_agg(b.id ORDER BY b.created_at, b.id))[1] END)::text FROM page b",
                 3, (const char *[]){ id, cursor, limit });
    if (!r)
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    else
        reply_json_text(resp, pg_get_text(r, 0, 0));
    PQclear(r);
out:
    deps_db_release(d);
    return HTTPD_DONE;
}

/* Deletes the function on the lambda side (functions, versions, schedules, audit) first:
 * a failure there leaves both sides as they were. Only 204 counts: the executor answers it
 * by id also when it never had the function, after writing the tombstone that keeps a build
 * still in flight from bringing it back. A 404 would mean no tombstone, so it is an error. */
static int delete_on_executor(bm_app *app, const char *ns, const char *id, httpd_resp *resp)
{
    char url[512], nsh[sizeof(TENANT_HEADER) + TENANT_MAX + 4];
    httpc *h = httpc_new();
    /* intauth.h; the function's namespace, in which the executor acts (tenant.h) */
    /* the namespace first: the token line is NULL when internal auth is off, ending the list */
    const char *headers[] = { nsh, ml_intauth_header_line(), NULL };
    httpc_request req = { .method = "DELETE", .url = url, .headers = headers, .timeout_ms = 310000 };
    httpc_response res = { 0 };
    int rc = ML_ERR;

    if (ml_snprintf(url, sizeof(url), "%s/functions/%s", app->executor_url, id) != ML_OK ||
        ml_snprintf(nsh, sizeof(nsh), "%s: %s", TENANT_HEADER, ns) != ML_OK) {
        httpd_resp_error(resp, 500, "internal", "the lambda-executor URL is too long");
    } else if (!h || httpc_do(h, &req, &res) != ML_OK) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "lambda-executor: %s",
                         h ? httpc_error(h) : "out of memory");
    } else if (res.status != 204) {
        httpd_resp_error(resp, 502, "upstream_error", "lambda-executor answered %ld to the delete", res.status);
    } else {
        rc = ML_OK;
    }
    httpc_response_free(&res);
    httpc_free(h);
    return rc;
}

/* One autocommitted statement on the function's row; ML_ERR with 503 written. */
static int delete_step(deps *d, const char *name, const char *sql, const char *id, httpd_resp *resp)
{
    int rc;

    if (db_acquire(d, resp) != ML_OK)
        return ML_ERR;
    rc = pg_exec(d->db, name, sql, 1, (const char *[]){ id }, NULL);
    if (rc != ML_OK) {
        httpd_resp_header(resp, "Retry-After", "5");
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    }
    deps_db_release(d);
    return rc;
}

/* DELETE /functions/{fn}: the whole function, both sides. The build side only forgets the
 * name (soft delete), so it can be created again; its builds stay as history. The row is
 * marked deleting first (a concurrent PUT of new code then gets 409 function_deleting; a PUT
 * already committed has its build's events refused by the executor's tombstone), and the
 * function's undelivered events to the executor are cancelled once it is gone (they would
 * only be answered 410). */
static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    char id[ML_UUID_LEN], ns[TENANT_MAX + 1];
    deps *d;

    if (req_ns(req, ns, resp) != ML_OK || (d = need_deps(ud, resp)) == NULL ||
        resolve_function(d, ns, httpd_param(req, "fn"), id, resp) != ML_OK ||
        delete_step(d, "bm_delete_mark", "UPDATE build_functions SET deleting_at = now()"
                    " WHERE id = $1 AND deleted_at IS NULL", id, resp) != ML_OK)
        return HTTPD_DONE;
    /* the database is not held across the executor call (up to 310 s) */
    if (delete_on_executor(ud, ns, id, resp) != ML_OK) {
        /* both sides stay as they were: lift the mark (best effort; a stale mark expires) */
        if (deps_db_acquire(d) == PGPOOL_OK) {
            pg_exec(d->db, "bm_delete_unmark", "UPDATE build_functions SET deleting_at = NULL"
                    " WHERE id = $1", 1, (const char *[]){ id }, NULL);
            deps_db_release(d);
        }
        return HTTPD_DONE;
    }
    if (delete_step(d, "bm_delete", "WITH c AS (UPDATE webhook_deliveries SET status = 'failed',"
                    " last_error = 'function deleted' WHERE function_id = $1 AND target = 'lambda'"
                    " AND status = 'pending' AND lease_owner IS NULL)"
                    " UPDATE build_functions SET deleted_at = now(), deleting_at = NULL WHERE id = $1",
                    id, resp) == ML_OK)
        resp->status = 204;
    return HTTPD_DONE;
}

#define PACKAGE_MAX (BM_MAX_ZIP + 1024)

/* The S3 key of the function's code: the newest completed build's upload (what $LATEST
 * runs), else the newest build's. ML_ERR with 404/503 written. */
static int package_key(deps *d, const char *id, char *key, size_t keylen, httpd_resp *resp)
{
    const char *params[] = { id };
    PGresult *r = pg_query(d->db, "bm_package_key",
                           "SELECT package_key FROM builds WHERE function_id = $1"
                           " ORDER BY (status = 'completed') DESC, created_at DESC LIMIT 1",
                           1, params);
    int rc = ML_ERR;

    if (!r)
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    else if (PQntuples(r) == 0)
        httpd_resp_error(resp, 404, "not_found", "the function has no code");
    else
        rc = pg_get_text_copy(r, 0, 0, key, keylen);
    PQclear(r);
    return rc;
}

/* ?artifact=<hex> or ?package=<hex>: the newest completed build with that artifact (or
 * uploaded package) hash, as {"package_sha256","package_size","artifact_sha256"} — the AWS
 * API shows the package's hash as CodeSha256, the executor knows the artifact's. */
static void package_info(deps *d, httpd_req *req, const char *id, httpd_resp *resp)
{
    const char *art = httpd_query(req, "artifact"), *pkg = httpd_query(req, "package");
    const char *params[] = { id, art, pkg };
    PGresult *r = pg_query(d->db, "bm_package_info",
                           "SELECT json_build_object('package_sha256', package_sha256, 'package_size',"
                           " package_size, 'artifact_sha256', artifact_sha256)::text FROM builds"
                           " WHERE function_id = $1 AND status = 'completed' AND (artifact_sha256 = $2"
                           " OR package_sha256 = $3) ORDER BY created_at DESC LIMIT 1",
                           3, params);

    if (!r)
        httpd_resp_error(resp, 503, "service_unavailable", "build database: %s", pg_error(d->db));
    else if (PQntuples(r) == 0)
        httpd_resp_error(resp, 404, "not_found", "no completed build with that hash");
    else
        reply_json_text(resp, pg_get_text(r, 0, 0));
    PQclear(r);
}

/* GET /functions/{fn}/package — the function's uploaded ZIP (internal callers only, like
 * every build-master route; the gateway serves it as the AWS API's Code.Location behind an
 * expiring signed URL, docs/aws-compat.md); with ?artifact= or ?package=, package_info. */
static httpd_result h_package(httpd_req *req, httpd_resp *resp, void *ud)
{
    char id[ML_UUID_LEN], ns[TENANT_MAX + 1], key[512];
    bool info = httpd_query(req, "artifact") || httpd_query(req, "package");
    deps *d;
    int rc = ML_OK;

    if (req_ns(req, ns, resp) != ML_OK || (d = need_deps(ud, resp)) == NULL ||
        resolve_function(d, ns, httpd_param(req, "fn"), id, resp) != ML_OK ||
        db_acquire(d, resp) != ML_OK)
        return HTTPD_DONE;
    if (info)
        package_info(d, req, id, resp);
    else
        rc = package_key(d, id, key, sizeof(key), resp);
    deps_db_release(d);
    if (info || rc != ML_OK)
        return HTTPD_DONE;
    if (s3_get(d->s3, key, &resp->body, PACKAGE_MAX) != ML_OK) {
        ml_buf_reset(&resp->body);
        httpd_resp_error(resp, 503, "service_unavailable", "cannot read the package: %s", s3_error(d->s3));
        return HTTPD_DONE;
    }
    resp->status = 200;
    resp->content_type = "application/zip";
    return HTTPD_DONE;
}

size_t api_routes(bm_app *app, httpd_route *routes, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/functions", h_create, app, BM_MAX_BODY, true },
        { "PUT", "/functions/{fn}/code", h_update_code, app, BM_MAX_BODY, true },
        { "GET", "/builds/{build_id}", h_get_build, app, 0, true },
        { "GET", "/functions/{fn}/builds", h_list_builds, app, 0, true },
        { "DELETE", "/functions/{fn}", h_delete, app, 0, true },
        { "GET", "/functions/{fn}/package", h_package, app, 0, true },
    };
    return httpd_routes_copy(routes, max, all, ML_ARRAY_LEN(all));
}
