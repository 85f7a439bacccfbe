/* intauth.c — the internal credential (see intauth.h). */
#include "intauth.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* A token file holds one token, maybe with a newline: anything longer is not one. */
#define FILE_MAX 1024

/* Written once by ml_intauth_start before threads exist; read-only afterwards. */
static struct {
    bool enforced, has_old;
    ml_intauth_key key, old;
    char line[ML_INTAUTH_LINE_MAX];
    metric *m_refusals, *m_old;
} g_auth;

size_t ml_intauth_cfg_vars(ml_intauth_cfg *c, cfg_var *out, size_t max)
{
    const cfg_var vars[] = {
        { "MINILAMBDA_INTERNAL_TOKEN", CFG_STR, "", 0, 0, NULL,
          "shared secret (32..256 visible ASCII) every service sends to the lambda-executor and"
          " build-master in X-Minilambda-Internal; they answer 401 without it (docs/security.md)",
          &c->token, true },
        { "MINILAMBDA_INTERNAL_TOKEN_FILE", CFG_STR, "", 0, 0, NULL,
          "file holding MINILAMBDA_INTERNAL_TOKEN instead (a mounted secret; whitespace around it"
          " is ignored)", &c->token_file, false },
        { "MINILAMBDA_INTERNAL_TOKEN_OLD", CFG_STR, "", 0, 0, NULL,
          "the previous internal token, still accepted (never sent) while a rotation rolls out;"
          " remove it once every service runs with the new one (docs/security.md)",
          &c->token_old, true },
        { "MINILAMBDA_INTERNAL_AUTH_INSECURE", CFG_BOOL, "false", 0, 0, NULL,
          "development only: start without an internal token, internal APIs then accept any"
          " caller (a configured token is always enforced)", &c->insecure, false },
    };

    return cfg_copy(out, max, vars, ML_ARRAY_LEN(vars));
}

static bool is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\n';
}

int ml_intauth_parse(const char *raw, size_t len, char *out, size_t outlen, char *err,
                     size_t errlen)
{
    while (len > 0 && is_space(raw[0])) {
        raw++;
        len--;
    }
    while (len > 0 && is_space(raw[len - 1]))
        len--;
    if (len < ML_INTAUTH_MIN_LEN || len > ML_INTAUTH_MAX_LEN) {
        ml_snprintf_trunc(err, errlen, "the internal token has %zu characters; it needs %d to %d"
                          " (e.g. 64 hex digits: openssl rand -hex 32)", len,
                          ML_INTAUTH_MIN_LEN, ML_INTAUTH_MAX_LEN);
        return ML_ERR;
    }
    for (size_t i = 0; i < len; i++) {
        if ((unsigned char)raw[i] < 0x21 || (unsigned char)raw[i] > 0x7e) {
            ml_snprintf_trunc(err, errlen, "the internal token may hold only visible ASCII"
                              " characters (character %zu is not one)", i + 1);
            return ML_ERR;
        }
    }
    if (len + 1 > outlen) {
        ml_snprintf_trunc(err, errlen, "no room for the internal token");
        return ML_ERR;
    }
    memcpy(out, raw, len);
    out[len] = '\0';
    return ML_OK;
}

/* Reads the whole (small) token file into buf; *len bytes. ML_ERR with err set. */
static int read_file(const char *path, char *buf, size_t cap, size_t *len, char *err,
                     size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    *len = 0;
    if (fd < 0) {
        ml_snprintf_trunc(err, errlen, "cannot open MINILAMBDA_INTERNAL_TOKEN_FILE %s: %s", path,
                          strerror(errno));
        return ML_ERR;
    }
    while (*len < cap && (n = read(fd, buf + *len, cap - *len)) > 0)
        *len += (size_t)n;
    close(fd);
    if (*len == cap) {
        ml_snprintf_trunc(err, errlen, "MINILAMBDA_INTERNAL_TOKEN_FILE %s is too large for a"
                          " token", path);
        return ML_ERR;
    }
    return ML_OK;
}

int ml_intauth_load(const ml_intauth_cfg *c, char *out, size_t outlen, char *err, size_t errlen)
{
    bool has_token = c->token && *c->token, has_file = c->token_file && *c->token_file;
    char buf[FILE_MAX];
    size_t len;
    int rc;

    if (has_token && has_file) {
        ml_snprintf_trunc(err, errlen, "set MINILAMBDA_INTERNAL_TOKEN or"
                          " MINILAMBDA_INTERNAL_TOKEN_FILE, not both");
        return ML_ERR;
    }
    if (has_token)
        return ml_intauth_parse(c->token, strlen(c->token), out, outlen, err, errlen);
    if (has_file) {
        if (read_file(c->token_file, buf, sizeof(buf), &len, err, errlen) != ML_OK)
            return ML_ERR;
        rc = ml_intauth_parse(buf, len, out, outlen, err, errlen);
        OPENSSL_cleanse(buf, sizeof(buf));
        return rc;
    }
    if (!c->insecure) {
        ml_snprintf_trunc(err, errlen, "no internal token: set MINILAMBDA_INTERNAL_TOKEN (or"
                          " MINILAMBDA_INTERNAL_TOKEN_FILE) to the same secret on every service,"
                          " e.g. `openssl rand -hex 32`; for development only,"
                          " MINILAMBDA_INTERNAL_AUTH_INSECURE=true runs without one");
        return ML_ERR;
    }
    if (outlen)
        out[0] = '\0';
    return ML_OK;
}

int ml_intauth_key_set(ml_intauth_key *key, const char *token)
{
    size_t n = strnlen(token, sizeof(key->padded));

    memset(key->padded, 0, sizeof(key->padded));
    if (n >= sizeof(key->padded))
        return ML_ERR;
    memcpy(key->padded, token, n);
    return ML_OK;
}

bool ml_intauth_matches(const ml_intauth_key *key, const char *presented)
{
    ml_intauth_key got;
    bool eq;

    /* a value longer than any token cannot match; its length is the caller's, not a secret */
    if (!presented || ml_intauth_key_set(&got, presented) != ML_OK)
        return false;
    /* the whole padded buffer every time: no early exit at the first difference or at the
     * token's end (neither its content nor its length shows in the timing) */
    eq = CRYPTO_memcmp(got.padded, key->padded, sizeof(got.padded)) == 0;
    OPENSSL_cleanse(&got, sizeof(got));
    return eq;
}

bool ml_intauth_open_path(const char *path)
{
    return strcmp(path, "/health") == 0 || strcmp(path, "/metrics") == 0 ||
           (strncmp(path, "/ready/", 7) == 0 && path[7] != '\0' && !strchr(path + 7, '/'));
}

int ml_intauth_start(const ml_intauth_cfg *c)
{
    char token[ML_INTAUTH_MAX_LEN + 1], err[400];
    int rc = ML_ERR;

    memset(&g_auth, 0, sizeof(g_auth));
    if (ml_intauth_load(c, token, sizeof(token), err, sizeof(err)) != ML_OK) {
        ml_log_error("refusing to start: %s", err);
        goto out;
    }
    if (!token[0]) {
        ml_log_warn("MINILAMBDA_INTERNAL_AUTH_INSECURE: no internal token; the lambda-executor and"
                    " build-master APIs accept any caller (development only)");
        rc = ML_OK;
        goto out;
    }
    if (ml_snprintf(g_auth.line, sizeof(g_auth.line), "%s: %s", ML_INTAUTH_HEADER, token) != ML_OK)
        goto out; /* cannot happen: the line is sized for the longest token */
    if (ml_intauth_key_set(&g_auth.key, token) != ML_OK)
        goto out; /* cannot happen: ml_intauth_load checked the length */
    if (c->token_old && *c->token_old) {
        if (ml_intauth_parse(c->token_old, strlen(c->token_old), token, sizeof(token), err,
                             sizeof(err)) != ML_OK) {
            ml_log_error("refusing to start: MINILAMBDA_INTERNAL_TOKEN_OLD: %s", err);
            goto out;
        }
        if (ml_intauth_key_set(&g_auth.old, token) != ML_OK)
            goto out; /* cannot happen: parsed above */
        g_auth.has_old = true;
    }
    g_auth.enforced = true;
    rc = ML_OK;
out:
    OPENSSL_cleanse(token, sizeof(token));
    return rc;
}

const char *ml_intauth_header_line(void)
{
    return g_auth.enforced ? g_auth.line : NULL;
}

bool ml_intauth_enforced(void)
{
    return g_auth.enforced;
}

void ml_intauth_protect(svc *s)
{
    g_auth.m_refusals = metrics_counter(s->metrics, "minilambda_internal_auth_refusals_total",
                                        "Requests refused 401 for want of the internal token, by"
                                        " reason (missing, wrong).", "reason");
    g_auth.m_old = metrics_counter(s->metrics, "minilambda_internal_auth_old_token_total",
                                   "Requests admitted with MINILAMBDA_INTERNAL_TOKEN_OLD (a rotation"
                                   " is done when this stops growing).", NULL);
    s->http_guard = ml_intauth_guard;
    s->http_guard_ud = NULL;
}

int ml_intauth_guard(const httpd_req *req, void *ud, const char **code, const char **msg)
{
    const char *got;

    ML_UNUSED(ud);
    if (!g_auth.enforced || ml_intauth_open_path(httpd_path(req)))
        return 0;
    got = httpd_header(req, ML_INTAUTH_HEADER);
    if (ml_intauth_matches(&g_auth.key, got))
        return 0;
    if (g_auth.has_old && ml_intauth_matches(&g_auth.old, got)) {
        if (g_auth.m_old)
            metric_inc(g_auth.m_old, NULL);
        return 0;
    }
    if (g_auth.m_refusals)
        metric_inc(g_auth.m_refusals, (const char *[]){ got ? "wrong" : "missing" });
    *code = "unauthorized";
    *msg = got ? "wrong internal credential in " ML_INTAUTH_HEADER
               : "this is an internal API: call it through the gateway (services send "
                 ML_INTAUTH_HEADER ")";
    return 401;
}
