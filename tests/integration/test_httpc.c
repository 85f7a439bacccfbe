/* test_httpc.c — httpc against a real HTTP/1.1 server started inside the test: a plain-socket
 * server on 127.0.0.1 (ephemeral port), one thread per connection, keep-alive, counting the
 * connections it accepts. Routes:
 *   /echo            200; echoes the request body; X-Echo-Method/-Length/-Test/-Type headers
 *   /status/NNN      that status with a short body
 *   /big?n=N         N bytes with Content-Length;  /chunked?n=N  N bytes, chunked encoding
 *   /sleep           answers after 3 s (unless the server stops first)
 *   /redirect        302 to /echo;  /redirect-loop  302 to itself */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "httpc.h"

#define MAX_CONN 32
#define MAX_REQ_BODY (4 * 1024 * 1024)

typedef struct srv {
    int lfd;
    int port;
    pthread_t accept_thr;
    atomic_int accepted;
    atomic_int stop;
    int nconn;
    int fds[MAX_CONN];
    pthread_t thr[MAX_CONN];
} srv;

typedef struct conn_arg {
    srv *s;
    int fd;
} conn_arg;

typedef struct req_info {
    char method[16];
    char path[256];
    char test_hdr[128];
    char ctype[128];
    size_t clen;
    char *body;
} req_info;

static int send_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static void header_value(const char *head, const char *name, char *out, size_t outlen)
{
    const char *p = head;
    size_t nlen = strlen(name);

    out[0] = '\0';
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            snprintf(out, outlen, "%.*s", (int)strcspn(v, "\r"), v);
            return;
        }
    }
}

/* Reads one request into ri (body malloc'd); -1 on EOF/error. buf keeps pipelined leftovers. */
static int read_request(int fd, char *buf, size_t bufsize, size_t *have, req_info *ri)
{
    char *end, clen[32];
    size_t head_len, got;

    memset(ri, 0, sizeof(*ri));
    while (!(end = memmem(buf, *have, "\r\n\r\n", 4))) {
        ssize_t n;
        if (*have + 1 >= bufsize)
            return -1;
        n = recv(fd, buf + *have, bufsize - 1 - *have, 0);
        if (n <= 0)
            return -1;
        *have += (size_t)n;
        buf[*have] = '\0';
    }
    *end = '\0';
    head_len = (size_t)(end - buf) + 4;
    if (sscanf(buf, "%15s %255s", ri->method, ri->path) != 2)
        return -1;
    header_value(buf, "X-Test", ri->test_hdr, sizeof(ri->test_hdr));
    header_value(buf, "Content-Type", ri->ctype, sizeof(ri->ctype));
    header_value(buf, "Content-Length", clen, sizeof(clen));
    ri->clen = clen[0] ? strtoul(clen, NULL, 10) : 0;
    if (ri->clen > MAX_REQ_BODY || !(ri->body = malloc(ri->clen + 1)))
        return -1;
    got = *have - head_len < ri->clen ? *have - head_len : ri->clen;
    memcpy(ri->body, buf + head_len, got);
    memmove(buf, buf + head_len + got, *have - head_len - got);
    *have -= head_len + got;
    while (got < ri->clen) {
        ssize_t n = recv(fd, ri->body + got, ri->clen - got, 0);
        if (n <= 0) {
            free(ri->body);
            ri->body = NULL;
            return -1;
        }
        got += (size_t)n;
    }
    return 0;
}

static int respond(int fd, const req_info *ri, int status, const char *extra, const char *body,
                   size_t len)
{
    char head[1024];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n%s\r\n", status, len, extra);

    if (send_all(fd, head, (size_t)n) != 0)
        return -1;
    return strcmp(ri->method, "HEAD") == 0 ? 0 : send_all(fd, body, len);
}

static int respond_chunked(int fd, size_t n)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    char chunk[8192 + 32];
    size_t sent = 0;

    if (send_all(fd, head, sizeof(head) - 1) != 0)
        return -1;
    while (sent < n) {
        size_t c = n - sent > 8192 ? 8192 : n - sent;
        int h = snprintf(chunk, sizeof(chunk), "%zx\r\n", c);
        memset(chunk + h, 'c', c);
        memcpy(chunk + h + c, "\r\n", 2);
        if (send_all(fd, chunk, (size_t)h + c + 2) != 0)
            return -1;
        sent += c;
    }
    return send_all(fd, "0\r\n\r\n", 5);
}

static int handle(srv *s, int fd, const req_info *ri)
{
    char extra[512];

    if (strcmp(ri->path, "/echo") == 0) {
        snprintf(extra, sizeof(extra),
                 "X-Echo-Method: %s\r\nX-Echo-Length: %zu\r\nX-Echo-Test: %s\r\n"
                 "X-Echo-Type: %s\r\nX-Multi: first\r\nx-multi:   second  \r\n",
                 ri->method, ri->clen, ri->test_hdr, ri->ctype);
        return respond(fd, ri, 200, extra, ri->body, ri->clen);
    }
    if (strncmp(ri->path, "/status/", 8) == 0)
        return respond(fd, ri, (int)strtol(ri->path + 8, NULL, 10), "", "status body", 11);
    if (strncmp(ri->path, "/big?n=", 7) == 0 || strncmp(ri->path, "/chunked?n=", 11) == 0) {
        size_t n = strtoul(strchr(ri->path, '=') + 1, NULL, 10);
        char *body;
        int rc;
        if (ri->path[1] == 'c')
            return respond_chunked(fd, n);
        body = malloc(n ? n : 1);
        memset(body, 'b', n);
        rc = respond(fd, ri, 200, "", body, n);
        free(body);
        return rc;
    }
    if (strcmp(ri->path, "/sleep") == 0) {
        for (int i = 0; i < 150 && !atomic_load(&s->stop); i++)
            usleep(20 * 1000);
        return respond(fd, ri, 200, "", "late", 4);
    }
    if (strcmp(ri->path, "/redirect") == 0)
        return respond(fd, ri, 302, "Location: /echo\r\n", "moved", 5);
    if (strcmp(ri->path, "/redirect-loop") == 0)
        return respond(fd, ri, 302, "Location: /redirect-loop\r\n", "again", 5);
    return respond(fd, ri, 404, "", "nope", 4);
}

static void *conn_main(void *arg)
{
    conn_arg *ca = arg;
    char *buf = malloc(65536);
    size_t have = 0;
    req_info ri;

    while (buf && read_request(ca->fd, buf, 65536, &have, &ri) == 0) {
        int rc = handle(ca->s, ca->fd, &ri);
        free(ri.body);
        if (rc != 0)
            break;
    }
    free(buf);
    free(ca);
    return NULL;
}

static void *accept_main(void *arg)
{
    srv *s = arg;

    while (!atomic_load(&s->stop)) {
        struct pollfd p = { .fd = s->lfd, .events = POLLIN };
        conn_arg *ca;
        int fd;

        if (poll(&p, 1, 20) <= 0)
            continue;
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        atomic_fetch_add(&s->accepted, 1);
        ca = malloc(sizeof(*ca));
        if (s->nconn == MAX_CONN || !ca) {
            free(ca);
            close(fd);
            continue;
        }
        ca->s = s;
        ca->fd = fd;
        s->fds[s->nconn] = fd;
        if (pthread_create(&s->thr[s->nconn], NULL, conn_main, ca) != 0) {
            free(ca);
            close(fd);
            continue;
        }
        s->nconn++;
    }
    return NULL;
}

static int srv_setup(void **state)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    srv *s = calloc(1, sizeof(*s));

    assert_non_null(s);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 16), 0);
    assert_int_equal(getsockname(s->lfd, (struct sockaddr *)&a, &alen), 0);
    s->port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&s->accept_thr, NULL, accept_main, s), 0);
    *state = s;
    return 0;
}

static int srv_teardown(void **state)
{
    srv *s = *state;
    int i;

    atomic_store(&s->stop, 1);
    pthread_join(s->accept_thr, NULL);
    /* accept_main has exited: nconn and fds are stable now. */
    for (i = 0; i < s->nconn; i++) {
        shutdown(s->fds[i], SHUT_RDWR);
        pthread_join(s->thr[i], NULL);
        close(s->fds[i]);
    }
    close(s->lfd);
    free(s);
    return 0;
}

static void url(const srv *s, const char *path, char *out, size_t outlen)
{
    snprintf(out, outlen, "http://127.0.0.1:%d%s", s->port, path);
}

static void test_get_headers(void **state)
{
    srv *s = *state;
    const char *const headers[] = { "X-Test: hello there", NULL };
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128];

    url(s, "/echo", u, sizeof(u));
    req.url = u;
    req.headers = headers;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Method"), "GET");
    /* Lookup is case-insensitive, values are trimmed, the last repeat wins. */
    assert_string_equal(httpc_response_header(&resp, "x-echo-test"), "hello there");
    assert_string_equal(httpc_response_header(&resp, "X-MULTI"), "second");
    assert_null(httpc_response_header(&resp, "X-Absent"));
    assert_int_equal(resp.body.len, 0);
    assert_string_equal(httpc_error(h), "");
    httpc_response_free(&resp);
    httpc_free(h);
}

static void test_post_binary_body(void **state)
{
    srv *s = *state;
    const char *const headers[] = { "Content-Type: application/octet-stream", NULL };
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    size_t len = 100000, i;
    unsigned char *body = malloc(len);
    char u[128];

    for (i = 0; i < len; i++)
        body[i] = (unsigned char)(i % 251); /* includes NUL bytes */
    url(s, "/echo", u, sizeof(u));
    req.method = "POST";
    req.url = u;
    req.headers = headers;
    req.body = body;
    req.body_len = len;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Method"), "POST");
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Length"), "100000");
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Type"), "application/octet-stream");
    assert_int_equal(resp.body.len, len);
    assert_int_equal(resp.body_bytes, (int64_t)len);
    assert_memory_equal(resp.body.data, body, len);

    /* A bodiless POST sends Content-Length: 0 and no form Content-Type; DELETE works too. */
    req.body = NULL;
    req.body_len = 0;
    req.headers = NULL;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Length"), "0");
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Type"), "");
    req.method = "DELETE";
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Method"), "DELETE");
    httpc_response_free(&resp);
    httpc_free(h);
    free(body);
}

static void test_file_body_and_sink(void **state)
{
    srv *s = *state;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    size_t len = 300000, i;
    char *data = malloc(len), *back = malloc(len), u[128];
    FILE *in = tmpfile(), *out = tmpfile();

    for (i = 0; i < len; i++)
        data[i] = (char)(i * 7);
    assert_int_equal(fwrite(data, 1, len, in), len);
    rewind(in);
    url(s, "/echo", u, sizeof(u));
    req.method = "PUT";
    req.url = u;
    req.body_file = in;
    req.body_len = len;
    req.sink_file = out;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 200);
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Method"), "PUT");
    /* The 2xx body went to the sink file, not the buffer. */
    assert_int_equal(resp.body.len, 0);
    assert_int_equal(resp.body_bytes, (int64_t)len);
    rewind(out);
    assert_int_equal(fread(back, 1, len, out), len);
    assert_memory_equal(back, data, len);

    /* A non-2xx body stays in memory so the caller can read the error. */
    url(s, "/status/404", u, sizeof(u));
    req.method = NULL;
    req.body_file = NULL;
    req.body_len = 0;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 404);
    assert_string_equal(ml_buf_cstr(&resp.body), "status body");

    /* A body file shorter than body_len is an error, not a truncated upload. */
    rewind(in);
    url(s, "/echo", u, sizeof(u));
    req.method = "PUT";
    req.body_file = in;
    req.body_len = len + 10;
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "ended after 300000 of 300010 bytes"));
    httpc_response_free(&resp);
    httpc_free(h);
    fclose(in);
    fclose(out);
    free(data);
    free(back);
}

static void test_status_is_not_error(void **state)
{
    srv *s = *state;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128];

    url(s, "/status/503", u, sizeof(u));
    req.url = u;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 503);
    assert_string_equal(ml_buf_cstr(&resp.body), "status body");
    httpc_response_free(&resp);
    httpc_free(h);
}

static void test_body_max_enforced(void **state)
{
    srv *s = *state;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128];

    req.url = u;
    req.max_body = 1024 * 1024;
    /* Announced by Content-Length, and without one (chunked): both refused. */
    url(s, "/big?n=2000000", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "exceeds the 1048576-byte limit"));
    assert_int_equal(httpc_error_retryable(h), 0);
    url(s, "/chunked?n=2000000", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "exceeds the 1048576-byte limit"));
    assert_true(resp.body.len <= 1024 * 1024);
    /* Exactly at the limit is fine. */
    url(s, "/chunked?n=1048576", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.body.len, 1024 * 1024);
    url(s, "/big?n=1048576", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.body_bytes, 1024 * 1024);
    /* The default cap applies when max_body is 0. */
    req.max_body = 0;
    url(s, "/big?n=1048577", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    /* HEAD of a large resource reads no body, so no limit applies. */
    req.method = "HEAD";
    url(s, "/big?n=5000000", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_string_equal(httpc_response_header(&resp, "Content-Length"), "5000000");
    assert_int_equal(resp.body_bytes, 0);
    httpc_response_free(&resp);
    httpc_free(h);
}

static void test_timeout_enforced(void **state)
{
    srv *s = *state;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128];
    int64_t t0;

    url(s, "/sleep", u, sizeof(u));
    req.url = u;
    req.timeout_ms = 300;
    t0 = ml_now_ms();
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_true(ml_now_ms() - t0 >= 250);
    assert_true(ml_now_ms() - t0 < 2000);
    assert_non_null(strstr(httpc_error(h), "timed out"));
    assert_int_equal(httpc_error_retryable(h), 1);
    httpc_response_free(&resp);
    httpc_free(h);
}

static void test_connection_refused(void **state)
{
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof(a);
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128], port[16];
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    (void)state;
    /* A port that was just free: bound, never listened on, closed. */
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &alen), 0);
    close(fd);
    snprintf(u, sizeof(u), "http://127.0.0.1:%d/x?secret=1", ntohs(a.sin_port));
    snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
    req.url = u;
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_int_equal(resp.status, 0);
    assert_non_null(strstr(httpc_error(h), "Connection refused"));
    assert_non_null(strstr(httpc_error(h), port));
    assert_null(strstr(httpc_error(h), "secret")); /* query strings stay out of errors */
    assert_int_equal(httpc_error_retryable(h), 1);
    /* The next failure on the handle carries no stale detail from this one. */
    req.url = "gopher://127.0.0.1/";
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "not supported"));
    assert_null(strstr(httpc_error(h), "refused"));
    assert_int_equal(httpc_error_retryable(h), 0);
    httpc_response_free(&resp);
    httpc_free(h);
}

static void test_keepalive_reuse(void **state)
{
    srv *s = *state;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new(), *h2 = httpc_new();
    char u[128];

    url(s, "/echo", u, sizeof(u));
    req.url = u;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    req.method = "POST";
    req.body = "abc";
    req.body_len = 3;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_string_equal(ml_buf_cstr(&resp.body), "abc");
    req.method = NULL;
    req.body = NULL;
    req.body_len = 0;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(atomic_load(&s->accepted), 1);
    /* A second handle has its own connection. */
    assert_int_equal(httpc_do(h2, &req, &resp), ML_OK);
    assert_int_equal(atomic_load(&s->accepted), 2);
    httpc_response_free(&resp);
    httpc_free(h);
    httpc_free(h2);
}

static void test_redirects(void **state)
{
    srv *s = *state;
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128];

    url(s, "/redirect", u, sizeof(u));
    req.url = u;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 302);
    assert_string_equal(httpc_response_header(&resp, "Location"), "/echo");
    req.max_redirects = 2;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(resp.status, 200);
    /* Headers are those of the final response only. */
    assert_string_equal(httpc_response_header(&resp, "X-Echo-Method"), "GET");
    assert_null(httpc_response_header(&resp, "Location"));
    assert_int_equal(resp.body.len, 0); /* the 302's own body is not delivered */
    /* A redirect chain longer than allowed is an error. */
    url(s, "/redirect-loop", u, sizeof(u));
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "redirects"));
    httpc_response_free(&resp);
    httpc_free(h);
}

static void test_rejected_requests(void **state)
{
    srv *s = *state;
    const char *const injected[] = { "X-Test: a\r\nX-Evil: b", NULL };
    httpc_request req = { 0 };
    httpc_response resp = { 0 };
    httpc *h = httpc_new();
    char u[128];

    req.url = "file:///etc/passwd";
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "Protocol \"file\" not supported"));
    assert_int_equal(resp.body.len, 0);
    url(s, "/echo", u, sizeof(u));
    req.url = u;
    req.headers = injected;
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    assert_non_null(strstr(httpc_error(h), "malformed request header"));
    req.headers = NULL;
    req.method = "get";
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    req.method = NULL;
    req.url = NULL;
    assert_int_equal(httpc_do(h, &req, &resp), ML_ERR);
    /* The handle is still usable afterwards, and no connection was made for the rejects. */
    req.url = u;
    assert_int_equal(httpc_do(h, &req, &resp), ML_OK);
    assert_int_equal(atomic_load(&s->accepted), 1);
    httpc_response_free(&resp);
    httpc_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_headers, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_post_binary_body, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_file_body_and_sink, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_status_is_not_error, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_body_max_enforced, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_enforced, srv_setup, srv_teardown),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test_setup_teardown(test_keepalive_reuse, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_redirects, srv_setup, srv_teardown),
        cmocka_unit_test_setup_teardown(test_rejected_requests, srv_setup, srv_teardown),
    };
    int rc;

    if (httpc_global_init() != ML_OK)
        return 1;
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    httpc_global_cleanup();
    return rc;
}
