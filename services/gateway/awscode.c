/* awscode.c — GetFunction's Code.Location: a gateway URL that downloads the function's ZIP
 * without credentials for a short while, as AWS's presigned S3 URL does.
 *
 * The URL is /aws-code/<namespace>/<function id>?expires=<unix s>&signature=<hex>, the
 * signature HMAC-SHA256 under the gateway's JWT secret over "minilambda-code\n<ns>\n<id>\n
 * <expires>" (so only this gateway mints them, and one names exactly one function of one
 * namespace until it expires). The download is the build-master's GET /functions/{fn}/package,
 * asked in that namespace. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

#include "awsops.h"
#include "crypto.h"
#include "fnspec.h"
#include "sigv4.h"

#define CODE_URL_TTL_S 600
#define CODE_MAX_RESPONSE (64u * 1024u * 1024u)
#define HOST_MAX 256

/* The signature of (ns, id, expires) in hex into out. */
static int code_signature(const char *secret, const char *ns, const char *id, int64_t expires,
                          char out[CRYPTO_SHA256_HEX_LEN])
{
    unsigned char mac[32];
    char msg[512];

    if (ml_snprintf(msg, sizeof(msg), "minilambda-code\n%s\n%s\n%" PRId64, ns, id, expires) != ML_OK ||
        crypto_hmac_sha256(secret, strlen(secret), msg, strlen(msg), mac) != ML_OK)
        return ML_ERR;
    crypto_hex_encode(mac, sizeof(mac), out);
    return ML_OK;
}

/* The Host the client reached the gateway by, if it is a plain host[:port]. */
static const char *client_host(httpd_req *req)
{
    const char *h = httpd_header(req, "Host");

    if (!h || !h[0] || strlen(h) > HOST_MAX ||
        strspn(h, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]") != strlen(h))
        return "localhost";
    return h;
}

char *gw_awscode_location(gw_actl *c, const cJSON *native)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(native, "id");
    int64_t exp = (int64_t)time(NULL) + CODE_URL_TTL_S;
    char sig[CRYPTO_SHA256_HEX_LEN];
    ml_buf b = { 0 };

    if (!cJSON_IsString(id) || code_signature(c->app->cfg.jwt_secret, c->ns, id->valuestring, exp, sig) != ML_OK ||
        ml_buf_printf(&b, "http://%s/aws-code/%s/", client_host(c->req), c->ns) != ML_OK ||
        gw_sigv4_uri_encode(id->valuestring, strlen(id->valuestring), &b) != ML_OK ||
        ml_buf_printf(&b, "?expires=%" PRId64 "&signature=%s", exp, sig) != ML_OK) {
        ml_buf_free(&b);
        return NULL;
    }
    return ml_buf_steal(&b, NULL);
}

/* ---- GET /aws-code/{ns}/{id} ---- */

static void downloaded(gw_actl *c, gw_xfer *x)
{
    if (!gw_actl_ok(x, 200)) {
        gw_actl_upstream_fail(c, x);
        return;
    }
    gw_actl_reply_body(c, x, "application/zip");
}

static void download(gw_actl *c, gw_xfer *x)
{
    char *path = gw_actl_fn_path(c, "/package");

    (void)x;
    gw_actl_send_max(c, GW_SVC_BUILD_MASTER, path, CODE_MAX_RESPONSE, downloaded);
}

static const gw_aws_op download_op = { "CodeDownload", download, false, false };

/* ML_OK when the URL's signature holds and has not expired. */
static int verify(const gw_app *a, httpd_req *req, const char *ns, const char *id)
{
    const char *exp_s = httpd_query(req, "expires"), *sig = httpd_query(req, "signature");
    char want[CRYPTO_SHA256_HEX_LEN];
    int64_t exp;

    if (!exp_s || !sig || ml_parse_int64(exp_s, 0, INT64_MAX, &exp) != ML_OK ||
        exp < (int64_t)time(NULL) || strlen(sig) != CRYPTO_SHA256_HEX_LEN - 1 ||
        code_signature(a->cfg.jwt_secret, ns, id, exp, want) != ML_OK)
        return ML_ERR;
    return CRYPTO_memcmp(want, sig, CRYPTO_SHA256_HEX_LEN - 1) == 0 ? ML_OK : ML_ERR;
}

httpd_result gw_awscode_handle(gw_app *a, httpd_req *req, httpd_resp *resp)
{
    const char *ns = httpd_param(req, "ns"), *id = httpd_param(req, "id");

    if (!ns || !id || fnspec_ns_valid(ns) != ML_OK || strlen(id) > GW_AWS_NAME_MAX ||
        verify(a, req, ns, id) != ML_OK) {
        httpd_resp_error(resp, 403, "forbidden", "the code URL is invalid or has expired");
        httpd_resp_header(resp, "x-amzn-ErrorType", "AccessDeniedException");
        return HTTPD_DONE;
    }
    return gw_awsctl_start(a, &download_op, req, resp, ns, 0, id);
}
