/* redis.c — hiredis wrapper: URL config, timeouts, lazy reconnect with backoff, scripts. */
#include "redis.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <openssl/evp.h>

#include "crypto.h"
#include "log.h"

#define RDS_DEFAULT_TIMEOUT_MS 2000
#define RDS_ERR_MAX 512
#define RDS_MAX_ARGS 4096

struct rds_conn {
    rds_url url;
    int connect_timeout_ms;
    int command_timeout_ms;
    redisContext *ctx;   /* NULL = not connected; reconnect on next call */
    int failures;        /* consecutive failed connect attempts (drives backoff) */
    int64_t last_fail_ms;
    char err[RDS_ERR_MAX];
    char cause[RDS_ERR_MAX]; /* why the last connect failed, quoted during backoff */
};

static void set_err(rds_conn *c, const char *fmt, ...) ML_PRINTF(2, 3);
static void set_err(rds_conn *c, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(c->err, sizeof(c->err), fmt, ap);
    va_end(ap);
}

/* Percent-decodes n bytes of src into dst (NUL-terminated). ML_ERR on a bad escape,
 * an embedded NUL or overflow. */
static int pct_decode(const char *src, size_t n, char *dst, size_t size)
{
    size_t i, o = 0;

    for (i = 0; i < n; i++) {
        char ch = src[i];

        if (ch == '%') {
            int hi = i + 2 < n ? crypto_hex_digit(src[i + 1]) : -1;
            int lo = i + 2 < n ? crypto_hex_digit(src[i + 2]) : -1;

            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return ML_ERR;
            ch = (char)(hi * 16 + lo);
            i += 2;
        }
        if (o + 1 >= size)
            return ML_ERR;
        dst[o++] = ch;
    }
    dst[o] = '\0';
    return ML_OK;
}

static int parse_userinfo(const char *s, size_t n, rds_url *out, char *err, size_t errlen)
{
    const char *colon = memchr(s, ':', n);

    if (!colon) {
        ml_snprintf_trunc(err, errlen, "redis URL has a user but no password");
        return ML_ERR;
    }
    if (pct_decode(s, (size_t)(colon - s), out->user, sizeof(out->user)) != ML_OK ||
        pct_decode(colon + 1, n - (size_t)(colon + 1 - s), out->password,
                   sizeof(out->password)) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "redis URL has a bad or too long user/password");
        return ML_ERR;
    }
    return ML_OK;
}

/* host, [v6host] or either with :port, n bytes at s. */
static int parse_hostport(const char *s, size_t n, rds_url *out, char *err, size_t errlen)
{
    const char *host = s, *port = NULL;
    size_t hlen = n;
    char tmp[16];
    int64_t v;

    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);

        if (!rb)
            goto bad;
        host = s + 1;
        hlen = (size_t)(rb - host);
        if (rb + 1 < s + n) {
            if (rb[1] != ':')
                goto bad;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);

        if (colon) {
            hlen = (size_t)(colon - s);
            port = colon + 1;
        }
    }
    if (hlen == 0 || hlen >= sizeof(out->host))
        goto bad;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    if (port) {
        size_t plen = (size_t)(s + n - port);

        if (plen == 0 || plen >= sizeof(tmp))
            goto bad;
        memcpy(tmp, port, plen);
        tmp[plen] = '\0';
        if (ml_parse_int64(tmp, 1, 65535, &v) != ML_OK)
            goto bad;
        out->port = (int)v;
    }
    return ML_OK;
bad:
    ml_snprintf_trunc(err, errlen, "redis URL has a bad host or port");
    return ML_ERR;
}

int rds_url_parse(const char *url, rds_url *out, char *err, size_t errlen)
{
    static const char scheme[] = "redis://";
    const char *auth, *slash, *at;
    size_t alen;
    int64_t db = 0;

    memset(out, 0, sizeof(*out));
    out->port = 6379;
    if (!url || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        ml_snprintf_trunc(err, errlen, "redis URL must start with redis://");
        return ML_ERR;
    }
    auth = url + sizeof(scheme) - 1;
    slash = strchr(auth, '/');
    alen = slash ? (size_t)(slash - auth) : strlen(auth);
    at = memrchr(auth, '@', alen);
    if (at) {
        if (parse_userinfo(auth, (size_t)(at - auth), out, err, errlen) != ML_OK)
            return ML_ERR;
        alen -= (size_t)(at + 1 - auth);
        auth = at + 1;
    }
    if (parse_hostport(auth, alen, out, err, errlen) != ML_OK)
        return ML_ERR;
    if (slash && slash[1] != '\0' && ml_parse_int64(slash + 1, 0, 1000000, &db) != ML_OK) {
        ml_snprintf_trunc(err, errlen, "redis URL has a bad database number '%s'", slash + 1);
        return ML_ERR;
    }
    out->db = (int)db;
    return ML_OK;
}

rds_conn *rds_new(const char *url, const rds_options *opts, char *err, size_t errlen)
{
    rds_conn *c = calloc(1, sizeof(*c));

    if (!c) {
        ml_snprintf_trunc(err, errlen, "out of memory");
        return NULL;
    }
    if (rds_url_parse(url, &c->url, err, errlen) != ML_OK) {
        free(c);
        return NULL;
    }
    c->connect_timeout_ms = opts && opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms
                                                                 : RDS_DEFAULT_TIMEOUT_MS;
    c->command_timeout_ms = opts && opts->command_timeout_ms > 0 ? opts->command_timeout_ms
                                                                 : RDS_DEFAULT_TIMEOUT_MS;
    return c;
}

void rds_free(rds_conn *c)
{
    if (!c)
        return;
    if (c->ctx)
        redisFree(c->ctx);
    free(c);
}

const char *rds_error(const rds_conn *c)
{
    return c->err;
}

static struct timeval ms_tv(int ms)
{
    struct timeval tv = { .tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000 };

    return tv;
}

/* Describes the context's transport error; a read timeout surfaces as EAGAIN. */
static void ctx_err(rds_conn *c, const char *what, int saved_errno)
{
    if (c->ctx && c->ctx->err == REDIS_ERR_IO &&
        (saved_errno == EAGAIN || saved_errno == EWOULDBLOCK))
        set_err(c, "redis %s:%d: %s timed out after %d ms", c->url.host, c->url.port, what,
                c->command_timeout_ms);
    else
        set_err(c, "redis %s:%d: %s failed: %s", c->url.host, c->url.port, what,
                c->ctx ? c->ctx->errstr : "out of memory");
}

static void drop_ctx(rds_conn *c)
{
    if (c->ctx)
        redisFree(c->ctx);
    c->ctx = NULL;
}

/* Runs one command on the live context. Transport failure: NULL, context dropped.
 * Error replies are returned as replies (callers decide). */
static redisReply *exec_raw(rds_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    redisReply *r;
    char what[48];

    errno = 0;
    r = redisCommandArgv(c->ctx, argc, argv, argvlen);
    if (r)
        return r;
    ml_snprintf_trunc(what, sizeof(what), "%.*s", (int)(argvlen ? argvlen[0] : strlen(argv[0])),
                      argv[0]);
    ctx_err(c, what, errno);
    drop_ctx(c);
    return NULL;
}

/* Turns an error reply into NULL + message; passes other replies through. */
static redisReply *check_reply(rds_conn *c, redisReply *r, const char *what)
{
    if (r && r->type == REDIS_REPLY_ERROR) {
        set_err(c, "redis %s: %s", what, r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* AUTH and SELECT on a fresh context, as the URL asks. */
static int handshake(rds_conn *c)
{
    char db[16];
    const char *auth[3] = { "AUTH", c->url.user, c->url.password };
    const char *sel[2] = { "SELECT", db };
    redisReply *r;

    if (c->url.password[0]) {
        /* With no user, the 2-argument form (legacy requirepass) is used. */
        int argc = c->url.user[0] ? 3 : 2;

        if (argc == 2)
            auth[1] = c->url.password;
        r = check_reply(c, exec_raw(c, argc, auth, NULL), "AUTH");
        if (!r)
            return ML_ERR;
        freeReplyObject(r);
    }
    if (c->url.db != 0) {
        if (ml_snprintf(db, sizeof(db), "%d", c->url.db) != ML_OK) {
            set_err(c, "redis SELECT: bad database number");
            return ML_ERR;
        }
        r = check_reply(c, exec_raw(c, 2, sel, NULL), "SELECT");
        if (!r)
            return ML_ERR;
        freeReplyObject(r);
    }
    return ML_OK;
}

static int64_t backoff_ms(const rds_conn *c)
{
    int64_t ms = RDS_BACKOFF_MIN_MS;
    int i;

    for (i = 1; i < c->failures && ms < RDS_BACKOFF_MAX_MS; i++)
        ms *= 2;
    return ms < RDS_BACKOFF_MAX_MS ? ms : RDS_BACKOFF_MAX_MS;
}

static int connect_fail(rds_conn *c)
{
    drop_ctx(c);
    c->failures++;
    c->last_fail_ms = ml_now_ms();
    ml_strlcpy(c->cause, c->err, sizeof(c->cause));
    ml_log_warn("%s", c->err);
    return ML_ERR;
}

/* Makes sure a live context exists, honouring the backoff after failed attempts. */
static int ensure(rds_conn *c)
{
    int64_t wait;

    if (c->ctx)
        return ML_OK;
    if (c->failures > 0) {
        wait = c->last_fail_ms + backoff_ms(c) - ml_now_ms();
        if (wait > 0) {
            set_err(c, "redis %s:%d unavailable, next connect attempt in %lld ms (last error: %s)",
                    c->url.host, c->url.port, (long long)wait, c->cause);
            return ML_ERR;
        }
    }
    c->ctx = redisConnectWithTimeout(c->url.host, c->url.port, ms_tv(c->connect_timeout_ms));
    if (!c->ctx || c->ctx->err) {
        ctx_err(c, "connect", 0);
        return connect_fail(c);
    }
    /* hiredis' connect timeout bounds only the connect; commands need their own. */
    if (redisSetTimeout(c->ctx, ms_tv(c->command_timeout_ms)) != REDIS_OK) {
        ctx_err(c, "set timeout", 0);
        return connect_fail(c);
    }
    if (handshake(c) != ML_OK)
        return connect_fail(c);
    c->failures = 0;
    return ML_OK;
}

redisReply *rds_command(rds_conn *c, int argc, const char **argv, const size_t *argvlen)
{
    char what[48];

    if (argc < 1 || !argv) {
        set_err(c, "redis: empty command");
        return NULL;
    }
    if (ensure(c) != ML_OK)
        return NULL;
    ml_snprintf_trunc(what, sizeof(what), "%.*s", (int)(argvlen ? argvlen[0] : strlen(argv[0])),
                      argv[0]);
    return check_reply(c, exec_raw(c, argc, argv, argvlen), what);
}

static int unexpected(rds_conn *c, redisReply *r, const char *what)
{
    set_err(c, "redis %s: unexpected reply type %d", what, r->type);
    freeReplyObject(r);
    return ML_ERR;
}

int rds_get(rds_conn *c, const char *key, ml_buf *out)
{
    const char *argv[2] = { "GET", key };
    redisReply *r = rds_command(c, 2, argv, NULL);
    int rc;

    ml_buf_reset(out);
    if (!r)
        return ML_ERR;
    if (r->type == REDIS_REPLY_NIL) {
        freeReplyObject(r);
        return RDS_NIL;
    }
    if (r->type != REDIS_REPLY_STRING)
        return unexpected(c, r, "GET");
    rc = ml_buf_append(out, r->str, r->len);
    if (rc != ML_OK)
        set_err(c, "redis GET: value of %zu bytes exceeds the buffer limit", r->len);
    freeReplyObject(r);
    return rc;
}

int rds_set(rds_conn *c, const char *key, const void *val, size_t len, int64_t ttl_ms)
{
    char ttl[24];
    const char *argv[5] = { "SET", key, val, "PX", ttl };
    size_t argvlen[5] = { 3, strlen(key), len, 2, 0 };
    redisReply *r;

    if (ttl_ms < 0) {
        set_err(c, "redis SET: negative TTL");
        return ML_ERR;
    }
    if (ml_snprintf(ttl, sizeof(ttl), "%lld", (long long)ttl_ms) != ML_OK) {
        set_err(c, "redis SET: bad TTL");
        return ML_ERR;
    }
    argvlen[4] = strlen(ttl);
    r = rds_command(c, ttl_ms > 0 ? 5 : 3, argv, argvlen);
    if (!r)
        return ML_ERR;
    if (r->type != REDIS_REPLY_STATUS)
        return unexpected(c, r, "SET");
    freeReplyObject(r);
    return ML_OK;
}

int rds_del(rds_conn *c, const char *key, int64_t *deleted)
{
    const char *argv[2] = { "DEL", key };
    redisReply *r = rds_command(c, 2, argv, NULL);

    if (!r)
        return ML_ERR;
    if (r->type != REDIS_REPLY_INTEGER)
        return unexpected(c, r, "DEL");
    if (deleted)
        *deleted = r->integer;
    freeReplyObject(r);
    return ML_OK;
}

int rds_ping(rds_conn *c)
{
    const char *argv[1] = { "PING" };
    redisReply *r = rds_command(c, 1, argv, NULL);
    int ok;

    if (!r)
        return ML_ERR;
    ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (!ok)
        set_err(c, "redis PING: unexpected answer");
    freeReplyObject(r);
    return ok ? ML_OK : ML_ERR;
}

void rds_script_init(rds_script *s, const char *source)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    static const char hex[] = "0123456789abcdef";
    unsigned int mdlen = 0, i;

    s->source = source;
    EVP_Digest(source, strlen(source), md, &mdlen, EVP_sha1(), NULL);
    for (i = 0; i < mdlen && i < 20; i++) {
        s->sha[2 * i] = hex[md[i] >> 4];
        s->sha[2 * i + 1] = hex[md[i] & 0xf];
    }
    s->sha[2 * i] = '\0';
}

int rds_script_load(rds_conn *c, const rds_script *s)
{
    const char *argv[3] = { "SCRIPT", "LOAD", s->source };
    redisReply *r = rds_command(c, 3, argv, NULL);
    int ok;

    if (!r)
        return ML_ERR;
    if (r->type != REDIS_REPLY_STRING)
        return unexpected(c, r, "SCRIPT LOAD");
    ok = strcmp(r->str, s->sha) == 0;
    if (!ok)
        set_err(c, "redis SCRIPT LOAD: server SHA1 %s differs from local %s", r->str, s->sha);
    freeReplyObject(r);
    return ok ? ML_OK : ML_ERR;
}

static int is_noscript(const redisReply *r)
{
    return r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

redisReply *rds_evalsha(rds_conn *c, const rds_script *s, int nkeys, const char *const *keys,
                        int nargs, const char *const *args)
{
    const char **argv = NULL;
    redisReply *r = NULL;
    char nk[16];
    int i, argc;

    if (nkeys < 0 || nargs < 0 || nkeys + nargs > RDS_MAX_ARGS) {
        set_err(c, "redis EVALSHA: bad key/argument count");
        return NULL;
    }
    argc = 3 + nkeys + nargs;
    argv = calloc((size_t)argc, sizeof(*argv));
    if (!argv) {
        set_err(c, "redis EVALSHA: out of memory");
        return NULL;
    }
    if (ml_snprintf(nk, sizeof(nk), "%d", nkeys) != ML_OK) {
        set_err(c, "redis EVALSHA: bad key count");
        goto out;
    }
    argv[0] = "EVALSHA";
    argv[1] = s->sha;
    argv[2] = nk;
    for (i = 0; i < nkeys; i++)
        argv[3 + i] = keys[i];
    for (i = 0; i < nargs; i++)
        argv[3 + nkeys + i] = args[i];
    if (ensure(c) != ML_OK)
        goto out;
    r = exec_raw(c, argc, argv, NULL);
    if (is_noscript(r)) {
        freeReplyObject(r);
        r = NULL;
        if (rds_script_load(c, s) != ML_OK)
            goto out;
        r = exec_raw(c, argc, argv, NULL);
    }
    r = check_reply(c, r, "EVALSHA");
out:
    free(argv);
    return r;
}
