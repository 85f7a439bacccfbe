/* gwcall.c — the request path's shared steps (gateway-int.h): authentication (Bearer or
 * SigV4, 401/403 JSON, the auth-failure metric, the access log) and the gateway's own
 * answers (quota, rate-limit headers, no upstream, a failed exchange). gateway.c and
 * fnurl.c both use it; it uses neither. */
#include "gateway-int.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <time.h>

#include "aws.h"
#include "log.h"
#include "sigv4.h"
#include "tenant.h"

#define REALM "Bearer realm=\"minilambda\""

const char *gw_call_req_header(void *ud, const char *name)
{
    return httpd_header(ud, name);
}

int64_t gw_call_ceil_s(int64_t us)
{
    return (us + 999999) / 1000000;
}

void gw_call_header_int(httpd_resp *resp, const char *name, int64_t v)
{
    char s[24];

    if (ml_snprintf(s, sizeof(s), "%" PRId64, v) == ML_OK) /* 24 bytes hold any int64 */
        httpd_resp_header(resp, name, s);
}

/* Appends line to *list, which stays intact (and the caller's to free) on failure. */
int gw_call_append_header(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (!n)
        return ML_ERR;
    *list = n;
    return ML_OK;
}

/* ---- auth ---- */

/* Which key signed the request: the operator's from config (namespace default,
 * functions:invoke) or a tenant's, looked up on the executor (tenants.h). ML_ERR with the
 * reason in err. */
static int sigv4_key(gw_app *a, const char *authz, char akid[GW_TN_KEY_ID_MAX], gw_tn_akey *key,
                     char *err, size_t errlen)
{
    if (gw_sigv4_access_key(authz, akid, GW_TN_KEY_ID_MAX) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "malformed AWS4-HMAC-SHA256 Authorization header");
        return ML_ERR;
    }
    if (a->cfg.aws_access_key[0] && strcmp(akid, a->cfg.aws_access_key) == 0) {
        memset(key, 0, sizeof(*key));
        ml_strlcpy(key->ns, TENANT_DEFAULT, sizeof(key->ns));
        key->scopes = GW_SCOPE_INVOKE;
        key->active = true;
        return ml_strlcpy(key->secret, a->cfg.aws_secret_key, sizeof(key->secret));
    }
    return gw_tn_key_lookup(&a->tenants, akid, key, err, errlen);
}

#define SIGV4_MAX_QUERY_ARGS 64

/* The query's arguments as the client sent them, for the canonical query. */
typedef struct sigv4_args {
    const char *k[SIGV4_MAX_QUERY_ARGS], *v[SIGV4_MAX_QUERY_ARGS];
    size_t n;
    bool overflow;
} sigv4_args;

static void sigv4_arg(void *ud, const char *key, const char *value)
{
    sigv4_args *a = ud;

    if (a->n == SIGV4_MAX_QUERY_ARGS) {
        a->overflow = true;
        return;
    }
    a->k[a->n] = key;
    a->v[a->n++] = value;
}

/* The access log's auth_error for a SigV4 refusal: which step failed (err says how). */
static const char *sigv4_refusal(bool key_found, const char *err)
{
    if (!key_found)
        return strncmp(err, "unknown", 7) == 0    ? "unknown_access_key"
               : strncmp(err, "disabled", 8) == 0 ? "disabled_access_key"
                                                  : "key_lookup_failed";
    return strncmp(err, "signature expired", 17) == 0 ? "expired" : "bad_sigv4";
}

static gw_auth_result auth_sigv4(gw_app *a, httpd_req *req, const char *authz, gw_principal *who,
                                 const char **why)
{
    char akid[GW_TN_KEY_ID_MAX];
    gw_tn_akey key;
    gw_sigv4_creds creds = { akid, key.secret, "lambda" };
    gw_sigv4_request r = { 0 };
    sigv4_args args = { .n = 0 };
    ml_buf query = { 0 };
    char err[256];
    int rc;

    r.method = httpd_method(req);
    r.path = httpd_path(req);
    r.authorization = authz;
    r.header = gw_call_req_header;
    r.header_ud = req;
    r.body = httpd_body(req, &r.body_len);
    httpd_query_each(req, sigv4_arg, &args);
    if (args.overflow || gw_sigv4_canonical_query(args.k, args.v, args.n, &query) != ML_OK) {
        ml_buf_free(&query);
        return GW_AUTH_SIGNATURE_V4;
    }
    r.query = ml_buf_cstr(&query);
    rc = sigv4_key(a, authz, akid, &key, err, sizeof(err));
    *why = rc == ML_OK ? NULL : sigv4_refusal(false, err);
    if (rc == ML_OK && (rc = gw_sigv4_verify(&r, &creds, (int64_t)time(NULL), err, sizeof(err))) != ML_OK)
        *why = sigv4_refusal(true, err);
    OPENSSL_cleanse(key.secret, sizeof(key.secret));
    ml_buf_free(&query);
    if (rc != ML_OK) {
        ml_log_kv(ML_LOG_INFO, "SigV4 request rejected", "error", err, NULL);
        return GW_AUTH_SIGNATURE_V4;
    }
    if (ml_snprintf(who->sub, sizeof(who->sub), "aws:%s", akid) != ML_OK) {
        ml_log_kv(ML_LOG_WARN, "SigV4 request rejected", "error",
                  "the access key id is too long for a subject", NULL);
        return GW_AUTH_SIGNATURE_V4;
    }
    who->scopes = key.scopes;
    ml_strlcpy(who->ns, key.ns, sizeof(who->ns)); /* a valid name: fits */
    return GW_AUTH_OK;
}

/* ML_OK with *who set, or ML_ERR with a 401/403 written to resp. */
int gw_call_authenticate(gw_app *a, const gw_route_def *d, httpd_req *req, httpd_resp *resp,
                        gw_principal *who)
{
    const char *authz = httpd_header(req, "Authorization");
    gw_auth_result r;
    const char *why = NULL;
    char challenge[160];

    memset(who, 0, sizeof(*who));
    if ((d->kind == GW_KIND_AWS_INVOKE || d->kind == GW_KIND_AWS_CTL) && gw_sigv4_present(authz))
        r = auth_sigv4(a, req, authz, who, &why);
    else
        r = gw_auth_bearer(authz, a->cfg.jwt_secret, (int64_t)time(NULL), a->cfg.jwt_leeway_s, who);
    if (r == GW_AUTH_OK && !(who->scopes & d->scope))
        r = GW_AUTH_SCOPE;
    gw_alog_auth(req, who->sub[0] ? who->sub : NULL,
                 r == GW_AUTH_SIGNATURE_V4 && why ? why : gw_alog_auth_error(r));
    if (r == GW_AUTH_OK)
        return ML_OK;
    metric_inc(a->m_auth_failures, (const char *[]){ gw_auth_reason(r) });
    if (r == GW_AUTH_SCOPE) {
        if (ml_snprintf(challenge, sizeof(challenge),
                        REALM ", error=\"insufficient_scope\", scope=\"%s\"",
                        gw_scope_name(d->scope)) != ML_OK)
            ml_strlcpy(challenge, REALM, sizeof(challenge)); /* scope names are short */
        httpd_resp_error(resp, 403, "forbidden", "%s (needs %s)", gw_auth_message(r),
                         gw_scope_name(d->scope));
    } else {
        ml_strlcpy(challenge, r == GW_AUTH_MISSING ? REALM : REALM ", error=\"invalid_token\"",
                   sizeof(challenge));
        httpd_resp_error(resp, 401, "unauthorized", "%s", gw_auth_message(r));
    }
    httpd_resp_header(resp, "WWW-Authenticate", challenge);
    return ML_ERR;
}

/* 429 quota_exceeded naming the quota and its limit (docs/tenants.md). */
void gw_call_quota_error(gw_app *a, httpd_resp *resp, const char *ns, const char *quota,
                        int64_t limit, int64_t retry_s)
{
    cJSON *doc, *err;

    metric_inc(a->m_quota_refusals, (const char *[]){ ns, quota });
    httpd_resp_error(resp, 429, "quota_exceeded", "namespace '%s' is at its %s quota (%" PRId64 ")",
                     ns, quota, limit);
    gw_call_header_int(resp, "Retry-After", retry_s < 1 ? 1 : retry_s);
    doc = cJSON_ParseWithLength(resp->body.data, resp->body.len);
    err = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (cJSON_IsObject(err) && cJSON_AddStringToObject(err, "quota", quota) &&
        cJSON_AddNumberToObject(err, "limit", (double)limit)) {
        httpd_resp_json(resp, 429, doc); /* frees doc */
        return;
    }
    cJSON_Delete(doc);
}

void gw_call_limit_headers(httpd_resp *resp, const gcra_result *r)
{
    gw_call_header_int(resp, "RateLimit-Limit", r->limit);
    gw_call_header_int(resp, "RateLimit-Remaining", r->remaining);
    gw_call_header_int(resp, "RateLimit-Reset", gw_call_ceil_s(r->reset_after_us));
}

/* 503 right away: nothing to wait for, no connect attempt on a known-dead instance. */
void gw_call_no_upstream(gw_app *a, gw_pool *p, unsigned cap, httpd_resp *resp)
{
    metric_inc(a->m_proxy_errors, (const char *[]){ p->service, "no_upstream" });
    httpd_resp_error(resp, 503, "upstream_unavailable",
                     "no %s instance is available for '%s' right now", p->service,
                     gw_cap_name(cap));
    gw_call_header_int(resp, "Retry-After", gw_pool_retry_after_s(p, ml_now_ms()));
}

void gw_call_proxy_error(gw_app *a, gw_xfer *x, httpd_resp *resp)
{
    static const char *const kinds[] = { "ok", "connect", "timeout", "too_large", "transport",
                                         "shutdown" };
    const char *svc = x->pool->service, *kind = kinds[x->result];

    metric_inc(a->m_proxy_errors, (const char *[]){ svc, kind });
    ml_log_kv(ML_LOG_WARN, "upstream exchange failed", "upstream", svc, "instance",
              x->inst->base_url, "kind", kind, "error", x->error, NULL);
    switch (x->result) {
    case GW_XFER_CONNECT:
        httpd_resp_error(resp, 503, "upstream_unavailable", "cannot connect to any %s instance", svc);
        gw_call_header_int(resp, "Retry-After", gw_pool_retry_after_s(x->pool, ml_now_ms()));
        break;
    case GW_XFER_TIMEOUT:
        httpd_resp_error(resp, 504, "upstream_timeout", "%s did not answer within %ld ms", svc,
                         x->timeout_ms);
        break;
    case GW_XFER_TOO_LARGE:
        httpd_resp_error(resp, 502, "upstream_response_too_large",
                         "the %s response exceeds %zu bytes", svc, x->max_response);
        break;
    case GW_XFER_SHUTDOWN:
        httpd_resp_error(resp, 503, "shutting_down", "the gateway is shutting down");
        gw_call_header_int(resp, "Retry-After", 1);
        break;
    default:
        httpd_resp_error(resp, 502, "bad_gateway", "%s failed: %s", svc, x->error);
        break;
    }
}

