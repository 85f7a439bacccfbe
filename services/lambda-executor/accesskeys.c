/* accesskeys.c — per-namespace SigV4 access keys (see accesskeys.h). Secrets live in this
 * process only while a request needs them and are wiped after; they are never logged. */
#include "accesskeys.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "fnspec.h"
#include "jsoncheck.h"
#include "log.h"
#include "pgpool.h"
#include "secretbox.h"

#define ISO(col) "to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
#define KEY_COLS "access_key_id, namespace, scopes, description, status, " ISO("created_at") ", " \
                 ISO("updated_at") ", " ISO("rotated_at")
#define CTX_MAX 64 /* "access_key:" + id */

static const char base32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
static const char base62[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/* Known scopes in canonical order; admin is deliberately absent (accesskeys.h). */
static const char *const key_scopes[] = { "functions:read", "functions:write", "functions:invoke",
                                          "functions:secrets" };

int akey_new_id(char out[AKEY_ID_LEN + 1])
{
    unsigned char raw[10]; /* 80 bits = 16 base32 characters */
    size_t o = sizeof(AKEY_PREFIX) - 1;

    if (crypto_random(raw, sizeof(raw)) != ML_OK)
        return ML_ERR;
    memcpy(out, AKEY_PREFIX, o);
    for (size_t bit = 0; bit < sizeof(raw) * 8; bit += 5) {
        size_t byte = bit / 8, shift = bit % 8;
        unsigned v = (unsigned)raw[byte] << 8 | (byte + 1 < sizeof(raw) ? raw[byte + 1] : 0);
        out[o++] = base32[(v >> (11 - shift)) & 31];
    }
    out[o] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return ML_OK;
}

int akey_new_secret(char out[AKEY_SECRET_LEN + 1])
{
    unsigned char raw[64];
    size_t n = 0;

    /* rejection sampling: bytes >= 248 (4 * 62) would bias the first characters */
    while (n < AKEY_SECRET_LEN) {
        if (crypto_random(raw, sizeof(raw)) != ML_OK)
            return ML_ERR;
        for (size_t i = 0; i < sizeof(raw) && n < AKEY_SECRET_LEN; i++)
            if (raw[i] < 248)
                out[n++] = base62[raw[i] % 62];
    }
    out[n] = '\0';
    OPENSSL_cleanse(raw, sizeof(raw));
    return ML_OK;
}

int akey_id_valid(const char *id)
{
    size_t p = sizeof(AKEY_PREFIX) - 1;

    if (!id || strlen(id) != AKEY_ID_LEN || strncmp(id, AKEY_PREFIX, p) != 0)
        return ML_ERR;
    for (; id[p]; p++)
        if (!strchr(base32, id[p]))
            return ML_ERR;
    return ML_OK;
}

/* Marks one word of a scope list in seen; ML_ERR with e when it is not a key scope. */
static int scope_word(const char *w, size_t n, bool seen[ML_ARRAY_LEN(key_scopes)], tenancy_err *e)
{
    for (size_t i = 0; i < ML_ARRAY_LEN(key_scopes); i++)
        if (strlen(key_scopes[i]) == n && memcmp(key_scopes[i], w, n) == 0) {
            seen[i] = true;
            return ML_OK;
        }
    if (n == 5 && memcmp(w, "admin", 5) == 0)
        return tenancy_fail(e, 400, "invalid_field",
                            "access keys cannot carry the admin scope (mint an admin JWT instead)");
    return tenancy_fail(e, 400, "invalid_field",
                        "unknown scope '%.*s' (known: functions:read functions:write functions:invoke "
                        "functions:secrets)", (int)(n > 40 ? 40 : n), w);
}

int akey_scopes_parse(const char *in, char out[AKEY_SCOPES_MAX], tenancy_err *e)
{
    bool seen[ML_ARRAY_LEN(key_scopes)] = { false };
    size_t o = 0;

    for (const char *p = in; *p;) {
        size_t n = strcspn(p, " ");
        if (n && scope_word(p, n, seen, e) != ML_OK)
            return ML_ERR;
        p += n + (p[n] == ' ');
    }
    out[0] = '\0';
    for (size_t i = 0; i < ML_ARRAY_LEN(key_scopes); i++)
        if (seen[i]) {
            ml_snprintf_trunc(out + o, AKEY_SCOPES_MAX - o, "%s%s", o ? " " : "", key_scopes[i]);
            o = strlen(out);
        }
    if (!o)
        return tenancy_fail(e, 400, "invalid_field", "scopes must name at least one scope");
    return ML_OK;
}

/* The optional description: a string of at most AKEY_DESC_MAX bytes of printable text. */
static int desc_parse(const cJSON *v, char out[AKEY_DESC_MAX + 1], tenancy_err *e)
{
    out[0] = '\0';
    if (!v)
        return ML_OK;
    if (!cJSON_IsString(v) || strlen(v->valuestring) > AKEY_DESC_MAX ||
        jsoncheck_text(v->valuestring, strlen(v->valuestring), NULL) != ML_OK)
        return tenancy_fail(e, 400, "invalid_field", "description must be text of at most %d bytes",
                            AKEY_DESC_MAX);
    ml_strlcpy(out, v->valuestring, AKEY_DESC_MAX + 1);
    return ML_OK;
}

int akey_create_parse(const cJSON *body, akey_create *out, tenancy_err *e)
{
    static const char *const allowed[] = { "namespace", "scopes", "description", NULL };
    const cJSON *ns = cJSON_GetObjectItemCaseSensitive(body, "namespace");
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(body, "scopes");

    if (tenancy_only_members(body, allowed, e) != ML_OK)
        return ML_ERR;
    if (!ns || !sc)
        return tenancy_fail(e, 400, "missing_field", "%s is required", ns ? "scopes" : "namespace");
    if (!cJSON_IsString(ns) || fnspec_ns_valid(ns->valuestring) != ML_OK)
        return tenancy_fail(e, 400, "invalid_namespace",
                            "namespace must be 1-63 of [a-z0-9-], not starting or ending with '-'");
    ml_strlcpy(out->ns, ns->valuestring, sizeof(out->ns));
    if (!cJSON_IsString(sc) || strlen(sc->valuestring) > 256)
        return tenancy_fail(e, 400, "invalid_field", "scopes must be a space-separated string");
    if (akey_scopes_parse(sc->valuestring, out->scopes, e) != ML_OK)
        return ML_ERR;
    return desc_parse(cJSON_GetObjectItemCaseSensitive(body, "description"), out->desc, e);
}

/* A key from its row (KEY_COLS) as JSON, without any secret; the caller owns the result. */
static cJSON *key_row_json(const PGresult *r, int row)
{
    static const char *const names[] = { "access_key_id", "namespace", "scopes", "description",
                                          "status", "created_at", "updated_at", "rotated_at" };
    cJSON *o = cJSON_CreateObject();

    for (int i = 0; i < (int)ML_ARRAY_LEN(names); i++)
        cJSON_AddItemToObject(o, names[i], pg_is_null(r, row, i) ? cJSON_CreateNull()
                                                                  : cJSON_CreateString(PQgetvalue(r, row, i)));
    return o;
}

/* The secretbox context that binds a sealed secret to its key id. */
static void seal_ctx(const char *id, char ctx[CTX_MAX])
{
    ml_snprintf_trunc(ctx, CTX_MAX, "access_key:%s", id);
}

/* A new secret for id: the plaintext into secret, its sealed form into *sealed (caller
 * frees). ML_ERR (logged) when the CSPRNG or the seal fails. */
static int new_sealed_secret(const char *id, char secret[AKEY_SECRET_LEN + 1], char **sealed)
{
    char ctx[CTX_MAX];

    seal_ctx(id, ctx);
    if (akey_new_secret(secret) != ML_OK ||
        secretbox_seal(secretbox_global(), ctx, secret, AKEY_SECRET_LEN, sealed) != ML_OK) {
        ml_log_error("access key %s: cannot make or seal a secret", id);
        return ML_ERR;
    }
    return ML_OK;
}

static void send_err(httpd_resp *resp, const tenancy_err *e)
{
    httpd_resp_error(resp, e->status, e->code, "%s", e->msg);
}

/* Answers a statement's outcome on one key: 503 when it failed, 404 when no row, else
 * status with the key (plus secret when not NULL). ML_OK only in the last case. */
static int answer_key(deps *d, PGresult *r, const char *id, int status, const char *secret,
                      httpd_resp *resp)
{
    cJSON *o;

    if (!r) {
        tenancy_db_error(d, resp);
        return ML_ERR;
    }
    if (PQntuples(r) == 0) {
        httpd_resp_error(resp, 404, "not_found", "no access key '%.32s'", id);
        return ML_ERR;
    }
    o = key_row_json(r, 0);
    if (secret)
        cJSON_AddStringToObject(o, "secret_access_key", secret);
    httpd_resp_json(resp, status, o);
    return ML_OK;
}

/* Runs the INSERT of a new key; the result (NULL on error). */
static PGresult *insert_key(deps *d, const akey_create *c, const char *id, const char *sealed)
{
    return pg_query(d->db, "ex_akey_create",
                    "INSERT INTO access_keys (access_key_id, namespace, scopes, description, secret_sealed)"
                    " VALUES ($1, $2, $3, $4, $5) RETURNING " KEY_COLS,
                    5, (const char *[]){ id, c->ns, c->scopes, c->desc, sealed });
}

static httpd_result h_create(httpd_req *req, httpd_resp *resp, void *ud)
{
    tenancy *t = ud;
    cJSON *body = httpd_body_json(req, resp);
    char id[AKEY_ID_LEN + 1], secret[AKEY_SECRET_LEN + 1] = "", *sealed = NULL;
    akey_create c;
    tenancy_err e;
    PGresult *r;
    deps *d;

    if (!body)
        return HTTPD_DONE;
    if (akey_create_parse(body, &c, &e) != ML_OK) {
        send_err(resp, &e);
        goto out;
    }
    if (akey_new_id(id) != ML_OK || new_sealed_secret(id, secret, &sealed) != ML_OK) {
        httpd_resp_error(resp, 500, "internal_error", "cannot make a key");
        goto out;
    }
    if (!(d = tenancy_db(t, resp)))
        goto out;
    r = insert_key(d, &c, id, sealed);
    if (answer_key(d, r, id, 201, secret, resp) == ML_OK) {
        tenancy_count(t, "key_create");
        ml_log_info("access key %s created (namespace %s, scopes %s)", id, c.ns, c.scopes);
    }
    deps_db_release(d);
    PQclear(r);
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    free(sealed);
    cJSON_Delete(body);
    return HTTPD_DONE;
}

/* ?namespace= (optional), ?limit=, ?cursor= of GET /admin/keys. ML_ERR with e. */
static int list_params(httpd_req *req, const char **ns, int64_t *n, char limit[24], const char **cursor,
                       tenancy_err *e)
{
    *ns = httpd_query(req, "namespace");
    *cursor = httpd_query(req, "cursor");
    if (*ns && fnspec_ns_valid(*ns) != ML_OK)
        return tenancy_fail(e, 400, "invalid_namespace", "namespace is not a valid namespace name");
    if (*cursor && akey_id_valid(*cursor) != ML_OK)
        return tenancy_fail(e, 400, "invalid_query", "cursor must be the next_cursor of a previous page");
    if (tenancy_limit_parse(httpd_query(req, "limit"), n, e) != ML_OK)
        return ML_ERR;
    ml_snprintf_trunc(limit, 24, "%lld", (long long)*n);
    if (!*cursor)
        *cursor = "";
    return ML_OK;
}

static httpd_result h_list(httpd_req *req, httpd_resp *resp, void *ud)
{
    char limit[24];
    const char *ns, *cursor;
    int64_t max;
    tenancy_err e;
    PGresult *r;
    deps *d;

    if (list_params(req, &ns, &max, limit, &cursor, &e) != ML_OK) {
        send_err(resp, &e);
        return HTTPD_DONE;
    }
    if (!(d = tenancy_db(ud, resp)))
        return HTTPD_DONE;
    r = pg_query(d->db, "ex_akey_list",
                 "SELECT " KEY_COLS " FROM access_keys WHERE ($1::text IS NULL OR namespace = $1)"
                 " AND access_key_id > $2 ORDER BY access_key_id LIMIT $3::int",
                 3, (const char *[]){ ns, cursor, limit });
    if (!r)
        tenancy_db_error(d, resp);
    deps_db_release(d);
    if (!r)
        return HTTPD_DONE;
    cJSON *o = cJSON_CreateObject(), *items = cJSON_AddArrayToObject(o, "keys");
    int n = PQntuples(r);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(items, key_row_json(r, i));
    cJSON_AddItemToObject(o, "next_cursor", n > 0 && n == max
                                                ? cJSON_CreateString(PQgetvalue(r, n - 1, 0))
                                                : cJSON_CreateNull());
    PQclear(r);
    httpd_resp_json(resp, 200, o);
    return HTTPD_DONE;
}

/* The {id} path parameter; ML_ERR with a 404 written when it cannot be a key's id. */
static int path_id(httpd_req *req, httpd_resp *resp, const char **id)
{
    *id = httpd_param(req, "id");
    if (akey_id_valid(*id) == ML_OK)
        return ML_OK;
    httpd_resp_error(resp, 404, "not_found", "no access key '%.32s'", *id);
    return ML_ERR;
}

static httpd_result h_get(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id;
    PGresult *r;
    deps *d;

    if (path_id(req, resp, &id) != ML_OK || !(d = tenancy_db(ud, resp)))
        return HTTPD_DONE;
    r = pg_query(d->db, "ex_akey_get", "SELECT " KEY_COLS " FROM access_keys WHERE access_key_id = $1", 1,
                 (const char *[]){ id });
    answer_key(d, r, id, 200, NULL, resp);
    deps_db_release(d);
    PQclear(r);
    return HTTPD_DONE;
}

static httpd_result h_delete(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id;
    int64_t n = 0;
    deps *d;

    if (path_id(req, resp, &id) != ML_OK || !(d = tenancy_db(ud, resp)))
        return HTTPD_DONE;
    if (pg_exec(d->db, "ex_akey_delete", "DELETE FROM access_keys WHERE access_key_id = $1", 1,
                (const char *[]){ id }, &n) != ML_OK)
        tenancy_db_error(d, resp);
    else if (n == 0)
        httpd_resp_error(resp, 404, "not_found", "no access key '%.32s'", id);
    else {
        resp->status = 204;
        tenancy_count(ud, "key_delete");
        ml_log_info("access key %s deleted", id);
    }
    deps_db_release(d);
    return HTTPD_DONE;
}

/* disable / enable: sets the status (updated_at moves only on a change). */
static httpd_result set_status(httpd_req *req, httpd_resp *resp, tenancy *t, const char *status,
                               const char *action)
{
    const char *id;
    PGresult *r;
    deps *d;

    if (path_id(req, resp, &id) != ML_OK || !(d = tenancy_db(t, resp)))
        return HTTPD_DONE;
    r = pg_query(d->db, "ex_akey_status",
                 "UPDATE access_keys SET status = $2, updated_at = CASE WHEN status = $2 THEN updated_at"
                 " ELSE now() END WHERE access_key_id = $1 RETURNING " KEY_COLS,
                 2, (const char *[]){ id, status });
    if (answer_key(d, r, id, 200, NULL, resp) == ML_OK) {
        tenancy_count(t, action);
        ml_log_info("access key %s %s", id, status);
    }
    deps_db_release(d);
    PQclear(r);
    return HTTPD_DONE;
}

static httpd_result h_disable(httpd_req *req, httpd_resp *resp, void *ud)
{
    return set_status(req, resp, ud, "disabled", "key_disable");
}

static httpd_result h_enable(httpd_req *req, httpd_resp *resp, void *ud)
{
    return set_status(req, resp, ud, "active", "key_enable");
}

static httpd_result h_rotate(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id;
    char secret[AKEY_SECRET_LEN + 1] = "", *sealed = NULL;
    PGresult *r;
    deps *d;

    if (path_id(req, resp, &id) != ML_OK)
        return HTTPD_DONE;
    if (new_sealed_secret(id, secret, &sealed) != ML_OK) {
        httpd_resp_error(resp, 500, "internal_error", "cannot make a secret");
        goto out;
    }
    if (!(d = tenancy_db(ud, resp)))
        goto out;
    r = pg_query(d->db, "ex_akey_rotate",
                 "UPDATE access_keys SET secret_sealed = $2, rotated_at = now(), updated_at = now()"
                 " WHERE access_key_id = $1 RETURNING " KEY_COLS,
                 2, (const char *[]){ id, sealed });
    if (answer_key(d, r, id, 200, secret, resp) == ML_OK) {
        tenancy_count(ud, "key_rotate");
        ml_log_info("access key %s rotated", id);
    }
    deps_db_release(d);
    PQclear(r);
out:
    OPENSSL_cleanse(secret, sizeof(secret));
    free(sealed);
    return HTTPD_DONE;
}

/* The lookup's answer from (namespace, scopes, status, secret_sealed): the secret opened. */
static void answer_lookup(const PGresult *r, const char *id, httpd_resp *resp)
{
    char ctx[CTX_MAX], err[256], *secret = NULL;
    cJSON *o;

    seal_ctx(id, ctx);
    if (secretbox_open(secretbox_global(), ctx, PQgetvalue(r, 0, 3), &secret, err, sizeof(err)) != ML_OK) {
        ml_log_error("access key %s: cannot open its secret: %s", id, err);
        httpd_resp_error(resp, 500, "internal_error", "the key's secret cannot be opened");
        return;
    }
    o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "access_key_id", id);
    cJSON_AddStringToObject(o, "secret_access_key", secret);
    cJSON_AddStringToObject(o, "namespace", PQgetvalue(r, 0, 0));
    cJSON_AddStringToObject(o, "scopes", PQgetvalue(r, 0, 1));
    cJSON_AddStringToObject(o, "status", PQgetvalue(r, 0, 2));
    httpd_resp_json(resp, 200, o);
    OPENSSL_cleanse(secret, strlen(secret));
    free(secret);
}

/* GET /internal/keys/{id}: the gateway's SigV4 lookup (disabled keys too: it refuses them). */
static httpd_result h_internal(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *id;
    PGresult *r;
    deps *d;

    if (path_id(req, resp, &id) != ML_OK || !(d = tenancy_db(ud, resp)))
        return HTTPD_DONE;
    r = pg_query(d->db, "ex_akey_lookup",
                 "SELECT namespace, scopes, status, secret_sealed FROM access_keys WHERE access_key_id = $1",
                 1, (const char *[]){ id });
    if (!r)
        tenancy_db_error(d, resp);
    deps_db_release(d);
    if (r && PQntuples(r) == 0)
        httpd_resp_error(resp, 404, "not_found", "no access key '%.32s'", id);
    else if (r)
        answer_lookup(r, id, resp);
    PQclear(r);
    return HTTPD_DONE;
}

size_t akey_routes(tenancy *t, httpd_route *out, size_t max)
{
    const httpd_route all[] = {
        { "POST", "/admin/keys", h_create, t, 16384, true },
        { "GET", "/admin/keys", h_list, t, 0, true },
        { "GET", "/admin/keys/{id}", h_get, t, 0, true },
        { "DELETE", "/admin/keys/{id}", h_delete, t, 0, true },
        { "POST", "/admin/keys/{id}/disable", h_disable, t, 0, true },
        { "POST", "/admin/keys/{id}/enable", h_enable, t, 0, true },
        { "POST", "/admin/keys/{id}/rotate", h_rotate, t, 0, true },
        { "GET", "/internal/keys/{id}", h_internal, t, 0, true },
    };
    return httpd_routes_copy(out, max, all, ML_ARRAY_LEN(all));
}
