/* headers.c — header filtering and translation (see headers.h). */
#include "headers.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "routes.h"
#include "secretbox.h"

#define MAX_CTYPES 64
#define MAX_CTYPE_LEN 128
#define MAX_HEADER_LINE 8192

static const char *const hop_by_hop[] = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade",
};

/* Written by the gateway's HTTP server itself: an upstream copy would duplicate them. */
static const char *const server_owned[] = {
    "content-length", "content-type", "date", "server", "x-request-id",
};

/* Client headers forwarded as they are: end-to-end headers the upstreams understand. */
static const char *const forwarded[] = {
    "Content-Type", "Accept", "User-Agent", "X-Invocation-Type", "X-Log-Type",
    "Last-Event-ID", /* an SSE client's resume point (docs/logs.md) */
};

/* AWS Invoke API names and what the executor calls them. */
static const struct {
    const char *aws, *ours;
} aws_forwarded[] = {
    { "X-Amz-Invocation-Type", "X-Invocation-Type" },
    { "X-Amz-Log-Type", "X-Log-Type" },
    { "User-Agent", "User-Agent" },
};

static bool in_list(const char *const *list, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(list[i], name) == 0)
            return true;
    }
    return false;
}

bool gw_hdr_hop_by_hop(const char *name)
{
    return in_list(hop_by_hop, ML_ARRAY_LEN(hop_by_hop), name);
}

bool gw_hdr_token_listed(const char *list, const char *name)
{
    size_t nlen = strlen(name);

    while (list && *list) {
        size_t len;

        list += strspn(list, " \t,");
        len = strcspn(list, ",");
        while (len > 0 && (list[len - 1] == ' ' || list[len - 1] == '\t'))
            len--;
        if (len == nlen && strncasecmp(list, name, len) == 0)
            return true;
        list += strcspn(list, ",");
    }
    return false;
}

/* No CR/LF/NUL: a value that could split the upstream request is never forwarded. */
static bool value_safe(const char *v)
{
    return strpbrk(v, "\r\n") == NULL;
}

/* Appends a raw line; the list is left intact on failure (curl_slist_append keeps it). */
static int append_raw(struct curl_slist **list, const char *line)
{
    struct curl_slist *n = curl_slist_append(*list, line);

    if (!n)
        return ML_ERR;
    *list = n;
    return ML_OK;
}

static int append_header(struct curl_slist **list, const char *name, const char *value)
{
    char line[MAX_HEADER_LINE];

    if (!value_safe(value) || ml_snprintf(line, sizeof(line), "%s: %s", name, value) != ML_OK)
        return ML_OK; /* dropped, not fatal */
    return append_raw(list, line);
}

/* The client's header `from`, sent as `to`, unless its Connection header names it. */
static int forward_one(struct curl_slist **list, gw_hdr_get_fn get, void *ud,
                       const char *connection, const char *from, const char *to)
{
    const char *v = get(ud, from);

    if (!v || gw_hdr_token_listed(connection, from))
        return ML_OK;
    return append_header(list, to, v);
}

static bool has_line(const struct curl_slist *list, const char *name)
{
    size_t n = strlen(name);

    for (; list; list = list->next) {
        if (strncasecmp(list->data, name, n) == 0 && list->data[n] == ':')
            return true;
    }
    return false;
}

int gw_hdr_upstream_request(gw_hdr_get_fn get, void *ud, bool aws, const char *client_ip,
                            const char *request_id, struct curl_slist **out)
{
    struct curl_slist *list = NULL;
    const char *connection = get(ud, "Connection");
    int rc = ML_OK;

    if (aws) {
        for (size_t i = 0; i < ML_ARRAY_LEN(aws_forwarded) && rc == ML_OK; i++)
            rc = forward_one(&list, get, ud, connection, aws_forwarded[i].aws, aws_forwarded[i].ours);
        if (rc == ML_OK)
            rc = append_header(&list, "Content-Type", "application/json");
    } else {
        for (size_t i = 0; i < ML_ARRAY_LEN(forwarded) && rc == ML_OK; i++)
            rc = forward_one(&list, get, ud, connection, forwarded[i], forwarded[i]);
        /* without one, curl would label a body application/x-www-form-urlencoded */
        if (rc == ML_OK && !has_line(list, "Content-Type"))
            rc = append_raw(&list, "Content-Type:");
    }
    if (rc == ML_OK)
        rc = append_header(&list, "X-Request-Id", request_id);
    if (rc == ML_OK && client_ip && *client_ip)
        rc = append_header(&list, "X-Forwarded-For", client_ip);
    if (rc == ML_OK)
        rc = append_header(&list, "X-Forwarded-Proto", "http");
    /* no 100-continue round trip: the body is already here */
    if (rc == ML_OK)
        rc = append_raw(&list, "Expect:");
    if (rc != ML_OK) {
        curl_slist_free_all(list);
        return ML_ERR;
    }
    *out = list;
    return ML_OK;
}

int gw_hdr_capture_line(ml_buf *pairs, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    size_t nlen, voff, vlen;

    if (!colon)
        return ML_OK;
    nlen = (size_t)(colon - line);
    while (nlen > 0 && (line[nlen - 1] == ' ' || line[nlen - 1] == '\t'))
        nlen--;
    voff = (size_t)(colon - line) + 1;
    while (voff < len && (line[voff] == ' ' || line[voff] == '\t'))
        voff++;
    vlen = len - voff;
    while (vlen > 0 && strchr(" \t\r\n", line[voff + vlen - 1]))
        vlen--;
    if (nlen == 0)
        return ML_OK;
    if (ml_buf_append(pairs, line, nlen) != ML_OK || ml_buf_append(pairs, "", 1) != ML_OK ||
        ml_buf_append(pairs, line + voff, vlen) != ML_OK || ml_buf_append(pairs, "", 1) != ML_OK)
        return ML_ERR;
    return ML_OK;
}

/* Iterates pairs: *pos starts at 0; ML_OK while there is a pair. */
static int next_pair(const ml_buf *pairs, size_t *pos, const char **name, const char **value)
{
    if (!pairs->data || *pos >= pairs->len)
        return ML_ERR;
    *name = pairs->data + *pos;
    *pos += strlen(*name) + 1;
    if (*pos >= pairs->len)
        return ML_ERR;
    *value = pairs->data + *pos;
    *pos += strlen(*value) + 1;
    return ML_OK;
}

const char *gw_hdr_pairs_get(const ml_buf *pairs, const char *name)
{
    const char *n, *v;

    for (size_t pos = 0; next_pair(pairs, &pos, &n, &v) == ML_OK;) {
        if (strcasecmp(n, name) == 0)
            return v;
    }
    return NULL;
}

bool gw_hdr_pairs_connection_lists(const ml_buf *pairs, const char *name)
{
    const char *n, *v;

    for (size_t pos = 0; next_pair(pairs, &pos, &n, &v) == ML_OK;) {
        if (strcasecmp(n, "Connection") == 0 && gw_hdr_token_listed(v, name))
            return true;
    }
    return false;
}

bool gw_hdr_pass_response(const ml_buf *pairs, const char *name)
{
    return !gw_hdr_hop_by_hop(name) && !in_list(server_owned, ML_ARRAY_LEN(server_owned), name) &&
           !gw_hdr_pairs_connection_lists(pairs, name);
}

bool gw_hdr_resp_has(const httpd_resp *resp, const char *name)
{
    for (size_t i = 0; i < resp->nheaders; i++) {
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return true;
    }
    return false;
}

void gw_hdr_copy_response(const ml_buf *pairs, httpd_resp *resp)
{
    const char *n, *v, *ctype = gw_hdr_pairs_get(pairs, "Content-Type");
    /* no Connection header (the usual answer): no name can be listed in one, so the
     * per-header rescan of every pair (O(n^2) strcasecmp) is skipped */
    bool conn = gw_hdr_pairs_get(pairs, "Connection") != NULL;

    if (ctype)
        resp->content_type = gw_ctype_intern(ctype);
    for (size_t pos = 0; next_pair(pairs, &pos, &n, &v) == ML_OK;) {
        bool pass = conn ? gw_hdr_pass_response(pairs, n)
                         : !gw_hdr_hop_by_hop(n) && !in_list(server_owned, ML_ARRAY_LEN(server_owned), n);

        if (pass && !gw_hdr_resp_has(resp, n) && httpd_resp_header(resp, n, v) != ML_OK)
            break; /* the table is full */
    }
}

static pthread_mutex_t ctype_lock = PTHREAD_MUTEX_INITIALIZER;
static char ctypes[MAX_CTYPES][MAX_CTYPE_LEN];
static size_t nctypes;

const char *gw_ctype_intern(const char *value)
{
    const char *found = "application/octet-stream";

    if (strlen(value) >= MAX_CTYPE_LEN || !value_safe(value))
        return found;
    pthread_mutex_lock(&ctype_lock);
    for (size_t i = 0; i < nctypes; i++) {
        if (strcmp(ctypes[i], value) == 0) {
            found = ctypes[i];
            goto out;
        }
    }
    if (nctypes < MAX_CTYPES) {
        ml_strlcpy(ctypes[nctypes], value, MAX_CTYPE_LEN);
        found = ctypes[nctypes++];
    }
out:
    pthread_mutex_unlock(&ctype_lock);
    return found;
}

int gw_hdr_reveal_secrets(struct curl_slist **list, unsigned scopes)
{
    if (!(scopes & GW_SCOPE_SECRETS))
        return ML_OK;
    return append_header(list, SECRETBOX_REVEAL_HEADER, SECRETBOX_REVEAL_VALUE);
}
