/* httpc.c — outbound HTTP over one libcurl easy handle per thread.
 *
 * The easy handle is reset (curl_easy_reset) before every request: that clears all options
 * but keeps the handle's connection cache, which is what gives keep-alive reuse. */
#include "httpc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <curl/curl.h>

#define USER_AGENT "minilambda/1.0"

struct httpc {
    CURL *curl;
    char errbuf[CURL_ERROR_SIZE];
    char err[512];
    int retryable;
};

/* State of one exchange, shared with the libcurl callbacks. */
typedef struct xfer {
    CURL *curl;
    const httpc_request *req;
    httpc_response *resp;
    size_t max_body;
    size_t sent;          /* request body bytes handed to curl */
    off_t file_start;     /* body_file position at the start */
    int too_big;          /* response body passed max_body */
    int headers_too_big;
    int body_file_short;  /* body_file ended before body_len bytes */
    int sink_errno;       /* fwrite to sink_file failed */
} xfer;

int httpc_global_init(void)
{
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? ML_OK : ML_ERR;
}

void httpc_global_cleanup(void)
{
    curl_global_cleanup();
}

httpc *httpc_new(void)
{
    httpc *h = calloc(1, sizeof(*h));

    if (!h)
        return NULL;
    h->curl = curl_easy_init();
    if (!h->curl) {
        free(h);
        return NULL;
    }
    return h;
}

void httpc_free(httpc *h)
{
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h);
}

const char *httpc_error(const httpc *h)
{
    return h->err;
}

int httpc_error_retryable(const httpc *h)
{
    return h->retryable;
}

void httpc_response_free(httpc_response *resp)
{
    ml_buf_free(&resp->body);
    ml_buf_free(&resp->headers);
    resp->status = 0;
    resp->body_bytes = 0;
}

const char *httpc_response_header(const httpc_response *resp, const char *name)
{
    const char *p = resp->headers.data, *end = p + resp->headers.len, *found = NULL;

    while (p && p < end) {
        const char *value = p + strlen(p) + 1;
        if (strcasecmp(p, name) == 0)
            found = value;
        p = value + strlen(value) + 1;
    }
    return found;
}

/* ---- libcurl callbacks ---- */

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
    xfer *x = arg;
    size_t want = size * nmemb, left = x->req->body_len - x->sent, n;

    if (want > left)
        want = left;
    if (x->req->body_file) {
        n = fread(dst, 1, want, x->req->body_file);
        if (n < want) {
            x->sent += n;
            x->body_file_short = 1;
            return CURL_READFUNC_ABORT;
        }
    } else {
        memcpy(dst, (const char *)x->req->body + x->sent, want);
        n = want;
    }
    x->sent += n;
    return n;
}

/* curl rewinds the body when it must resend it, e.g. after a reused connection turned out
 * to be closed by the server; without this such retries fail. */
static int seek_cb(void *arg, curl_off_t offset, int origin)
{
    xfer *x = arg;

    if (origin != SEEK_SET || offset < 0 || (size_t)offset > x->req->body_len)
        return CURL_SEEKFUNC_FAIL;
    if (x->req->body_file &&
        fseeko(x->req->body_file, x->file_start + (off_t)offset, SEEK_SET) != 0)
        return CURL_SEEKFUNC_FAIL;
    x->sent = (size_t)offset;
    return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *data, size_t size, size_t nmemb, void *arg)
{
    xfer *x = arg;
    size_t n = size * nmemb;
    long status = 0;

    if (n > x->max_body - (size_t)x->resp->body_bytes) {
        x->too_big = 1;
        return 0;
    }
    curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
    if (x->req->sink_file && status >= 200 && status < 300) {
        if (fwrite(data, 1, n, x->req->sink_file) != n) {
            x->sink_errno = errno ? errno : EIO;
            return 0;
        }
    } else if (ml_buf_append(&x->resp->body, data, n) != ML_OK) {
        x->too_big = 1;
        return 0;
    }
    x->resp->body_bytes += (int64_t)n;
    return n;
}

static int is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Keeps the header lines of the last response ("HTTP/" starts a new one: 100 Continue,
 * followed redirects) as "name\0value\0" pairs. */
static size_t header_cb(char *line, size_t size, size_t nmemb, void *arg)
{
    xfer *x = arg;
    size_t len = size * nmemb, nlen, vstart;
    const char *colon;

    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        ml_buf_reset(&x->resp->headers);
        return len;
    }
    colon = memchr(line, ':', len);
    /* Skipped: the blank end-of-headers line, obsolete folding, and lines holding a NUL
     * (which would corrupt the name/value pairs). */
    if (!colon || colon == line || is_space(line[0]) || memchr(line, '\0', len))
        return len;
    nlen = (size_t)(colon - line);
    vstart = nlen + 1;
    while (vstart < len && is_space(line[vstart]))
        vstart++;
    while (len > vstart && is_space(line[len - 1]))
        len--;
    if (ml_buf_append(&x->resp->headers, line, nlen) != ML_OK ||
        ml_buf_append(&x->resp->headers, "", 1) != ML_OK ||
        ml_buf_append(&x->resp->headers, line + vstart, len - vstart) != ML_OK ||
        ml_buf_append(&x->resp->headers, "", 1) != ML_OK) {
        x->headers_too_big = 1;
        return 0;
    }
    return size * nmemb;
}

/* ---- request setup ---- */

static void set_error(httpc *h, const httpc_request *req, int retryable, const char *detail)
{
    const char *url = req->url ? req->url : "(null)";
    int urllen = (int)strcspn(url, "?#");

    ml_snprintf_trunc(h->err, sizeof(h->err), "%s %.*s: %s", req->method ? req->method : "GET",
                      urllen > 200 ? 200 : urllen, url, detail);
    h->retryable = retryable;
}

static int method_valid(const char *m)
{
    size_t i, n = strlen(m);

    if (n == 0 || n > 16)
        return ML_ERR;
    for (i = 0; i < n; i++)
        if (m[i] < 'A' || m[i] > 'Z')
            return ML_ERR;
    return ML_OK;
}

/* Builds the header list; NULL with *bad set if a header is malformed or on OOM. */
static struct curl_slist *build_headers(const httpc_request *req, int upload, const char **bad)
{
    struct curl_slist *list = NULL, *next;
    const char *const *hp;

    /* No "Expect: 100-continue" round trip for large bodies: our servers never refuse
     * a body up front, so it would only cost latency. Not with SigV4: libcurl 7.88 signs
     * every header in the list, even this empty one it does not send, and the server's
     * signature then differs (SignatureDoesNotMatch). */
    if (upload && !req->aws_sigv4 && !(list = curl_slist_append(list, "Expect:"))) {
        *bad = "out of memory";
        return NULL;
    }
    for (hp = req->headers; hp && *hp; hp++) {
        if (strpbrk(*hp, "\r\n") || !strpbrk(*hp, ":;")) {
            *bad = "malformed request header (needs \"Name: value\", no CR/LF)";
            goto fail;
        }
        next = curl_slist_append(list, *hp);
        if (!next) {
            *bad = "out of memory";
            goto fail;
        }
        list = next;
    }
    return list;
fail:
    curl_slist_free_all(list);
    return NULL;
}

static void set_method(CURL *c, const char *method, int upload, xfer *x)
{
    if (upload) {
        curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(c, CURLOPT_READFUNCTION, read_cb);
        curl_easy_setopt(c, CURLOPT_READDATA, x);
        curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, seek_cb);
        curl_easy_setopt(c, CURLOPT_SEEKDATA, x);
        curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)x->req->body_len);
        if (strcmp(method, "PUT") != 0)
            curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") == 0) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
}

static void set_options(CURL *c, httpc *h, const httpc_request *req, xfer *x)
{
    curl_easy_setopt(c, CURLOPT_URL, req->url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                     req->connect_timeout_ms > 0 ? req->connect_timeout_ms
                                                 : (long)HTTPC_DEFAULT_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     req->timeout_ms > 0 ? req->timeout_ms : (long)HTTPC_DEFAULT_TIMEOUT_MS);
    /* Refuses an oversized body up front when Content-Length announces it; write_cb still
     * counts bytes for bodies without one. A HEAD's Content-Length is not a body. */
    if (!req->method || strcmp(req->method, "HEAD") != 0)
        curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_body);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    if (req->max_redirects > 0) {
        curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)req->max_redirects);
    }
    if (req->aws_sigv4) {
        curl_easy_setopt(c, CURLOPT_AWS_SIGV4, req->aws_sigv4);
        curl_easy_setopt(c, CURLOPT_USERNAME, req->aws_access_key ? req->aws_access_key : "");
        curl_easy_setopt(c, CURLOPT_PASSWORD, req->aws_secret_key ? req->aws_secret_key : "");
    }
}

static int curl_retryable(CURLcode rc)
{
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

/* Explains a failed curl_easy_perform, preferring our own reason over curl's. */
static void report_failure(httpc *h, const httpc_request *req, const xfer *x, CURLcode rc)
{
    char detail[CURL_ERROR_SIZE + 160], oserr[128] = "";
    long os_errno = 0;

    if (x->too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        ml_snprintf_trunc(detail, sizeof(detail), "response body exceeds the %zu-byte limit", x->max_body);
    } else if (x->headers_too_big) {
        ml_snprintf_trunc(detail, sizeof(detail), "response headers exceed %u bytes",
                          HTTPC_MAX_HEADER_BYTES);
    } else if (x->sink_errno) {
        ml_snprintf_trunc(detail, sizeof(detail), "writing the response body: %s",
                          strerror_r(x->sink_errno, oserr, sizeof(oserr)));
    } else if (x->body_file_short) {
        ml_snprintf_trunc(detail, sizeof(detail), "request body file ended after %zu of %zu bytes",
                          x->sent, req->body_len);
    } else {
        /* The OS errno ("Connection refused") says why a connect failed; libcurl keeps it
         * across transfers, so it is only meaningful for this failure. */
        if (rc == CURLE_COULDNT_CONNECT)
            curl_easy_getinfo(h->curl, CURLINFO_OS_ERRNO, &os_errno);
        if (os_errno) {
            char tmp[96];
            ml_snprintf_trunc(oserr, sizeof(oserr), " (%s)", strerror_r((int)os_errno, tmp, sizeof(tmp)));
        }
        ml_snprintf_trunc(detail, sizeof(detail), "%s%s",
                          h->errbuf[0] ? h->errbuf : curl_easy_strerror(rc), oserr);
        set_error(h, req, curl_retryable(rc), detail);
        return;
    }
    set_error(h, req, 0, detail);
}

int httpc_do(httpc *h, const httpc_request *req, httpc_response *resp)
{
    const char *method = req->method ? req->method : "GET";
    const char *bad = NULL;
    struct curl_slist *headers = NULL, *resolve = NULL;
    xfer x = { 0 };
    int upload, rc = ML_ERR;
    CURLcode crc;

    h->err[0] = '\0';
    h->errbuf[0] = '\0';
    h->retryable = 0;
    x.curl = h->curl;
    x.req = req;
    x.resp = resp;
    x.max_body = req->max_body ? req->max_body : HTTPC_DEFAULT_MAX_BODY;
    ml_buf_free(&resp->body);
    ml_buf_free(&resp->headers);
    ml_buf_init(&resp->body, x.max_body);
    ml_buf_init(&resp->headers, HTTPC_MAX_HEADER_BYTES);
    resp->status = 0;
    resp->body_bytes = 0;

    if (!req->url || method_valid(method) != ML_OK) {
        set_error(h, req, 0, "invalid request (missing URL or bad method)");
        goto out;
    }
    if (req->body_len && !req->body && !req->body_file) {
        set_error(h, req, 0, "body_len set without body or body_file");
        goto out;
    }
    if (req->body_file && (x.file_start = ftello(req->body_file)) < 0) {
        set_error(h, req, 0, "request body file is not seekable");
        goto out;
    }
    upload = req->body || req->body_file || strcmp(method, "POST") == 0 ||
             strcmp(method, "PUT") == 0 || strcmp(method, "PATCH") == 0;
    headers = build_headers(req, upload, &bad);
    if (bad) {
        set_error(h, req, 0, bad);
        goto out;
    }
    curl_easy_reset(h->curl);
    set_options(h->curl, h, req, &x);
    set_method(h->curl, method, upload, &x);
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, headers);
    if (req->resolve && *req->resolve) {
        if (!(resolve = curl_slist_append(NULL, req->resolve))) {
            set_error(h, req, 0, "out of memory");
            goto out;
        }
        curl_easy_setopt(h->curl, CURLOPT_RESOLVE, resolve);
    }
    crc = curl_easy_perform(h->curl);
    curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &resp->status);
    if (crc != CURLE_OK) {
        report_failure(h, req, &x, crc);
        goto out;
    }
    rc = ML_OK;
out:
    /* The handle must not keep pointers to this request's list or state. */
    curl_easy_setopt(h->curl, CURLOPT_HTTPHEADER, NULL);
    curl_easy_setopt(h->curl, CURLOPT_RESOLVE, NULL);
    curl_slist_free_all(headers);
    curl_slist_free_all(resolve);
    return rc;
}
