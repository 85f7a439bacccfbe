/* test_dispatch.c — the webhook outbox dispatcher (shared/outbox.c) against a real Postgres
 * and a real HTTP receiver running inside the test.
 *
 * Needs MINILAMBDA_BUILD_DB_URL (fails without it). The dispatcher claims every due row of
 * its table, so to stay out of other tests' way (and keep theirs out of ours) the tests run
 * in two scratch databases created on that server, migrated with $ML_BIN_DIR/ml-migrate
 * (default build/bin) from $ML_ROOT/migrations (default ./migrations), dropped at the end.
 * Signatures are checked with OpenSSL's HMAC()/EVP_EncodeBlock directly, not with the
 * project's webhook.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "buf.h"
#include "httpc.h"
#include "httpd.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"
#include "pg.h"

extern char **environ;

#define MAX_RECS 1024
#define PAYLOAD_FMT                                                                         \
    "{\"type\":\"build.status\",\"build_id\":\"%s\",\"status\":\"%s\",\"note\":\"caf\xc3\xa9 %s\"}"

static const double quick[] = { 0.2, 0.2, 0.2, 0.2 };

/* ---- the receiver ---- */

typedef struct rec {
    char key[64], id[96], ts[32], sig[160], ctype[64];
    char body[512];
    size_t body_len;
    int status;
    int64_t at_ms;
} rec;

static pthread_mutex_t recs_lock = PTHREAD_MUTEX_INITIALIZER;
static rec recs[MAX_RECS];
static int nrecs;

static struct {
    char build_db[64], lambda_db[64];
    char build_url[1200], lambda_url[1200];
    pg_conn *db;  /* build scratch database */
    pg_conn *ldb; /* lambda scratch database */
    httpd *recv;
    uint16_t port;
    char internal_secret[64];
} g;

static void copy_header(const httpd_req *req, const char *name, char *dst, size_t size)
{
    const char *v = httpd_header(req, name);

    ml_strlcpy(dst, v ? v : "", size);
}

/* The status the script "500-500-200" gives the n-th request (0-based); the last repeats. */
static int script_status(const char *script, int n)
{
    char tok[8];
    int64_t st = 500;

    for (int i = 0;; i++) {
        size_t len = strcspn(script, "-");

        if (len < sizeof(tok)) {
            memcpy(tok, script, len);
            tok[len] = '\0';
            if (ml_parse_int64(tok, 100, 599, &st) != ML_OK)
                st = 500;
        }
        if (i == n || script[len] == '\0')
            return (int)st;
        script += len + 1;
    }
}

/* POST /r/{script}/{key}: answers by script, records everything. /slow/... first waits 5 ms,
 * /hang/... 1500 ms (longer than the tests' client timeout). */
static httpd_result recv_handler(httpd_req *req, httpd_resp *resp, void *ud)
{
    const char *script = httpd_param(req, "script"), *key = httpd_param(req, "key");
    size_t len = 0;
    const char *body = httpd_body(req, &len);
    int seen = 0, status;
    rec *r;

    if (ud)
        ml_sleep_ms(*(const int *)ud);
    pthread_mutex_lock(&recs_lock);
    for (int i = 0; i < nrecs; i++)
        seen += strcmp(recs[i].key, key) == 0;
    status = script_status(script ? script : "200", seen);
    if (nrecs < MAX_RECS) {
        r = &recs[nrecs++];
        memset(r, 0, sizeof(*r));
        ml_strlcpy(r->key, key, sizeof(r->key));
        copy_header(req, "webhook-id", r->id, sizeof(r->id));
        copy_header(req, "webhook-timestamp", r->ts, sizeof(r->ts));
        copy_header(req, "webhook-signature", r->sig, sizeof(r->sig));
        copy_header(req, "content-type", r->ctype, sizeof(r->ctype));
        r->body_len = len < sizeof(r->body) ? len : sizeof(r->body) - 1;
        memcpy(r->body, body, r->body_len);
        r->status = status;
        r->at_ms = ml_now_ms();
    }
    pthread_mutex_unlock(&recs_lock);
    httpd_resp_text(resp, status, "text/plain", status < 300 ? "ok" : "receiver says no");
    return HTTPD_DONE;
}

static int slow_ms = 5, hang_ms = 1500;
static const httpd_route routes[] = {
    { "POST", "/r/{script}/{key}", recv_handler, NULL, 0, true },
    { "POST", "/slow/{script}/{key}", recv_handler, &slow_ms, 0, true },
    { "POST", "/hang/{script}/{key}", recv_handler, &hang_ms, 0, true },
};

/* Copies of the records for key, in arrival order; returns how many. */
static int recs_for(const char *key, rec *out, int max)
{
    int n = 0;

    pthread_mutex_lock(&recs_lock);
    for (int i = 0; i < nrecs; i++)
        if (strcmp(recs[i].key, key) == 0 && n < max)
            out[n++] = recs[i];
    pthread_mutex_unlock(&recs_lock);
    return n;
}

static int count_for(const char *key)
{
    rec tmp[8];
    return recs_for(key, tmp, 8);
}

static void recv_url(char *out, size_t size, const char *host, const char *script,
                     const char *key)
{
    assert_int_equal(ml_snprintf(out, size, "http://%s:%u/r/%s/%s", host, (unsigned)g.port,
                                 script, key), ML_OK);
}

/* ---- independent Standard Webhooks verification (OpenSSL only) ---- */

static void new_secret(char *out, size_t size)
{
    unsigned char key[32];
    unsigned char b64[64];

    assert_int_equal(RAND_bytes(key, sizeof(key)), 1);
    assert_int_equal(EVP_EncodeBlock(b64, key, sizeof(key)), 44);
    assert_int_equal(ml_snprintf(out, size, "whsec_%s", (const char *)b64), ML_OK);
}

/* 1 if r's signature is "v1,"+base64(HMAC-SHA256(key, id "." ts "." body)) under secret. */
static int sig_ok(const char *secret, const rec *r)
{
    const char *b64 = secret + strlen("whsec_");
    size_t b64len = strlen(b64), pad = 0;
    unsigned char key[96], mac[EVP_MAX_MD_SIZE], enc[128];
    unsigned int maclen = 0;
    ml_buf msg = { 0 };
    int klen, ok;

    assert_true(b64len % 4 == 0 && b64len <= 128);
    klen = EVP_DecodeBlock(key, (const unsigned char *)b64, (int)b64len);
    assert_true(klen > 0);
    while (pad < 2 && b64len > pad && b64[b64len - 1 - pad] == '=')
        pad++;
    klen -= (int)pad;
    assert_int_equal(ml_buf_printf(&msg, "%s.%s.", r->id, r->ts), ML_OK);
    assert_int_equal(ml_buf_append(&msg, r->body, r->body_len), ML_OK);
    assert_non_null(HMAC(EVP_sha256(), key, klen, (const unsigned char *)msg.data, msg.len, mac,
                         &maclen));
    assert_int_equal(maclen, 32);
    assert_int_equal(EVP_EncodeBlock(enc, mac, (int)maclen), 44);
    ok = strncmp(r->sig, "v1,", 3) == 0 && strcmp(r->sig + 3, (const char *)enc) == 0;
    ml_buf_free(&msg);
    return ok;
}

/* ---- database helpers ---- */

static PGresult *q(pg_conn *c, const char *sql, int n, const char *const *v)
{
    PGresult *r = pg_query(c, NULL, sql, n, v);

    if (!r)
        fail_msg("%s: %s", sql, pg_error(c));
    return r;
}

static int64_t q_int(pg_conn *c, const char *sql, int n, const char *const *v)
{
    PGresult *r = q(c, sql, n, v);
    int64_t out = -1;

    assert_int_equal(PQntuples(r), 1);
    if (pg_get_int64(r, 0, 0, &out) != ML_OK)
        fail_msg("%s: not an integer: %s", sql, pg_get_text(r, 0, 0));
    PQclear(r);
    return out;
}

/* One text value; "<null>" for SQL NULL. */
static void q_text(pg_conn *c, char *out, size_t size, const char *sql, int n,
                   const char *const *v)
{
    PGresult *r = q(c, sql, n, v);
    const char *t;

    assert_int_equal(PQntuples(r), 1);
    t = pg_get_text(r, 0, 0);
    ml_strlcpy(out, t ? t : "<null>", size);
    PQclear(r);
}

static void exec1(pg_conn *c, const char *sql, const char *p1)
{
    const char *v[] = { p1 };

    if (pg_exec(c, NULL, sql, p1 ? 1 : 0, v, NULL) != ML_OK)
        fail_msg("%s: %s", sql, pg_error(c));
}

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);

    return v && *v ? v : def;
}

/* url with its database name replaced by db. */
static void url_with_db(const char *url, const char *db, char *out, size_t size)
{
    const char *host = strstr(url, "://"), *slash, *query;

    assert_non_null(host);
    slash = strchr(host + 3, '/');
    query = strchr(host + 3, '?');
    if (!slash || (query && slash > query))
        slash = query ? query : url + strlen(url);
    assert_int_equal(ml_snprintf(out, size, "%.*s/%s%s", (int)(slash - url), url, db,
                                 query ? query : ""), ML_OK);
}

/* Runs ml-migrate url dir; fails the test with its output unless it exits 0. */
static void migrate(const char *url, const char *sub)
{
    char bin[1024], dir[1024], outfile[] = "/tmp/ml-dispatch-migrate-XXXXXX", buf[2048];
    char *argv[] = { bin, (char *)url, dir, NULL };
    posix_spawn_file_actions_t fa;
    int fd = mkstemp(outfile), status = -1;
    ssize_t n;
    pid_t pid;

    assert_true(fd >= 0);
    ml_snprintf(bin, sizeof(bin), "%s/ml-migrate", env_or("ML_BIN_DIR", "build/bin"));
    ml_snprintf(dir, sizeof(dir), "%s/migrations/%s", env_or("ML_ROOT", "."), sub);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 1);
    posix_spawn_file_actions_adddup2(&fa, fd, 2);
    if (posix_spawn(&pid, bin, &fa, NULL, argv, environ) != 0)
        fail_msg("cannot run %s (set ML_BIN_DIR)", bin);
    posix_spawn_file_actions_destroy(&fa);
    assert_int_equal(waitpid(pid, &status, 0), pid);
    lseek(fd, 0, SEEK_SET);
    n = read(fd, buf, sizeof(buf) - 1);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    unlink(outfile);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("ml-migrate %s failed: %s", dir, buf);
}

/* A fresh database on the server of admin_url, migrated with migrations/<sub>. */
static pg_conn *scratch_db(pg_conn *admin, const char *admin_url, const char *sub, char *name,
                           size_t nsize, char *url, size_t usize)
{
    char id[ML_UUID_LEN], sql[160];
    pg_conn *c;

    ml_uuid(id);
    ml_snprintf(name, nsize, "dispatch_%s_%.8s", sub, id);
    ml_snprintf(sql, sizeof(sql), "CREATE DATABASE %s", name);
    if (pg_exec_script(admin, sql) != ML_OK)
        fail_msg("%s: %s", sql, pg_error(admin));
    url_with_db(admin_url, name, url, usize);
    migrate(url, sub);
    c = pg_new(url, NULL);
    assert_non_null(c);
    if (pg_connect(c) != ML_OK)
        fail_msg("connect %s: %s", name, pg_error(c));
    return c;
}

/* ---- fixtures ---- */

typedef struct fixture {
    char fn[ML_UUID_LEN], build[ML_UUID_LEN], secret[64];
} fixture;

static void make_build(fixture *f)
{
    char name[40], id[ML_UUID_LEN];
    const char *v[2] = { name, f->secret };
    PGresult *r;

    ml_uuid(id);
    ml_snprintf(name, sizeof(name), "disp_%.8s%.4s", id, id + 9);
    new_secret(f->secret, sizeof(f->secret));
    r = q(g.db, "INSERT INTO build_functions (name, runtime, handler, webhook_secret)"
                " VALUES ($1, 'python3', 'main.handler', $2) RETURNING id", 2, v);
    ml_strlcpy(f->fn, pg_get_text(r, 0, 0), sizeof(f->fn));
    PQclear(r);
    v[0] = f->fn;
    r = q(g.db, "INSERT INTO builds (function_id, runtime, handler, package_key, package_size,"
                " package_sha256) VALUES ($1, 'python3', 'main.handler', 'packages/x.zip', 1,"
                " repeat('a', 64)) RETURNING id", 1, v);
    ml_strlcpy(f->build, pg_get_text(r, 0, 0), sizeof(f->build));
    PQclear(r);
}

/* Inserts a pending delivery due now; its id goes to id and its payload to payload. */
static void add_delivery(const fixture *f, const char *target, const char *status, int seq,
                         const char *url, char id[ML_UUID_LEN], char *payload, size_t psize)
{
    char seqs[8], body[512], note[ML_UUID_LEN];
    const char *v[7] = { f->build, f->fn, target, status, seqs, url, body };
    PGresult *r;

    ml_uuid(note);
    ml_snprintf(seqs, sizeof(seqs), "%d", seq);
    ml_snprintf(body, sizeof(body), PAYLOAD_FMT, f->build, status, note);
    r = q(g.db, "INSERT INTO webhook_deliveries (build_id, function_id, target, event_status,"
                " seq, url, payload) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id", 7, v);
    ml_strlcpy(id, pg_get_text(r, 0, 0), ML_UUID_LEN);
    PQclear(r);
    if (payload)
        ml_strlcpy(payload, body, psize);
}

static outbox *dispatcher(outbox_kind kind, bool allow_loopback, const double *sched,
                          size_t nsched, metrics_registry *m)
{
    char err[256] = "";
    outbox_config cfg = {
        .kind = kind,
        .db_url = kind == OUTBOX_BUILD_WEBHOOKS ? g.build_url : g.lambda_url,
        .internal_secret = g.internal_secret,
        .ssrf = { .allow_loopback = allow_loopback },
        .schedule_s = sched,
        .schedule_len = nsched,
        .timeout_ms = 2000,
        .metrics = m,
    };
    outbox *o = outbox_new(&cfg, err, sizeof(err));

    if (!o)
        fail_msg("outbox_new: %s", err);
    return o;
}

static void row_status(pg_conn *c, const char *table, const char *id, char *out, size_t size)
{
    char sql[128];
    const char *v[] = { id };

    ml_snprintf(sql, sizeof(sql), "SELECT status FROM %s WHERE id = $1", table);
    q_text(c, out, size, sql, 1, v);
}

/* Runs o until the delivery reaches want (or fails the test after timeout_ms). */
static void run_until(outbox *o, pg_conn *c, const char *table, const char *id,
                      const char *want, int64_t timeout_ms)
{
    int64_t deadline = ml_now_ms() + timeout_ms;
    char st[32];

    for (;;) {
        row_status(c, table, id, st, sizeof(st));
        if (strcmp(st, want) == 0)
            return;
        if (ml_now_ms() > deadline)
            fail_msg("delivery %s is %s, not %s, after %lld ms", id, st, want,
                     (long long)timeout_ms);
        int n = outbox_run_once(o, NULL);
        if (n == ML_ERR)
            fail_msg("outbox_run_once: %s", outbox_error(o));
        if (n == 0)
            ml_sleep_ms(20);
    }
}

static void assert_contains(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("'%s' does not contain '%s'", hay, needle);
}

/* The registry's deliveries counter (the family the outbox registered). */
static metric *total_family(metrics_registry *m)
{
    metric *f = metrics_counter(m, "minilambda_webhook_deliveries_total", "", "target,result");

    assert_non_null(f);
    return f;
}

static int64_t now_s(void)
{
    return (int64_t)time(NULL);
}

/* ---- tests ---- */

/* 500, 500, 200: delivered on the third attempt, every attempt recorded and signed. */
static void test_retry_then_delivered(void **state)
{
    fixture f;
    char url[256], id[ML_UUID_LEN], payload[512], txt[256];
    const char *v[] = { id };
    metrics_registry *m = metrics_new();
    outbox *o;
    rec got[8];
    PGresult *r;

    ML_UNUSED(state);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "500-500-200", "retry");
    add_delivery(&f, "user", "queued", 1, url, id, payload, sizeof(payload));
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), m);

    /* first attempt: 500, then not due again before the backoff */
    assert_int_equal(outbox_run_once(o, NULL), 1);
    row_status(g.db, "webhook_deliveries", id, txt, sizeof(txt));
    assert_string_equal(txt, "pending");
    assert_int_equal(outbox_run_once(o, NULL), 0);
    run_until(o, g.db, "webhook_deliveries", id, "delivered", 5000);

    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 3);
    assert_int_equal(q_int(g.db, "SELECT last_status_code FROM webhook_deliveries WHERE id = $1",
                           1, v), 200);
    q_text(g.db, txt, sizeof(txt), "SELECT last_error FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_string_equal(txt, "<null>");
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_deliveries WHERE id = $1"
                                 " AND delivered_at IS NOT NULL", 1, v), 1);

    r = q(g.db, "SELECT attempt, status_code, coalesce(error, '<null>'), duration_ms"
                " FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt", 1, v);
    assert_int_equal(PQntuples(r), 3);
    for (int i = 0; i < 3; i++) {
        int64_t a = 0, code = 0, dur = -1;
        assert_int_equal(pg_get_int64(r, i, 0, &a), ML_OK);
        assert_int_equal(pg_get_int64(r, i, 1, &code), ML_OK);
        assert_int_equal(pg_get_int64(r, i, 3, &dur), ML_OK);
        assert_int_equal(a, i + 1);
        assert_int_equal(code, i < 2 ? 500 : 200);
        assert_true(dur >= 0 && dur < 2000);
        if (i < 2)
            assert_contains(pg_get_text(r, i, 2), "HTTP 500: receiver says no");
        else
            assert_string_equal(pg_get_text(r, i, 2), "<null>");
    }
    PQclear(r);

    assert_int_equal(recs_for("retry", got, 8), 3);
    for (int i = 0; i < 3; i++) {
        int64_t ts = 0;
        assert_string_equal(got[i].id, id); /* same webhook-id on every retry */
        assert_string_equal(got[i].ctype, "application/json");
        assert_int_equal(got[i].body_len, strlen(payload));
        assert_memory_equal(got[i].body, payload, strlen(payload));
        assert_true(sig_ok(f.secret, &got[i]));
        assert_false(sig_ok(g.internal_secret, &got[i]));
        assert_int_equal(ml_parse_int64(got[i].ts, 0, INT64_MAX, &ts), ML_OK);
        assert_true(ts >= now_s() - 10 && ts <= now_s() + 1);
        if (i > 0) {
            int64_t prev = 0;
            assert_int_equal(ml_parse_int64(got[i - 1].ts, 0, INT64_MAX, &prev), ML_OK);
            assert_true(ts >= prev);
            /* the 0.2 s backoff (±10 %) was respected */
            assert_true(got[i].at_ms - got[i - 1].at_ms >= 170);
        }
    }
    /* a tampered body does not verify with the same independent check */
    got[2].body[0] = '[';
    assert_false(sig_ok(f.secret, &got[2]));

    {
        const char *retry[] = { "user", "retry" }, *ok[] = { "user", "delivered" };
        const char *user[] = { "user" };
        metric *total = total_family(m);
        metric *dur = metrics_histogram(m, "minilambda_webhook_attempt_duration_seconds", "",
                                        "target", NULL, 0);
        assert_true(metric_value(total, retry) == 2.0);
        assert_true(metric_value(total, ok) == 1.0);
        assert_true(metric_value(dur, user) == 3.0);
    }
    outbox_free(o);
    metrics_free(m);
}

/* Target 'lambda' is signed with the internal secret, not the function's. */
static void test_lambda_target_internal_secret(void **state)
{
    fixture f;
    char url[256], id[ML_UUID_LEN];
    outbox *o;
    rec got[2];

    ML_UNUSED(state);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "lambda");
    add_delivery(&f, "lambda", "queued", 1, url, id, NULL, 0);
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), NULL);
    run_until(o, g.db, "webhook_deliveries", id, "delivered", 5000);
    assert_int_equal(recs_for("lambda", got, 2), 1);
    assert_string_equal(got[0].id, id);
    assert_true(sig_ok(g.internal_secret, &got[0]));
    assert_false(sig_ok(f.secret, &got[0]));
    outbox_free(o);
}

/* queued/building/completed of one build arrive in order even when the first needs a retry
 * and the later ones were due earlier; a held row (next_attempt_at = infinity) holds back
 * its target's later rows until released. */
static void test_order_per_build(void **state)
{
    fixture f;
    char url[256], q_id[ML_UUID_LEN], b_id[ML_UUID_LEN], c_id[ML_UUID_LEN];
    char lq_id[ML_UUID_LEN], lb_id[ML_UUID_LEN];
    outbox *o;
    rec got[8];
    int64_t q_ok_at;

    ML_UNUSED(state);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "order-c");
    add_delivery(&f, "user", "completed", 3, url, c_id, NULL, 0);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "order-b");
    add_delivery(&f, "user", "building", 2, url, b_id, NULL, 0);
    recv_url(url, sizeof(url), "127.0.0.1", "500-200", "order-q");
    add_delivery(&f, "user", "queued", 1, url, q_id, NULL, 0);
    /* the later transitions were due first: order must come from seq, not time */
    exec1(g.db, "UPDATE webhook_deliveries SET next_attempt_at = now() - interval '1 minute'"
                " WHERE build_id = $1 AND seq > 1", f.build);
    /* lambda target: queued held back, building due */
    recv_url(url, sizeof(url), "127.0.0.1", "200", "order-lq");
    add_delivery(&f, "lambda", "queued", 1, url, lq_id, NULL, 0);
    exec1(g.db, "UPDATE webhook_deliveries SET next_attempt_at = 'infinity' WHERE id = $1", lq_id);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "order-lb");
    add_delivery(&f, "lambda", "building", 2, url, lb_id, NULL, 0);

    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), NULL);
    assert_int_equal(outbox_run_once(o, NULL), 1); /* only queued (user) was claimable */
    assert_int_equal(count_for("order-q"), 1);
    assert_int_equal(outbox_run_once(o, NULL), 0); /* queued backs off; b and c wait */
    assert_int_equal(count_for("order-b") + count_for("order-c"), 0);
    run_until(o, g.db, "webhook_deliveries", c_id, "delivered", 5000);

    assert_int_equal(recs_for("order-q", got, 8), 2);
    assert_int_equal(got[0].status, 500);
    assert_int_equal(got[1].status, 200);
    q_ok_at = got[1].at_ms;
    assert_int_equal(recs_for("order-b", got, 8), 1);
    assert_true(got[0].at_ms >= q_ok_at);
    int64_t b_at = got[0].at_ms;
    assert_int_equal(recs_for("order-c", got, 8), 1);
    assert_true(got[0].at_ms >= b_at);

    /* the held lambda row kept its successor back the whole time */
    assert_int_equal(count_for("order-lq") + count_for("order-lb"), 0);
    {
        const char *v[] = { lb_id };
        assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1,
                               v), 0);
    }
    exec1(g.db, "UPDATE webhook_deliveries SET next_attempt_at = now() WHERE id = $1", lq_id);
    run_until(o, g.db, "webhook_deliveries", lb_id, "delivered", 5000);
    assert_int_equal(recs_for("order-lq", got, 8), 1);
    b_at = got[0].at_ms;
    assert_int_equal(recs_for("order-lb", got, 8), 1);
    assert_true(got[0].at_ms >= b_at);
    outbox_free(o);
}

/* 410: failed at once, never retried; the next transition is no longer held back. */
static void test_410_stops(void **state)
{
    fixture f;
    char url[256], id[ML_UUID_LEN], next_id[ML_UUID_LEN], txt[512];
    const char *v[] = { id };
    outbox *o;

    ML_UNUSED(state);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "410", "gone");
    add_delivery(&f, "user", "queued", 1, url, id, NULL, 0);
    recv_url(url, sizeof(url), "localhost", "200", "gone-next"); /* a name, resolved + checked */
    add_delivery(&f, "user", "building", 2, url, next_id, NULL, 0);
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), NULL);
    run_until(o, g.db, "webhook_deliveries", id, "failed", 5000);
    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 1);
    assert_int_equal(q_int(g.db, "SELECT last_status_code FROM webhook_deliveries WHERE id = $1",
                           1, v), 410);
    q_text(g.db, txt, sizeof(txt), "SELECT last_error FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_contains(txt, "410 Gone");
    run_until(o, g.db, "webhook_deliveries", next_id, "delivered", 5000);
    ml_sleep_ms(500); /* longer than the whole quick schedule's first step */
    for (int i = 0; i < 5; i++)
        assert_true(outbox_run_once(o, NULL) >= 0);
    assert_int_equal(count_for("gone"), 1);
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1",
                           1, v), 1);
    outbox_free(o);
}

/* A receiver that always fails: 1 + schedule_len attempts, then failed. */
static void test_schedule_exhausted(void **state)
{
    static const double two[] = { 0.1, 0.1 };
    fixture f;
    char url[256], id[ML_UUID_LEN], txt[512];
    const char *v[] = { id };
    metrics_registry *m = metrics_new();
    outbox *o;

    ML_UNUSED(state);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "503", "exhaust");
    add_delivery(&f, "user", "queued", 1, url, id, NULL, 0);
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, two, ML_ARRAY_LEN(two), m);
    run_until(o, g.db, "webhook_deliveries", id, "failed", 5000);
    assert_int_equal(count_for("exhaust"), 3);
    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 3);
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_attempts WHERE delivery_id = $1"
                                 " AND status_code = 503", 1, v), 3);
    q_text(g.db, txt, sizeof(txt), "SELECT last_error FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_contains(txt, "gave up after 3 attempts: HTTP 503");
    {
        const char *failed[] = { "user", "failed" };
        metric *total = total_family(m);
        assert_true(metric_value(total, failed) == 1.0);
    }
    outbox_free(o);
    metrics_free(m);
}

/* Connection refused: recorded without a status code, retried after schedule[0] ± 10 %. */
static void test_transport_error_retried(void **state)
{
    static const double slow[] = { 60 };
    fixture f;
    char url[256], id[ML_UUID_LEN], txt[512];
    const char *v[] = { id };
    struct sockaddr_in sa = { .sin_family = AF_INET };
    socklen_t slen = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int64_t ahead;
    outbox *o;

    ML_UNUSED(state);
    /* a port that was free a moment ago and has no listener */
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
    close(fd);
    make_build(&f);
    ml_snprintf(url, sizeof(url), "http://127.0.0.1:%u/nobody", (unsigned)ntohs(sa.sin_port));
    add_delivery(&f, "user", "queued", 1, url, id, NULL, 0);
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, slow, 1, NULL);
    assert_int_equal(outbox_run_once(o, NULL), 1);
    row_status(g.db, "webhook_deliveries", id, txt, sizeof(txt));
    assert_string_equal(txt, "pending");
    q_text(g.db, txt, sizeof(txt), "SELECT coalesce(status_code::text, '<null>') || ' ' || error"
                                   " FROM webhook_attempts WHERE delivery_id = $1", 1, v);
    assert_contains(txt, "<null> ");
    assert_contains(txt, "Connection refused");
    ahead = q_int(g.db, "SELECT (extract(epoch FROM next_attempt_at - now()) * 1000)::bigint"
                        " FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_true(ahead >= 53000 && ahead <= 66100);
    q_text(g.db, txt, sizeof(txt), "SELECT worker_id FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_string_equal(txt, outbox_worker_id(o));
    outbox_free(o);
    /* settle it so later tests' dispatchers never see it */
    exec1(g.db, "UPDATE webhook_deliveries SET status = 'failed' WHERE id = $1", id);
}

/* Users' URLs the policy refuses fail at once, with a clear message, without any connection;
 * the platform's own lambda-executor URL (target 'lambda') is not subject to the policy. */
static void test_ssrf_blocked(void **state)
{
    fixture f, f2;
    char url[256], priv[ML_UUID_LEN], meta[ML_UUID_LEN], loop[ML_UUID_LEN], txt[512];
    char internal[ML_UUID_LEN];
    const char *v[] = { priv };
    metrics_registry *m = metrics_new();
    outbox *o, *strict;
    int64_t t0;

    ML_UNUSED(state);
    make_build(&f);
    make_build(&f2);
    add_delivery(&f, "user", "queued", 1, "http://10.0.0.1/hook", priv, NULL, 0);
    add_delivery(&f2, "user", "queued", 1, "http://169.254.169.254/latest/meta-data/", meta,
                 NULL, 0);
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), m);
    t0 = ml_now_ms();
    assert_int_equal(outbox_run_once(o, NULL), 2);
    assert_true(ml_now_ms() - t0 < 1000); /* no connect attempt and no timeout */
    row_status(g.db, "webhook_deliveries", priv, txt, sizeof(txt));
    assert_string_equal(txt, "failed");
    q_text(g.db, txt, sizeof(txt), "SELECT last_error FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_contains(txt, "webhook URL refused: host 10.0.0.1 resolves to 10.0.0.1,"
                         " a private address");
    assert_contains(txt, "SSRF");
    q_text(g.db, txt, sizeof(txt), "SELECT coalesce(status_code::text, '<null>') || ' ' ||"
                                   " duration_ms || ' ' || error FROM webhook_attempts"
                                   " WHERE delivery_id = $1", 1, v);
    assert_contains(txt, "<null> 0 webhook URL refused");
    v[0] = meta;
    q_text(g.db, txt, sizeof(txt), "SELECT status || ' ' || last_error FROM webhook_deliveries"
                                   " WHERE id = $1", 1, v);
    assert_contains(txt, "failed webhook URL refused");
    assert_contains(txt, "link-local");
    {
        const char *user[] = { "user", "blocked" }, *ul[] = { "user" };
        metric *total = total_family(m);
        metric *dur = metrics_histogram(m, "minilambda_webhook_attempt_duration_seconds", "",
                                        "target", NULL, 0);
        assert_true(metric_value(total, user) == 2.0);
        assert_true(metric_value(dur, ul) == 0.0); /* no HTTP attempt */
    }
    outbox_free(o);

    /* proof that nothing is sent: our own receiver, refused by a strict policy, sees nothing */
    recv_url(url, sizeof(url), "127.0.0.1", "200", "strict");
    add_delivery(&f, "user", "building", 2, url, loop, NULL, 0);
    strict = dispatcher(OUTBOX_BUILD_WEBHOOKS, false, quick, ML_ARRAY_LEN(quick), NULL);
    run_until(strict, g.db, "webhook_deliveries", loop, "failed", 5000);
    v[0] = loop;
    q_text(g.db, txt, sizeof(txt), "SELECT last_error FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_contains(txt, "loopback");
    ml_sleep_ms(100);
    assert_int_equal(count_for("strict"), 0);
    /* the same policy lets the internal delivery through */
    recv_url(url, sizeof(url), "127.0.0.1", "200", "internal");
    add_delivery(&f, "lambda", "queued", 1, url, internal, NULL, 0);
    run_until(strict, g.db, "webhook_deliveries", internal, "delivered", 5000);
    assert_int_equal(count_for("internal"), 1);
    outbox_free(strict);
    metrics_free(m);
}

/* A row claimed by a dispatcher that died is sent again once its lease has run out. */
static void test_lease_expiry(void **state)
{
    fixture f;
    char url[256], id[ML_UUID_LEN];
    const char *v[] = { id };
    outbox *o;

    ML_UNUSED(state);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "lease");
    add_delivery(&f, "user", "queued", 1, url, id, NULL, 0);
    /* what a claim by a now-dead dispatcher leaves behind */
    exec1(g.db, "UPDATE webhook_deliveries SET attempts = 1, worker_id = 'dead:1:0',"
                " next_attempt_at = now() + interval '800 milliseconds' WHERE id = $1", id);
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), NULL);
    assert_int_equal(outbox_run_once(o, NULL), 0);
    assert_int_equal(count_for("lease"), 0);
    run_until(o, g.db, "webhook_deliveries", id, "delivered", 5000);
    assert_int_equal(count_for("lease"), 1);
    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 2);
    assert_int_equal(q_int(g.db, "SELECT min(attempt) FROM webhook_attempts WHERE delivery_id = $1",
                           1, v), 2);
    outbox_free(o);
}

/* Sets a row as leased by `owner` for an hour (what a claim leaves behind). */
static void lease_to(const char *id, const char *owner)
{
    const char *v[] = { id, owner };
    PGresult *r = q(g.db, "UPDATE webhook_deliveries SET attempts = 1, worker_id = $2,"
                          " lease_owner = $2, next_attempt_at = now() + interval '1 hour'"
                          " WHERE id = $1", 2, v);
    PQclear(r);
}

/* A lease whose owner's advisory lock is free (the owner died) is taken over at once; a live
 * owner's (lock held on its connection) is not, until that connection ends. */
static void test_dead_owner_taken_over(void **state)
{
    fixture f;
    char url[256], dead[ML_UUID_LEN], live[ML_UUID_LEN], owner[OUTBOX_WORKER_ID_MAX + 1];
    const char *v[] = { dead }, *lv[] = { "live:1:0" };
    pg_conn *live_conn = pg_new(g.build_url, NULL);
    PGresult *r;
    outbox *o;

    ML_UNUSED(state);
    assert_non_null(live_conn);
    r = q(live_conn, "SELECT pg_advisory_lock(1835823970, hashtext($1))", 1, lv);
    PQclear(r);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "owner-dead");
    add_delivery(&f, "user", "queued", 1, url, dead, NULL, 0);
    lease_to(dead, "dead:1:0");
    o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick), NULL);
    assert_int_equal(outbox_run_once(o, NULL), 1);
    assert_int_equal(count_for("owner-dead"), 1);
    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 2);
    q_text(g.db, owner, sizeof(owner),
           "SELECT coalesce(lease_owner, '-') FROM webhook_deliveries WHERE id = $1", 1, v);
    assert_string_equal(owner, "-"); /* settled: no owner */

    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "owner-live");
    add_delivery(&f, "user", "queued", 1, url, live, NULL, 0);
    lease_to(live, "live:1:0");
    assert_int_equal(outbox_run_once(o, NULL), 0);
    assert_int_equal(count_for("owner-live"), 0);
    pg_close(live_conn); /* the owner dies: its lock goes with its connection */
    run_until(o, g.db, "webhook_deliveries", live, "delivered", 5000);
    assert_int_equal(count_for("owner-live"), 1);
    outbox_free(o);
}

static atomic_bool stop_now;
static bool stop_fn(void)
{
    return atomic_load(&stop_now);
}

/* Stopping hands claimed rows back unsent and uncounted. */
static void test_stop_releases(void **state)
{
    fixture f;
    char url[256], id[ML_UUID_LEN], err[256];
    const char *v[] = { id };
    outbox_config cfg = { .db_url = g.build_url, .internal_secret = g.internal_secret,
                          .ssrf.allow_loopback = true, .should_stop = stop_fn };
    outbox *o = outbox_new(&cfg, err, sizeof(err));

    ML_UNUSED(state);
    assert_non_null(o);
    make_build(&f);
    recv_url(url, sizeof(url), "127.0.0.1", "200", "stop");
    add_delivery(&f, "user", "queued", 1, url, id, NULL, 0);
    atomic_store(&stop_now, true);
    assert_int_equal(outbox_run_once(o, NULL), 0);
    atomic_store(&stop_now, false);
    assert_int_equal(count_for("stop"), 0);
    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 0);
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_deliveries WHERE id = $1"
                                 " AND status = 'pending' AND next_attempt_at <= now()", 1, v), 1);
    run_until(o, g.db, "webhook_deliveries", id, "delivered", 5000);
    assert_int_equal(q_int(g.db, "SELECT attempts FROM webhook_deliveries WHERE id = $1", 1, v), 1);
    outbox_free(o);
}

/* A receiver slower than the timeout: each attempt ends as a timeout, and once what is left of
 * the lease could not cover another request the remaining rows are handed back unsent. */
static void test_timeout_and_lease_guard(void **state)
{
    enum { ROWS = 5 };
    char url[256], id[ML_UUID_LEN], err[256], txt[512], set[ROWS * (ML_UUID_LEN + 1) + 4] = "{";
    const char *v[] = { set };
    outbox_config cfg = { .db_url = g.build_url, .internal_secret = g.internal_secret,
                          .ssrf.allow_loopback = true, .schedule_s = quick,
                          .schedule_len = ML_ARRAY_LEN(quick), .batch = ROWS,
                          .timeout_ms = 1000, .lease_ms = 6500 };
    outbox *o = outbox_new(&cfg, err, sizeof(err));
    int64_t t0;

    ML_UNUSED(state);
    if (!o)
        fail_msg("outbox_new: %s", err);
    for (int i = 0; i < ROWS; i++) {
        fixture f;
        make_build(&f); /* one build each, so ordering does not serialise them */
        ml_snprintf(url, sizeof(url), "http://127.0.0.1:%u/hang/200/hang-%d", (unsigned)g.port, i);
        add_delivery(&f, "user", "queued", 1, url, id, NULL, 0);
        assert_int_equal(ml_snprintf(set + strlen(set), sizeof(set) - strlen(set), "%s%s",
                                     i ? "," : "", id), ML_OK);
    }
    assert_int_equal(ml_snprintf(set + strlen(set), sizeof(set) - strlen(set), "}"), ML_OK);
    t0 = ml_now_ms();
    /* sends start at about 0, 1, 2, 3 s; the 5th would start after 3.5 s of the 6.5 s lease,
     * which cannot cover a 1 s timeout plus the 2 s margin, so it is released */
    assert_int_equal(outbox_run_once(o, NULL), ROWS - 1);
    assert_true(ml_now_ms() - t0 >= 4000);
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_deliveries"
                                 " WHERE id = ANY($1::uuid[]) AND attempts = 0"
                                 " AND status = 'pending' AND next_attempt_at <= now()", 1, v), 1);
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_deliveries"
                                 " WHERE id = ANY($1::uuid[]) AND attempts = 1"
                                 " AND status = 'pending' AND last_status_code IS NULL", 1, v),
                     ROWS - 1);
    q_text(g.db, txt, sizeof(txt), "SELECT min(error) || ' / ' || count(*) FROM webhook_attempts"
                                   " WHERE delivery_id = ANY($1::uuid[])", 1, v);
    assert_contains(txt, "imed out");
    assert_contains(txt, " / 4");
    outbox_free(o);
    exec1(g.db, "UPDATE webhook_deliveries SET status = 'failed' WHERE id = ANY($1::uuid[])", set);
}

typedef struct racer {
    outbox *o;
    pthread_barrier_t *start;
    atomic_bool *stop;
    int delivered;
    int errors;
} racer;

static void *race_thread(void *arg)
{
    racer *r = arg;

    pthread_barrier_wait(r->start);
    while (!atomic_load(r->stop)) {
        int d = 0, n = outbox_run_once(r->o, &d);

        if (n == ML_ERR)
            r->errors++;
        else
            r->delivered += d;
        if (n <= 0)
            ml_sleep_ms(5);
    }
    return NULL;
}

/* Two dispatchers on the same rows: each delivery is sent exactly once. */
static void test_two_dispatchers_race(void **state)
{
    enum { BUILDS = 20 };
    char keys[BUILDS * 2][32], ids[BUILDS * 2][ML_UUID_LEN], url[256], tag[ML_UUID_LEN];
    pthread_barrier_t start;
    atomic_bool stop = false;
    racer rs[2];
    pthread_t th[2];
    int64_t deadline, delivered = 0;
    const char *v[1];
    char like[64];

    ML_UNUSED(state);
    ml_uuid(tag);
    for (int i = 0; i < 2; i++) {
        rs[i] = (racer){ .o = dispatcher(OUTBOX_BUILD_WEBHOOKS, true, quick, ML_ARRAY_LEN(quick),
                                         NULL),
                         .start = &start, .stop = &stop };
        assert_int_equal(outbox_run_once(rs[i].o, NULL), 0); /* connected before the race */
    }
    for (int b = 0; b < BUILDS; b++) {
        fixture f;
        make_build(&f);
        for (int t = 0; t < 2; t++) {
            int k = b * 2 + t;
            ml_snprintf(keys[k], sizeof(keys[k]), "race-%.8s-%d", tag, k);
            ml_snprintf(url, sizeof(url), "http://127.0.0.1:%u/slow/200/%s", (unsigned)g.port,
                        keys[k]);
            add_delivery(&f, t ? "lambda" : "user", "queued", 1, url, ids[k], NULL, 0);
        }
    }
    pthread_barrier_init(&start, NULL, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &rs[i]), 0);
    ml_snprintf(like, sizeof(like), "%%/slow/200/race-%.8s-%%", tag);
    v[0] = like;
    deadline = ml_now_ms() + 20000;
    while (ml_now_ms() < deadline) {
        delivered = q_int(g.db, "SELECT count(*) FROM webhook_deliveries WHERE url LIKE $1"
                                " AND status = 'delivered'", 1, v);
        if (delivered == BUILDS * 2)
            break;
        ml_sleep_ms(20);
    }
    atomic_store(&stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&start);
    assert_int_equal(delivered, BUILDS * 2);
    assert_int_equal(rs[0].errors + rs[1].errors, 0);
    assert_int_equal(rs[0].delivered + rs[1].delivered, BUILDS * 2);
    assert_true(rs[0].delivered > 0 && rs[1].delivered > 0); /* both really took part */
    for (int k = 0; k < BUILDS * 2; k++) {
        rec got[4];
        assert_int_equal(recs_for(keys[k], got, 4), 1);
        assert_string_equal(got[0].id, ids[k]);
    }
    assert_int_equal(q_int(g.db, "SELECT count(*) FROM webhook_attempts a JOIN webhook_deliveries d"
                                 " ON d.id = a.delivery_id WHERE d.url LIKE $1", 1, v), BUILDS * 2);
    assert_int_equal(q_int(g.db, "SELECT max(attempts) FROM webhook_deliveries WHERE url LIKE $1",
                           1, v), 1);
    outbox_free(rs[0].o);
    outbox_free(rs[1].o);
}

/* The pending gauge counts pending rows per target, refreshed at most every interval. */
static void test_backlog_gauge(void **state)
{
    fixture f;
    char id[ML_UUID_LEN], err[256];
    metrics_registry *m = metrics_new();
    outbox_config cfg = { .db_url = g.build_url, .internal_secret = g.internal_secret,
                          .metrics = m, .backlog_refresh_ms = 3600000 };
    outbox *o = outbox_new(&cfg, err, sizeof(err));
    const char *user[] = { "user" }, *lam[] = { "lambda" };
    metric *gauge;
    int64_t want_user, want_lambda;
    ml_buf text = { 0 };

    ML_UNUSED(state);
    assert_non_null(o);
    make_build(&f);
    for (int i = 0; i < 3; i++) {
        static const char *const st[] = { "queued", "building", "completed" };
        add_delivery(&f, "user", st[i], i + 1, "http://127.0.0.1:1/held", id, NULL, 0);
        exec1(g.db, "UPDATE webhook_deliveries SET next_attempt_at = 'infinity' WHERE id = $1", id);
    }
    add_delivery(&f, "lambda", "queued", 1, "http://127.0.0.1:1/held", id, NULL, 0);
    exec1(g.db, "UPDATE webhook_deliveries SET next_attempt_at = 'infinity' WHERE id = $1", id);
    want_user = q_int(g.db, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
                            " AND target = 'user'", 0, NULL);
    want_lambda = q_int(g.db, "SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'"
                              " AND target = 'lambda'", 0, NULL);
    assert_true(want_user >= 3 && want_lambda >= 1);
    assert_int_equal(outbox_run_once(o, NULL), 0);
    gauge = metrics_gauge(m, "minilambda_webhook_outbox_pending", "", "target");
    assert_true(metric_value(gauge, user) == (double)want_user);
    assert_true(metric_value(gauge, lam) == (double)want_lambda);
    assert_int_equal(metrics_render(m, &text), ML_OK);
    assert_contains(ml_buf_cstr(&text), "minilambda_webhook_outbox_pending{target=\"user\"}");
    /* within the refresh interval the cached value stays */
    exec1(g.db, "UPDATE webhook_deliveries SET status = 'failed' WHERE build_id = $1", f.build);
    assert_int_equal(outbox_run_once(o, NULL), 0);
    assert_true(metric_value(gauge, user) == (double)want_user);
    ml_buf_free(&text);
    outbox_free(o);
    metrics_free(m);
}

/* The lambda side's destination_deliveries work the same way (kind as the metric target). */
static void test_destinations(void **state)
{
    char name[40], uid[ML_UUID_LEN], fn[ML_UUID_LEN], inv[ML_UUID_LEN], id[ML_UUID_LEN];
    char url[256], body[256];
    const char *v[5] = { name };
    metrics_registry *m = metrics_new();
    outbox *o;
    rec got[4];
    PGresult *r;

    ML_UNUSED(state);
    ml_uuid(uid);
    ml_snprintf(name, sizeof(name), "dest_%.8s", uid);
    r = q(g.ldb, "INSERT INTO functions (name, runtime, handler) VALUES ($1, 'python3',"
                 " 'main.handler') RETURNING id", 1, v);
    ml_strlcpy(fn, pg_get_text(r, 0, 0), sizeof(fn));
    PQclear(r);
    v[0] = fn;
    r = q(g.ldb, "INSERT INTO invocations (function_id, trigger) VALUES ($1, 'http_async')"
                 " RETURNING id", 1, v);
    ml_strlcpy(inv, pg_get_text(r, 0, 0), sizeof(inv));
    PQclear(r);
    recv_url(url, sizeof(url), "127.0.0.1", "500-200", "dest");
    ml_snprintf(body, sizeof(body), "{\"invocation_id\":\"%s\",\"result\":{\"ok\":true}}", inv);
    v[0] = inv;
    v[1] = fn;
    v[2] = url;
    v[3] = body;
    r = q(g.ldb, "INSERT INTO destination_deliveries (invocation_id, function_id, kind, url,"
                 " payload) VALUES ($1, $2, 'on_success', $3, $4) RETURNING id", 4, v);
    ml_strlcpy(id, pg_get_text(r, 0, 0), sizeof(id));
    PQclear(r);

    o = dispatcher(OUTBOX_DESTINATIONS, true, quick, ML_ARRAY_LEN(quick), m);
    run_until(o, g.ldb, "destination_deliveries", id, "delivered", 5000);
    v[0] = id;
    assert_int_equal(q_int(g.ldb, "SELECT attempts FROM destination_deliveries WHERE id = $1",
                           1, v), 2);
    assert_int_equal(q_int(g.ldb, "SELECT string_agg(status_code::text, '')::bigint FROM"
                                  " (SELECT status_code FROM destination_attempts"
                                  "  WHERE delivery_id = $1 ORDER BY attempt) s", 1, v), 500200);
    assert_int_equal(recs_for("dest", got, 4), 2);
    assert_string_equal(got[1].id, id);
    assert_memory_equal(got[1].body, body, strlen(body));
    assert_true(sig_ok(g.internal_secret, &got[0]));
    assert_true(sig_ok(g.internal_secret, &got[1]));
    {
        const char *ok[] = { "on_success", "delivered" };
        metric *total = total_family(m);
        assert_true(metric_value(total, ok) == 1.0);
    }
    outbox_free(o);
    metrics_free(m);
}

static void expect_bad_config(const outbox_config *cfg, const char *needle)
{
    char err[256] = "";
    outbox *o = outbox_new(cfg, err, sizeof(err));

    if (o) {
        outbox_free(o);
        fail_msg("config accepted, expected '%s'", needle);
    }
    assert_contains(err, needle);
}

static void test_config_validation(void **state)
{
    static const double neg[] = { 1, -1 };
    outbox_config base = { .db_url = g.build_url, .internal_secret = g.internal_secret };
    outbox_config c;
    char err[256];
    outbox *o;

    ML_UNUSED(state);
    expect_bad_config(NULL, "db_url");
    c = base, c.db_url = "";
    expect_bad_config(&c, "db_url");
    c = base, c.kind = (outbox_kind)7;
    expect_bad_config(&c, "kind");
    c = base, c.internal_secret = NULL;
    expect_bad_config(&c, "internal_secret");
    c = base, c.internal_secret = "whsec_short";
    expect_bad_config(&c, "internal_secret");
    c = base, c.batch = 101;
    expect_bad_config(&c, "batch");
    c = base, c.timeout_ms = -5;
    expect_bad_config(&c, "timeout_ms");
    c = base, c.timeout_ms = 10000, c.lease_ms = 12000;
    expect_bad_config(&c, "lease_ms");
    c = base, c.schedule_s = neg, c.schedule_len = 2;
    expect_bad_config(&c, "schedule_s[1]");
    c = base, c.schedule_s = neg, c.schedule_len = 0;
    expect_bad_config(&c, "schedule_len");
    c = base, c.worker_id = "";
    expect_bad_config(&c, "worker_id");

    c = base, c.worker_id = "bw-1:thread-2";
    o = outbox_new(&c, err, sizeof(err));
    assert_non_null(o);
    assert_string_equal(outbox_worker_id(o), "bw-1:thread-2");
    outbox_free(o);
    o = outbox_new(&base, err, sizeof(err));
    assert_non_null(o);
    assert_true(strlen(outbox_worker_id(o)) > 10); /* host:pid:random */
    outbox_free(o);
    /* the default schedule: 8 retries over about a day */
    assert_int_equal(outbox_default_schedule_len, 8);
    double total = 0;
    for (size_t i = 0; i < outbox_default_schedule_len; i++)
        total += outbox_default_schedule[i];
    assert_true(total > 20 * 3600 && total < 26 * 3600);
}

/* A database that is down: run_once reports it, with the reason. */
static void test_database_down(void **state)
{
    char err[256];
    outbox_config c = { .db_url = "postgresql://postgres@127.0.0.1:1/nothing?connect_timeout=2",
                        .internal_secret = g.internal_secret };
    outbox *o = outbox_new(&c, err, sizeof(err));

    ML_UNUSED(state);
    assert_non_null(o);
    assert_int_equal(outbox_run_once(o, NULL), ML_ERR);
    assert_contains(outbox_error(o), "claiming due deliveries");
    outbox_free(o);
}

/* ---- setup ---- */

static int setup(void **state)
{
    const char *admin_url = getenv("MINILAMBDA_BUILD_DB_URL");
    httpd_config hc = { .service = "receiver", .bind_addr = "127.0.0.1", .workers = 8 };
    char err[256] = "";
    pg_conn *admin;

    ML_UNUSED(state);
    if (!admin_url || !*admin_url) {
        fprintf(stderr, "MINILAMBDA_BUILD_DB_URL is not set (source the stack's stack.env)\n");
        return -1;
    }
    ml_log_init("test_dispatch", ML_LOG_ERROR);
    if (httpc_global_init() != ML_OK)
        return -1;
    new_secret(g.internal_secret, sizeof(g.internal_secret));
    admin = pg_new(admin_url, NULL);
    if (!admin || pg_connect(admin) != ML_OK) {
        fprintf(stderr, "cannot connect to %s: %s\n", admin_url, admin ? pg_error(admin) : "");
        pg_close(admin);
        return -1;
    }
    g.db = scratch_db(admin, admin_url, "build", g.build_db, sizeof(g.build_db), g.build_url,
                      sizeof(g.build_url));
    g.ldb = scratch_db(admin, admin_url, "lambda", g.lambda_db, sizeof(g.lambda_db),
                       g.lambda_url, sizeof(g.lambda_url));
    pg_close(admin);
    g.recv = httpd_start(&hc, routes, ML_ARRAY_LEN(routes), err, sizeof(err));
    if (!g.recv) {
        fprintf(stderr, "receiver: %s\n", err);
        return -1;
    }
    g.port = httpd_port(g.recv);
    return 0;
}

static int teardown(void **state)
{
    const char *admin_url = getenv("MINILAMBDA_BUILD_DB_URL");
    pg_conn *admin = pg_new(admin_url, NULL);
    char sql[160];

    ML_UNUSED(state);
    httpd_stop(g.recv);
    pg_close(g.db);
    pg_close(g.ldb);
    const char *dbs[] = { g.build_db, g.lambda_db };
    for (size_t i = 0; i < ML_ARRAY_LEN(dbs); i++) {
        if (!dbs[i][0])
            continue;
        ml_snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbs[i]);
        if (pg_exec_script(admin, sql) != ML_OK)
            fprintf(stderr, "%s: %s\n", sql, pg_error(admin));
    }
    pg_close(admin);
    httpc_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_then_delivered),
        cmocka_unit_test(test_lambda_target_internal_secret),
        cmocka_unit_test(test_order_per_build),
        cmocka_unit_test(test_410_stops),
        cmocka_unit_test(test_schedule_exhausted),
        cmocka_unit_test(test_transport_error_retried),
        cmocka_unit_test(test_ssrf_blocked),
        cmocka_unit_test(test_lease_expiry),
        cmocka_unit_test(test_dead_owner_taken_over),
        cmocka_unit_test(test_stop_releases),
        cmocka_unit_test(test_timeout_and_lease_guard),
        cmocka_unit_test(test_two_dispatchers_race),
        cmocka_unit_test(test_backlog_gauge),
        cmocka_unit_test(test_destinations),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_database_down),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
