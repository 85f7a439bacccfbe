/* s3.c — S3 over httpc: path-style URLs, libcurl's SigV4, retries, minimal XML reading.
 *
 * libcurl 7.88's SigV4 signs the path and query exactly as given and never adds
 * x-amz-content-sha256, so this file writes canonical URLs itself (RFC 3986 %XX upper-case
 * encoding, query parameters sorted, "key=" for empty values) and always sends the header. */
#include "s3.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "httpc.h"
#include "log.h"

#define EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
/* Bound on XML documents we read (a 1000-key listing is well under 1 MiB). */
#define S3_XML_MAX (8u * 1024u * 1024u)
/* Downloads may use a smaller limit, but error documents are always read up to this size. */
#define S3_ERROR_DOC_MAX (16u * 1024u)
#define BACKOFF_BASE_MS 100
#define BACKOFF_MAX_MS 2000

struct s3_client {
    httpc *http;
    char *endpoint;
    char *bucket;
    char *access_key;
    char *secret_key;
    char sigv4[96];          /* "aws:amz:<region>:s3" */
    int us_east_1;           /* CreateBucket needs a LocationConstraint elsewhere */
    char region[64];
    long connect_timeout_ms;
    long timeout_ms;
    int max_retries;
    char err[768];
    char code[64];
    long status;
};

/* One S3 request; a zeroed op is a bodiless GET on the bucket. */
typedef struct s3_op {
    const char *method;
    const char *key;         /* NULL: the bucket itself */
    const char *query;       /* canonical query string without '?', or NULL */
    const void *body;
    FILE *body_file;
    size_t body_len;
    const char *payload_sha256;
    const char *content_type;
    size_t max_body;
    FILE *sink_file;
} s3_op;

int s3_config_from_env(s3_config *cfg, char *err, size_t errlen)
{
    static const char *const names[] = {
        "MINILAMBDA_S3_ENDPOINT", "MINILAMBDA_S3_REGION", "MINILAMBDA_S3_BUCKET",
        "MINILAMBDA_S3_ACCESS_KEY", "MINILAMBDA_S3_SECRET_KEY",
    };
    const char *v[ML_ARRAY_LEN(names)];
    size_t i;

    for (i = 0; i < ML_ARRAY_LEN(names); i++) {
        v[i] = getenv(names[i]);
        if (!v[i] || !*v[i]) {
            ml_snprintf_trunc(err, errlen, "environment variable %s is not set", names[i]);
            return ML_ERR;
        }
    }
    memset(cfg, 0, sizeof(*cfg));
    cfg->endpoint = v[0];
    cfg->region = v[1];
    cfg->bucket = v[2];
    cfg->access_key = v[3];
    cfg->secret_key = v[4];
    return ML_OK;
}

/* ---- names and URLs ---- */

static int bucket_name_valid(const char *b)
{
    size_t i, n = strlen(b);

    if (n < 3 || n > 63)
        return ML_ERR;
    for (i = 0; i < n; i++)
        if (!((b[i] >= 'a' && b[i] <= 'z') || (b[i] >= '0' && b[i] <= '9') || b[i] == '-' ||
              b[i] == '.'))
            return ML_ERR;
    return ML_OK;
}

static int region_valid(const char *r)
{
    size_t i, n = strlen(r);

    if (n == 0 || n >= 64)
        return ML_ERR;
    for (i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '-'))
            return ML_ERR;
    return ML_OK;
}

/* Keys are sent as-is byte for byte (UTF-8 is fine) but must survive URL handling: libcurl
 * would collapse "." and ".." path segments, and control bytes have no XML form in listings. */
static const char *key_problem(const char *key)
{
    size_t i, n;

    if (!key || !*key)
        return "empty key";
    n = strlen(key);
    if (n > S3_KEY_MAX)
        return "key longer than 1024 bytes";
    for (i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || key[i] == 0x7f)
            return "key contains a control character";
    for (i = 0; i < n; i += strcspn(key + i, "/") + 1) {
        size_t seg = strcspn(key + i, "/");
        if ((seg == 1 && key[i] == '.') || (seg == 2 && key[i] == '.' && key[i + 1] == '.'))
            return "key has a \".\" or \"..\" path segment";
        if (i + seg >= n)
            break;
    }
    return NULL;
}

/* SigV4 URI encoding: unreserved characters kept, '/' kept if keep_slash, the rest %XX. */
static int uri_encode(ml_buf *out, const char *s, int keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p;

    for (p = (const unsigned char *)s; *p; p++) {
        int keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
                   (*p >= '0' && *p <= '9') || *p == '-' || *p == '_' || *p == '.' ||
                   *p == '~' || (keep_slash && *p == '/');
        char enc[3] = { '%', hex[*p >> 4], hex[*p & 15] };

        if (ml_buf_append(out, keep ? (const char *)p : enc, keep ? 1 : 3) != ML_OK)
            return ML_ERR;
    }
    return ML_OK;
}

static int build_url(const s3_client *c, const s3_op *op, ml_buf *url)
{
    if (ml_buf_printf(url, "%s/%s", c->endpoint, c->bucket) != ML_OK)
        return ML_ERR;
    if (op->key && (ml_buf_append_str(url, "/") != ML_OK || uri_encode(url, op->key, 1) != ML_OK))
        return ML_ERR;
    if (op->query && ml_buf_printf(url, "?%s", op->query) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

/* ---- XML (S3's documents are flat and entity-escaped: no parser needed) ---- */

/* Text of the first <tag>...</tag> in [p, end), or NULL; *next is set past the end tag. */
static const char *xml_elem(const char *p, const char *end, const char *tag, size_t *len,
                            const char **next)
{
    char open[64], close[64];
    const char *s, *e;

    if (ml_snprintf(open, sizeof(open), "<%s>", tag) != ML_OK ||
        ml_snprintf(close, sizeof(close), "</%s>", tag) != ML_OK)
        return NULL; /* a cut tag could match another element */
    s = memmem(p, (size_t)(end - p), open, strlen(open));
    if (!s)
        return NULL;
    s += strlen(open);
    e = memmem(s, (size_t)(end - s), close, strlen(close));
    if (!e)
        return NULL;
    *len = (size_t)(e - s);
    if (next)
        *next = e + strlen(close);
    return s;
}

static size_t utf8_put(unsigned long cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Decodes one entity at s ('&' .. ';', at most len bytes); bytes written to out, or 0. */
static size_t xml_entity(const char *s, size_t len, char *out, size_t *consumed)
{
    static const struct { const char *name; char c; } named[] = {
        { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' }, { "&quot;", '"' }, { "&apos;", '\'' },
    };
    const char *semi = memchr(s, ';', len < 12 ? len : 12);
    unsigned long cp;
    char *end = NULL;
    size_t i;

    if (!semi)
        return 0;
    *consumed = (size_t)(semi - s) + 1;
    for (i = 0; i < ML_ARRAY_LEN(named); i++)
        if (*consumed == strlen(named[i].name) && memcmp(s, named[i].name, *consumed) == 0) {
            out[0] = named[i].c;
            return 1;
        }
    if (*consumed < 4 || s[1] != '#')
        return 0;
    /* strtoul alone would also take blanks and signs. */
    if (s[2] == 'x' ? !isxdigit((unsigned char)s[3]) : !isdigit((unsigned char)s[2]))
        return 0;
    errno = 0;
    cp = s[2] == 'x' ? strtoul(s + 3, &end, 16) : strtoul(s + 2, &end, 10);
    if (errno || end != semi || cp == 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return utf8_put(cp, out);
}

/* Entity-decoded copy of s[0..len) (malloc'd, NUL-terminated), or NULL if malformed/OOM. */
static char *xml_text(const char *s, size_t len)
{
    char *out = malloc(len + 1), *o = out;
    size_t i = 0;

    if (!out)
        return NULL;
    while (i < len) {
        size_t consumed = 0, n;
        if (s[i] != '&') {
            *o++ = s[i++];
            continue;
        }
        /* An entity's UTF-8 is never longer than the entity itself (&#x80; is 6 > 2). */
        n = xml_entity(s + i, len - i, o, &consumed);
        if (n == 0) {
            free(out);
            return NULL;
        }
        o += n;
        i += consumed;
    }
    *o = '\0';
    return out;
}

/* Copies the decoded text of <tag> in doc[0..doclen) into out (truncating); "" if absent
 * or malformed. */
static void xml_copy(const char *doc, size_t doclen, const char *tag, char *out, size_t outlen)
{
    size_t len;
    const char *v = xml_elem(doc, doc + doclen, tag, &len, NULL);
    char *text = v ? xml_text(v, len) : NULL;

    ml_snprintf_trunc(out, outlen, "%s", text ? text : ""); /* error Code/Message text */
    free(text);
}

/* ---- request execution ---- */

static void fail(s3_client *c, const s3_op *op, int attempts, const char *fmt, ...)
    ML_PRINTF(4, 5);

static void fail(s3_client *c, const s3_op *op, int attempts, const char *fmt, ...)
{
    char detail[600], tries[48] = "";
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    if (attempts > 1)
        ml_snprintf_trunc(tries, sizeof(tries), " (gave up after %d attempts)", attempts);
    ml_snprintf_trunc(c->err, sizeof(c->err), "s3 %s %s%s%.200s: %s%s", op->method ? op->method : "GET",
                      c->bucket, op->key ? "/" : "", op->key ? op->key : "", detail, tries);
}

static const char *errstr(int e, char buf[96])
{
    return strerror_r(e, buf, 96);
}

/* Puts the request body and response sink back to their start before a retry. */
static int rewind_streams(const s3_op *op, off_t body_start)
{
    if (op->body_file && fseeko(op->body_file, body_start, SEEK_SET) != 0)
        return ML_ERR;
    if (op->sink_file) {
        if (fflush(op->sink_file) != 0 || ftruncate(fileno(op->sink_file), 0) != 0)
            return ML_ERR;
        rewind(op->sink_file);
    }
    return ML_OK;
}

/* One attempt. ML_OK with resp filled, or ML_ERR (*retry says whether trying again may help). */
static int attempt(s3_client *c, const s3_op *op, const char *url, const char **headers,
                   httpc_response *resp, int *retry)
{
    httpc_request req = { 0 };

    req.method = op->method;
    req.url = url;
    req.headers = headers;
    req.body = op->body;
    req.body_file = op->body_file;
    req.body_len = op->body_len;
    req.connect_timeout_ms = c->connect_timeout_ms;
    req.timeout_ms = c->timeout_ms;
    req.max_body = op->max_body ? op->max_body : S3_XML_MAX;
    req.sink_file = op->sink_file;
    req.aws_sigv4 = c->sigv4;
    req.aws_access_key = c->access_key;
    req.aws_secret_key = c->secret_key;
    if (httpc_do(c->http, &req, resp) != ML_OK) {
        *retry = httpc_error_retryable(c->http);
        return ML_ERR;
    }
    *retry = resp->status >= 500;
    return ML_OK;
}

static void clear_error(s3_client *c)
{
    c->err[0] = c->code[0] = '\0';
    c->status = 0;
}

/* Runs op with retries. ML_OK on 2xx, S3_NOT_FOUND on 404, else ML_ERR; error state set. */
static int s3_exec(s3_client *c, const s3_op *op, httpc_response *resp)
{
    ml_buf url = { 0 };
    off_t body_start = op->body_file ? ftello(op->body_file) : 0;
    int tries = 0, retry = 0, ok, rc = ML_ERR;
    int64_t backoff = BACKOFF_BASE_MS;
    char sha_hdr[100], ctype_hdr[300];
    const char *headers[3] = { sha_hdr, NULL, NULL };
    char ebuf[96];

    clear_error(c);
    if (build_url(c, op, &url) != ML_OK) {
        fail(c, op, 0, "URL too long");
        goto out;
    }
    if (ml_snprintf(sha_hdr, sizeof(sha_hdr), "x-amz-content-sha256: %s",
                    op->payload_sha256 ? op->payload_sha256 : EMPTY_SHA256) != ML_OK ||
        (op->content_type && ml_snprintf(ctype_hdr, sizeof(ctype_hdr), "Content-Type: %s",
                                         op->content_type) != ML_OK)) {
        fail(c, op, 0, "a request header is too long");
        goto out;
    }
    if (op->content_type)
        headers[1] = ctype_hdr;
    for (;;) {
        ok = attempt(c, op, ml_buf_cstr(&url), headers, resp, &retry);
        tries++;
        if (!retry || tries > c->max_retries)
            break;
        ml_log_kv(ML_LOG_WARN, "s3 request failed, retrying", "method",
                  op->method ? op->method : "GET", "key", op->key ? op->key : "", "error",
                  ok == ML_OK ? "HTTP 5xx" : httpc_error(c->http), NULL);
        ml_sleep_ms(backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        if (rewind_streams(op, body_start) != ML_OK) {
            fail(c, op, tries, "cannot rewind file for retry: %s", errstr(errno, ebuf));
            goto out;
        }
    }
    c->status = resp->status;
    if (ok != ML_OK) {
        fail(c, op, tries, "%s", httpc_error(c->http));
    } else if (resp->status >= 200 && resp->status < 300) {
        rc = ML_OK;
    } else {
        char message[300];
        xml_copy(ml_buf_cstr(&resp->body), resp->body.len, "Code", c->code, sizeof(c->code));
        xml_copy(ml_buf_cstr(&resp->body), resp->body.len, "Message", message, sizeof(message));
        fail(c, op, tries, "HTTP %ld%s%s%s%s", resp->status, c->code[0] ? " " : "", c->code,
             message[0] ? ": " : "", message);
        rc = resp->status == 404 ? S3_NOT_FOUND : ML_ERR;
    }
out:
    ml_buf_free(&url);
    return rc;
}

/* ---- client ---- */

static char *dup_trimmed_endpoint(const char *e)
{
    size_t n = strlen(e);

    while (n > 0 && e[n - 1] == '/')
        n--;
    return strndup(e, n);
}

s3_client *s3_new(const s3_config *cfg, char *err, size_t errlen)
{
    s3_client *c = NULL;

    if (!cfg->endpoint || (strncmp(cfg->endpoint, "http://", 7) != 0 &&
                           strncmp(cfg->endpoint, "https://", 8) != 0)) {
        ml_snprintf_trunc(err, errlen, "s3 endpoint must be an http:// or https:// URL");
        return NULL;
    }
    if (!cfg->region || region_valid(cfg->region) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "s3 region is missing or malformed");
        return NULL;
    }
    if (!cfg->bucket || bucket_name_valid(cfg->bucket) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "s3 bucket name must be 3-63 chars of a-z 0-9 . -");
        return NULL;
    }
    if (!cfg->access_key || !*cfg->access_key || !cfg->secret_key || !*cfg->secret_key) {
        ml_snprintf_trunc(err, errlen, "s3 access key and secret key are required");
        return NULL;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        goto oom;
    c->http = httpc_new();
    c->endpoint = dup_trimmed_endpoint(cfg->endpoint);
    c->bucket = strdup(cfg->bucket);
    c->access_key = strdup(cfg->access_key);
    c->secret_key = strdup(cfg->secret_key);
    if (!c->http || !c->endpoint || !c->bucket || !c->access_key || !c->secret_key)
        goto oom;
    if (ml_snprintf(c->sigv4, sizeof(c->sigv4), "aws:amz:%s:s3", cfg->region) != ML_OK)
        goto oom; /* cannot happen: region_valid caps the region at 63 characters */
    ml_strlcpy(c->region, cfg->region, sizeof(c->region));
    c->us_east_1 = strcmp(cfg->region, "us-east-1") == 0;
    c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms
                                                        : S3_DEFAULT_CONNECT_TIMEOUT_MS;
    c->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : S3_DEFAULT_TIMEOUT_MS;
    c->max_retries = cfg->max_retries == 0 ? S3_DEFAULT_MAX_RETRIES
                     : cfg->max_retries < 0 ? 0 : cfg->max_retries;
    return c;
oom:
    s3_free(c);
    ml_snprintf_trunc(err, errlen, "s3 client: out of memory");
    return NULL;
}

void s3_free(s3_client *c)
{
    if (!c)
        return;
    httpc_free(c->http);
    free(c->endpoint);
    free(c->bucket);
    free(c->access_key);
    free(c->secret_key);
    free(c);
}

const char *s3_error(const s3_client *c)
{
    return c->err;
}

const char *s3_error_code(const s3_client *c)
{
    return c->code;
}

long s3_error_status(const s3_client *c)
{
    return c->status;
}

/* ML_OK if key is usable, else ML_ERR with the error state set. */
static int check_key(s3_client *c, const char *method, const char *key)
{
    const char *why = key_problem(key);
    s3_op op = { .method = method };

    clear_error(c);
    if (!why)
        return ML_OK;
    fail(c, &op, 0, "%s", why);
    return ML_ERR;
}

/* ---- objects ---- */

int s3_put(s3_client *c, const char *key, const void *data, size_t len,
           const char *content_type)
{
    char sha[CRYPTO_SHA256_HEX_LEN];
    httpc_response resp = { 0 };
    s3_op op = { .method = "PUT", .key = key, .body = len ? data : "", .body_len = len,
                 .payload_sha256 = sha,
                 .content_type = content_type ? content_type : "application/octet-stream" };
    int rc;

    if (check_key(c, "PUT", key) != ML_OK)
        return ML_ERR;
    crypto_sha256_hex(op.body, len, sha);
    rc = s3_exec(c, &op, &resp);
    httpc_response_free(&resp);
    return rc == ML_OK ? ML_OK : ML_ERR;
}

int s3_put_file(s3_client *c, const char *key, const char *path, const char *content_type,
                char sha256_hex[CRYPTO_SHA256_HEX_LEN], int64_t *size)
{
    char sha[CRYPTO_SHA256_HEX_LEN], err[300] = "", ebuf[96];
    httpc_response resp = { 0 };
    s3_op op = { .method = "PUT", .key = key, .payload_sha256 = sha,
                 .content_type = content_type ? content_type : "application/octet-stream" };
    int64_t fsize = 0;
    int rc = ML_ERR;

    if (check_key(c, "PUT", key) != ML_OK)
        return ML_ERR;
    /* Hash first: the header carrying it is sent before the body. */
    if (crypto_sha256_file_hex(path, sha, &fsize, err, sizeof(err)) != ML_OK) {
        fail(c, &op, 0, "%s", err);
        goto out;
    }
    op.body_file = fopen(path, "rb");
    if (!op.body_file) {
        fail(c, &op, 0, "open %s: %s", path, errstr(errno, ebuf));
        goto out;
    }
    op.body_len = (size_t)fsize;
    rc = s3_exec(c, &op, &resp) == ML_OK ? ML_OK : ML_ERR;
    if (rc == ML_OK && sha256_hex)
        memcpy(sha256_hex, sha, CRYPTO_SHA256_HEX_LEN);
    if (rc == ML_OK && size)
        *size = fsize;
out:
    if (op.body_file)
        fclose(op.body_file);
    httpc_response_free(&resp);
    return rc;
}

/* The download limit for op.max_body: at least S3_ERROR_DOC_MAX so a NoSuchKey document is
 * never cut off; check_size() then applies the caller's exact limit. */
static size_t download_limit(size_t max)
{
    if (max == 0)
        max = ML_BUF_DEFAULT_MAX;
    return max < S3_ERROR_DOC_MAX ? S3_ERROR_DOC_MAX : max;
}

static int check_size(s3_client *c, const s3_op *op, const httpc_response *resp, size_t max)
{
    if (max == 0 || resp->body_bytes <= (int64_t)max)
        return ML_OK;
    fail(c, op, 1, "object is larger than the %zu-byte limit", max);
    return ML_ERR;
}

int s3_get(s3_client *c, const char *key, ml_buf *out, size_t max)
{
    httpc_response resp = { 0 };
    s3_op op = { .method = "GET", .key = key, .max_body = download_limit(max) };
    int rc;

    if (check_key(c, "GET", key) != ML_OK)
        return ML_ERR;
    rc = s3_exec(c, &op, &resp);
    if (rc == ML_OK)
        rc = check_size(c, &op, &resp, max);
    if (rc == ML_OK) {
        /* Hand over the downloaded buffer instead of copying a possibly large body. */
        ml_buf_free(out);
        *out = resp.body;
        memset(&resp.body, 0, sizeof(resp.body));
    }
    httpc_response_free(&resp);
    return rc;
}

int s3_get_file(s3_client *c, const char *key, const char *path, size_t max)
{
    httpc_response resp = { 0 };
    s3_op op = { .method = "GET", .key = key, .max_body = download_limit(max) };
    char ebuf[96];
    int fd, rc = ML_ERR;

    if (check_key(c, "GET", key) != ML_OK)
        return ML_ERR;
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 || !(op.sink_file = fdopen(fd, "wb"))) {
        fail(c, &op, 0, "open %s: %s", path, errstr(errno, ebuf));
        if (fd >= 0)
            close(fd);
        return ML_ERR;
    }
    rc = s3_exec(c, &op, &resp);
    if (rc == ML_OK)
        rc = check_size(c, &op, &resp, max);
    if (fclose(op.sink_file) != 0 && rc == ML_OK) {
        fail(c, &op, 1, "write %s: %s", path, errstr(errno, ebuf));
        rc = ML_ERR;
    }
    if (rc != ML_OK)
        unlink(path);
    httpc_response_free(&resp);
    return rc;
}

int s3_head(s3_client *c, const char *key, s3_object_info *info)
{
    httpc_response resp = { 0 };
    s3_op op = { .method = "HEAD", .key = key };
    const char *len, *etag;
    int rc;

    if (check_key(c, "HEAD", key) != ML_OK)
        return ML_ERR;
    memset(info, 0, sizeof(*info));
    rc = s3_exec(c, &op, &resp);
    if (rc == S3_NOT_FOUND && !c->code[0])
        ml_strlcpy(c->code, "NotFound", sizeof(c->code)); /* HEAD answers carry no body */
    if (rc == ML_OK) {
        len = httpc_response_header(&resp, "Content-Length");
        etag = httpc_response_header(&resp, "ETag");
        if (!len || ml_parse_int64(len, 0, INT64_MAX, &info->size) != ML_OK) {
            fail(c, &op, 1, "response has no valid Content-Length");
            rc = ML_ERR;
        }
        ml_strlcpy(info->etag, etag ? etag : "", sizeof(info->etag));
    }
    httpc_response_free(&resp);
    return rc;
}

int s3_delete(s3_client *c, const char *key)
{
    httpc_response resp = { 0 };
    s3_op op = { .method = "DELETE", .key = key };
    int rc;

    if (check_key(c, "DELETE", key) != ML_OK)
        return ML_ERR;
    rc = s3_exec(c, &op, &resp);
    httpc_response_free(&resp);
    return rc == ML_OK ? ML_OK : ML_ERR;
}

/* ---- listing ---- */

void s3_list_page_free(s3_list_page *page)
{
    size_t i;

    for (i = 0; i < page->count; i++)
        free(page->objects[i].key);
    free(page->objects);
    free(page->next_token);
    memset(page, 0, sizeof(*page));
}

/* Canonical ListObjectsV2 query: parameters in byte order, values URI-encoded. */
static int list_query(ml_buf *q, const char *prefix, const char *token, int max_keys)
{
    if (token && *token &&
        (ml_buf_append_str(q, "continuation-token=") != ML_OK || uri_encode(q, token, 0) != ML_OK ||
         ml_buf_append_str(q, "&") != ML_OK))
        return ML_ERR;
    if (ml_buf_printf(q, "list-type=2&max-keys=%d&prefix=", max_keys) != ML_OK)
        return ML_ERR;
    return uri_encode(q, prefix ? prefix : "", 0);
}

static int page_add(s3_list_page *page, size_t *cap, char *key, int64_t size)
{
    if (page->count == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        s3_object *n = realloc(page->objects, ncap * sizeof(*n));
        if (!n)
            return ML_ERR;
        page->objects = n;
        *cap = ncap;
    }
    page->objects[page->count].key = key;
    page->objects[page->count].size = size;
    page->count++;
    return ML_OK;
}

/* Fills page from a ListBucketResult document; NULL, or a reason on failure. */
static const char *parse_listing(const char *doc, size_t doclen, s3_list_page *page)
{
    const char *p = doc, *end = doc + doclen, *blk, *v;
    size_t blen, vlen, cap = 0;
    char truncated[8];

    /* A cut-off document must not pass for a shorter listing. */
    if (!memmem(doc, doclen, "</ListBucketResult>", 19))
        return "incomplete document (no </ListBucketResult>)";

    while ((blk = xml_elem(p, end, "Contents", &blen, &p)) != NULL) {
        int64_t size;
        char *key, num[24];
        if (!(v = xml_elem(blk, blk + blen, "Key", &vlen, NULL)) || !(key = xml_text(v, vlen)))
            return "Contents without a valid Key";
        v = xml_elem(blk, blk + blen, "Size", &vlen, NULL);
        if (v && vlen < sizeof(num)) {
            memcpy(num, v, vlen);
            num[vlen] = '\0';
        }
        if (!v || vlen >= sizeof(num) || ml_parse_int64(num, 0, INT64_MAX, &size) != ML_OK) {
            free(key);
            return "Contents without a valid Size";
        }
        if (page_add(page, &cap, key, size) != ML_OK) {
            free(key);
            return "out of memory";
        }
    }
    xml_copy(doc, doclen, "IsTruncated", truncated, sizeof(truncated));
    if (strcmp(truncated, "true") != 0)
        return NULL;
    v = xml_elem(doc, end, "NextContinuationToken", &vlen, NULL);
    if (!v || vlen == 0 || !(page->next_token = xml_text(v, vlen)))
        return "truncated listing without a NextContinuationToken";
    return NULL;
}

int s3_list(s3_client *c, const char *prefix, const char *continuation_token, int max_keys,
            s3_list_page *page)
{
    httpc_response resp = { 0 };
    ml_buf query = { 0 };
    s3_op op = { .method = "GET" };
    const char *why;
    int rc = ML_ERR;

    clear_error(c);
    s3_list_page_free(page);
    if (max_keys <= 0 || max_keys > 1000)
        max_keys = 1000;
    if (list_query(&query, prefix, continuation_token, max_keys) != ML_OK) {
        fail(c, &op, 0, "list query too long");
        goto out;
    }
    op.query = ml_buf_cstr(&query);
    if (s3_exec(c, &op, &resp) != ML_OK)
        goto out;
    why = parse_listing(ml_buf_cstr(&resp.body), resp.body.len, page);
    if (why) {
        fail(c, &op, 1, "bad ListObjectsV2 response: %s", why);
        s3_list_page_free(page);
        goto out;
    }
    rc = ML_OK;
out:
    ml_buf_free(&query);
    httpc_response_free(&resp);
    return rc;
}

int s3_list_parse(const char *xml, size_t len, s3_list_page *page, char *err, size_t errlen)
{
    const char *why;

    s3_list_page_free(page);
    why = parse_listing(xml, len, page);
    if (!why)
        return ML_OK;
    ml_snprintf_trunc(err, errlen, "bad ListObjectsV2 response: %s", why);
    s3_list_page_free(page);
    return ML_ERR;
}

/* ---- bucket ---- */

int s3_bucket_ensure(s3_client *c)
{
    httpc_response resp = { 0 };
    ml_buf body = { 0 };
    char sha[CRYPTO_SHA256_HEX_LEN];
    s3_op op = { .method = "HEAD" };
    int rc = s3_exec(c, &op, &resp);

    if (rc != S3_NOT_FOUND)
        goto out;
    op.method = "PUT";
    if (!c->us_east_1 &&
        ml_buf_printf(&body,
                      "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                      "<LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>",
                      c->region) != ML_OK) {
        fail(c, &op, 0, "out of memory");
        rc = ML_ERR;
        goto out;
    }
    crypto_sha256_hex(ml_buf_cstr(&body), body.len, sha);
    op.body = ml_buf_cstr(&body);
    op.body_len = body.len;
    op.payload_sha256 = sha;
    rc = s3_exec(c, &op, &resp);
    /* Someone else (another worker) may have created it meanwhile: that is success. */
    if (rc != ML_OK && strcmp(c->code, "BucketAlreadyOwnedByYou") == 0)
        rc = ML_OK;
out:
    ml_buf_free(&body);
    httpc_response_free(&resp);
    return rc == ML_OK ? ML_OK : ML_ERR;
}
