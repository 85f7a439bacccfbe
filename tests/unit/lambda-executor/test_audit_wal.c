/* Unit tests for the audit write-ahead log without a server (Postgres unreachable, so
 * nothing is written out and every row stays in the log): the record framing and CRC, the
 * reader at torn tails, corrupt records and limits, replay counting at start, the checkpoint
 * (resume point, damaged = replay everything, segments behind it deleted), segment rolls,
 * the lock, the fsync switch, and what happens when the disk refuses an append. */
#include <cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "audit.h"
#include "log.h"

/* nothing listens on port 1: every connection attempt is refused at once */
#define DEAD_DB "postgresql://postgres@127.0.0.1:1/lambda_service_db?connect_timeout=1"

typedef struct tmp {
    char dir[64], base[128];
} tmp;

static void tmp_make(tmp *t)
{
    ml_strlcpy(t->dir, "/tmp/test_audit_wal_XXXXXX", sizeof(t->dir));
    assert_non_null(mkdtemp(t->dir));
    assert_int_equal(ml_snprintf(t->base, sizeof(t->base), "%s/audit.spill", t->dir), ML_OK);
}

static void tmp_free(tmp *t)
{
    assert_int_equal(ml_rmtree(t->dir), ML_OK);
}

static void append_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "a");

    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
}

static void append_record(const char *path, const char *payload)
{
    unsigned char hdr[AUDIT_WAL_HDR];

    audit_wal_header(payload, strlen(payload), hdr);
    append_file(path, hdr, sizeof(hdr));
    append_file(path, payload, strlen(payload));
}

/* ---- format ---- */

static void test_crc_and_parse(void **state)
{
    unsigned char buf[64], hdr[AUDIT_WAL_HDR];
    const unsigned char *p;
    size_t n, used;

    (void)state;
    assert_int_equal(audit_crc32c(0, "123456789", 9), 0xe3069283u); /* the CRC-32C check value */
    assert_int_equal(audit_crc32c(audit_crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
    audit_wal_header("hello", 5, hdr);
    memcpy(buf, hdr, sizeof(hdr));
    memcpy(buf + 8, "hello", 5);
    assert_int_equal(audit_wal_parse(buf, 13, &p, &n, &used), AUDIT_WAL_OK);
    assert_int_equal(n, 5);
    assert_int_equal(used, 13);
    assert_memory_equal(p, "hello", 5);
    /* every cut short of the whole record is SHORT, never a record */
    for (size_t cut = 0; cut < 13; cut++)
        assert_int_equal(audit_wal_parse(buf, cut, &p, &n, &used), AUDIT_WAL_SHORT);
    /* a flipped bit anywhere in the length or payload is caught by the CRC */
    for (size_t bit = 0; bit < 13 * 8; bit++) {
        if (bit / 8 >= 4 && bit / 8 < 8)
            continue; /* the CRC bytes themselves: checked below */
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
        assert_int_not_equal(audit_wal_parse(buf, 13, &p, &n, &used), AUDIT_WAL_OK);
        buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
    }
    buf[6] ^= 1;
    assert_int_equal(audit_wal_parse(buf, 13, &p, &n, &used), AUDIT_WAL_BAD);
    buf[6] ^= 1;
    /* zeros (a tail extended but never written) and oversized lengths are corrupt at once */
    memset(buf, 0, 16);
    assert_int_equal(audit_wal_parse(buf, 16, &p, &n, &used), AUDIT_WAL_BAD);
    buf[3] = 0x7f;
    assert_int_equal(audit_wal_parse(buf, 16, &p, &n, &used), AUDIT_WAL_BAD);
}

static void test_reader(void **state)
{
    tmp t;
    char path[160], err[256];
    size_t starts[8], lens[8], rows;
    uint64_t off = AUDIT_WAL_MAGIC_LEN, end3;
    ml_buf arena = { 0 };
    struct stat st;
    int fd;

    (void)state;
    tmp_make(&t);
    ml_snprintf(path, sizeof(path), "%s/seg", t.dir);
    append_file(path, AUDIT_WAL_MAGIC, AUDIT_WAL_MAGIC_LEN);
    append_record(path, "{\"a\":1}");
    append_record(path, "{\"b\":2}");
    append_record(path, "{\"c\":3}");
    assert_int_equal(stat(path, &st), 0);
    end3 = (uint64_t)st.st_size;
    append_file(path, "\x20\x00\x00\x00\x01\x02", 6); /* a torn header + 2 bytes */
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    /* max_rows stops early; the offset is after the last record read */
    assert_int_equal(audit_wal_read(fd, &off, UINT64_MAX, 2, &arena, starts, lens, &rows, err, sizeof(err)),
                     AUDIT_WAL_OK);
    assert_int_equal(rows, 2);
    assert_memory_equal(arena.data + starts[1], "{\"b\":2}", lens[1]);
    /* then the third record and the torn tail */
    ml_buf_reset(&arena);
    assert_int_equal(audit_wal_read(fd, &off, UINT64_MAX, 8, &arena, starts, lens, &rows, err, sizeof(err)),
                     AUDIT_WAL_SHORT);
    assert_int_equal(rows, 1);
    assert_memory_equal(arena.data + starts[0], "{\"c\":3}", lens[0]);
    assert_int_equal(off, end3);
    /* a limit at a record boundary ends cleanly there */
    off = AUDIT_WAL_MAGIC_LEN;
    assert_int_equal(audit_wal_read(fd, &off, end3, 8, NULL, NULL, NULL, &rows, err, sizeof(err)), AUDIT_WAL_OK);
    assert_int_equal(rows, 3);
    close(fd);
    /* a corrupt record in the middle: the records before it, then BAD, nothing after */
    unlink(path);
    append_file(path, AUDIT_WAL_MAGIC, AUDIT_WAL_MAGIC_LEN);
    append_record(path, "{\"a\":1}");
    append_file(path, "\x05\x00\x00\x00\x00\x00\x00\x00hello", 13);
    append_record(path, "{\"c\":3}");
    fd = open(path, O_RDONLY);
    off = AUDIT_WAL_MAGIC_LEN;
    assert_int_equal(audit_wal_read(fd, &off, UINT64_MAX, 8, NULL, NULL, NULL, &rows, err, sizeof(err)),
                     AUDIT_WAL_BAD);
    assert_int_equal(rows, 1);
    assert_int_equal(off, AUDIT_WAL_MAGIC_LEN + 8 + 7);
    close(fd);
    ml_buf_free(&arena);
    tmp_free(&t);
}

/* ---- the log with Postgres down ---- */

static pg_conn *no_db(void *ud)
{
    (void)ud;
    return NULL;
}

static audit_config dead_config(const char *base)
{
    audit_config c = { 0 };

    c.spill_path = base;
    c.fsync = "off";
    c.spill_max_mb = 64;
    c.batch_rows = 5;
    c.flush_ms = 1;
    c.db_url = DEAD_DB;
    c.thread_db = no_db;
    return c;
}

static void svc_fake(svc *s)
{
    memset(s, 0, sizeof(*s));
    s->metrics = metrics_new();
    assert_non_null(s->metrics);
}

static audit_record sample(int i, char id[ML_UUID_LEN])
{
    audit_record r = { 0 };

    ml_snprintf(id, ML_UUID_LEN, "00000000-0000-4000-8000-%012d", i);
    ml_strlcpy(r.id, id, sizeof(r.id));
    ml_strlcpy(r.function_id, "6f1c2d9e-0b7a-4c55-9a51-3a3b8d2c1e0f", sizeof(r.function_id));
    r.version = 1;
    r.status = AUDIT_SUCCEEDED;
    r.attempts = 1;
    r.cold_start = 0;
    r.response_size = r.duration_ms = r.memory_used_mb = -1;
    return r;
}

static audit *start(const audit_config *c, svc *s)
{
    char err[256];
    audit *a;

    svc_fake(s);
    a = audit_start(c, s, err, sizeof(err));
    if (!a)
        fail_msg("audit_start: %s", err);
    return a;
}

static void stop(audit *a, svc *s)
{
    audit_stop(a);
    metrics_free(s->metrics);
}

static void submit_range(audit *a, int from, int to)
{
    char id[ML_UUID_LEN];

    for (int i = from; i < to; i++) {
        audit_record r = sample(i, id);
        assert_int_equal(audit_submit(a, &r), ML_OK);
    }
}

/* The log's size as its gauge says, and as the disk says. */
static void check_bytes(const tmp *t, svc *s)
{
    ml_buf out = { 0 };
    DIR *d = opendir(t->dir);
    double disk = 0;

    assert_int_equal(metrics_render(s->metrics, &out), ML_OK);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        char path[300];
        struct stat st;
        if (!strstr(e->d_name, ".wal"))
            continue;
        ml_snprintf(path, sizeof(path), "%s/%s", t->dir, e->d_name);
        assert_int_equal(stat(path, &st), 0);
        disk += (double)st.st_size;
    }
    closedir(d);
    assert_true(metric_value(metrics_gauge(s->metrics, "minilambda_audit_spill_bytes", "", NULL), NULL) == disk);
    ml_buf_free(&out);
}

/* Segment numbers on disk, ascending (at most max). */
static size_t segments(const tmp *t, uint64_t *out, size_t max)
{
    DIR *d = opendir(t->dir);
    size_t n = 0;

    assert_non_null(d);
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        unsigned long long v;
        int end = 0;
        if (n < max && sscanf(e->d_name, "audit.spill.%16llx%n", &v, &end) == 1 && end == 28 &&
            strcmp(e->d_name + end, ".wal") == 0)
            out[n++] = v;
    }
    closedir(d);
    for (size_t i = 1; i < n; i++) /* insertion sort */
        for (size_t j = i; j > 0 && out[j - 1] > out[j]; j--) {
            uint64_t x = out[j];
            out[j] = out[j - 1], out[j - 1] = x;
        }
    return n;
}

/* The ids of every record of the log's segments, in order. */
static size_t read_ids(const tmp *t, char ids[][ML_UUID_LEN], size_t max)
{
    uint64_t segs[64];
    size_t ns = segments(t, segs, 64), total = 0;
    char err[256];

    for (size_t i = 0; i < ns; i++) {
        char path[200];
        size_t starts[256], lens[256], rows;
        uint64_t off = AUDIT_WAL_MAGIC_LEN;
        ml_buf arena = { 0 };
        int fd;

        ml_snprintf(path, sizeof(path), "%s.%016" PRIx64 ".wal", t->base, segs[i]);
        assert_true((fd = open(path, O_RDONLY)) >= 0);
        audit_wal_read(fd, &off, UINT64_MAX, 256, &arena, starts, lens, &rows, err, sizeof(err));
        for (size_t k = 0; k < rows && total < max; k++) {
            cJSON *o = cJSON_ParseWithLength(arena.data + starts[k], lens[k]);
            assert_non_null(o);
            ml_strlcpy(ids[total++], cJSON_GetObjectItem(o, "id")->valuestring, ML_UUID_LEN);
            cJSON_Delete(o);
        }
        ml_buf_free(&arena);
        close(fd);
    }
    return total;
}

static void test_replay_after_crash(void **state)
{
    tmp t;
    audit_config c;
    svc s, s2;
    audit *a;
    char err[256], id[ML_UUID_LEN], ids[64][ML_UUID_LEN], path[200];
    uint64_t segs[8];
    int64_t t0;

    (void)state;
    tmp_make(&t);
    c = dead_config(t.base);
    a = start(&c, &s);
    /* the log is locked: a second process on it is refused with a clear reason */
    svc_fake(&s2);
    assert_null(audit_start(&c, &s2, err, sizeof(err)));
    assert_non_null(strstr(err, "in use by another process"));
    metrics_free(s2.metrics);
    submit_range(a, 0, 50);
    assert_int_equal(audit_backlog(a), 50);
    /* every row is in the log the moment audit_submit returns, in submission order */
    assert_int_equal(read_ids(&t, ids, 64), 50);
    for (int i = 0; i < 50; i++) {
        sample(i, id);
        assert_string_equal(ids[i], id);
    }
    /* Postgres is down: a read-your-writes flush fails, and once the writer knows it is
     * down, gives up at once */
    assert_int_equal(audit_flush(a, 10000), ML_ERR);
    t0 = ml_now_ms();
    assert_int_equal(audit_flush(a, 10000), ML_ERR);
    assert_true(ml_now_ms() - t0 < 1000);
    stop(a, &s);
    /* a crash mid-append leaves a torn record: the next start counts the 50 before it and
     * appends to a new segment */
    assert_int_equal(segments(&t, segs, 8), 1);
    ml_snprintf(path, sizeof(path), "%s.%016" PRIx64 ".wal", t.base, segs[0]);
    append_file(path, "\x40\x00\x00\x00\x99\x99", 6);
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 50);
    submit_range(a, 50, 53);
    assert_int_equal(audit_backlog(a), 53);
    stop(a, &s);
    assert_int_equal(segments(&t, segs, 8), 2);
    assert_int_equal(read_ids(&t, ids, 64), 53);
    tmp_free(&t);
}

static void write_checkpoint(const tmp *t, uint64_t seg, uint64_t off, bool damage)
{
    unsigned char b[28];
    char path[200];
    uint32_t crc;
    FILE *f;

    memcpy(b, "MLCKPT1\n", 8);
    for (int i = 0; i < 8; i++) {
        b[8 + i] = (unsigned char)(seg >> (8 * i));
        b[16 + i] = (unsigned char)(off >> (8 * i));
    }
    crc = audit_crc32c(0, b, 24) ^ (damage ? 1u : 0u);
    for (int i = 0; i < 4; i++)
        b[24 + i] = (unsigned char)(crc >> (8 * i));
    ml_snprintf(path, sizeof(path), "%s.ckpt", t->base);
    assert_non_null(f = fopen(path, "w"));
    assert_int_equal(fwrite(b, 1, sizeof(b), f), sizeof(b));
    fclose(f);
}

/* Segments roll at segment_bytes; the start resumes at the checkpoint, deletes the segments
 * wholly behind it, and replays everything when the checkpoint is damaged. */
static void test_checkpoint_and_segments(void **state)
{
    tmp t;
    audit_config c;
    svc s;
    audit *a;
    char ids[128][ML_UUID_LEN], id[ML_UUID_LEN];
    uint64_t segs[64];
    size_t ns, per_seg;
    uint64_t rec = 0;

    (void)state;
    tmp_make(&t);
    c = dead_config(t.base);
    c.segment_bytes = 2048;
    a = start(&c, &s);
    submit_range(a, 0, 40);
    check_bytes(&t, &s);
    stop(a, &s);
    ns = segments(&t, segs, 64);
    assert_true(ns >= 4); /* 40 records of ~300 bytes in 2 KiB segments */
    assert_int_equal(read_ids(&t, ids, 128), 40);
    {   /* the records per full segment, and one record's size, from the first segment */
        char path[200], err[256];
        uint64_t off = AUDIT_WAL_MAGIC_LEN;
        int fd;
        ml_snprintf(path, sizeof(path), "%s.%016" PRIx64 ".wal", t.base, segs[0]);
        fd = open(path, O_RDONLY);
        audit_wal_read(fd, &off, UINT64_MAX, 1, NULL, NULL, NULL, &per_seg, err, sizeof(err));
        rec = off - AUDIT_WAL_MAGIC_LEN;
        off = AUDIT_WAL_MAGIC_LEN;
        audit_wal_read(fd, &off, UINT64_MAX, SIZE_MAX, NULL, NULL, NULL, &per_seg, err, sizeof(err));
        close(fd);
    }
    /* a checkpoint after the 2nd record of the 2nd segment: the first segment goes, the
     * backlog is everything after it */
    write_checkpoint(&t, segs[1], AUDIT_WAL_MAGIC_LEN + 2 * rec, false);
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 40 - (int64_t)per_seg - 2);
    check_bytes(&t, &s);
    stop(a, &s);
    assert_int_equal(segments(&t, segs, 64), ns); /* one gone, one new (empty) */
    assert_int_equal(read_ids(&t, ids, 128), 40 - per_seg);
    sample((int)per_seg, id);
    assert_string_equal(ids[0], id);
    /* a damaged checkpoint: replay all that is on disk (the upsert makes it harmless) */
    write_checkpoint(&t, segs[ns - 1], AUDIT_WAL_MAGIC_LEN, true);
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 40 - (int64_t)per_seg);
    stop(a, &s);
    tmp_free(&t);
}

/* fsync=always and batch work; a bad value is refused at start. */
static void test_fsync_modes(void **state)
{
    tmp t;
    audit_config c;
    svc s;
    audit *a;
    char err[256];

    (void)state;
    tmp_make(&t);
    c = dead_config(t.base);
    c.fsync = "sometimes";
    svc_fake(&s);
    assert_null(audit_start(&c, &s, err, sizeof(err)));
    assert_non_null(strstr(err, "MINILAMBDA_AUDIT_FSYNC"));
    metrics_free(s.metrics);
    c.fsync = "always";
    a = start(&c, &s);
    submit_range(a, 0, 20);
    assert_int_equal(audit_backlog(a), 20);
    stop(a, &s);
    c.fsync = "batch";
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 20);
    submit_range(a, 20, 30);
    stop(a, &s);
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 30);
    stop(a, &s);
    tmp_free(&t);
}

/* Over its size the log still takes rows but says "unavailable"; when the disk refuses an
 * append, audit_submit fails (counted), the segment keeps only whole records, and it
 * recovers once the disk takes writes again. */
static void test_disk_full(void **state)
{
    tmp t;
    audit_config c;
    svc s;
    audit *a;
    char id[ML_UUID_LEN], ids[16][ML_UUID_LEN];
    char *big = malloc(700 * 1024);
    struct rlimit old, lim;
    const char *overflow[] = { "overflow" };
    metric *errors;
    audit_record r;

    (void)state;
    tmp_make(&t);
    c = dead_config(t.base);
    c.spill_max_mb = 1;
    a = start(&c, &s);
    assert_true(audit_available(a));
    memset(big, 'x', 700 * 1024);
    for (int i = 0; i < 2; i++) {
        r = sample(i, id);
        r.result = big;
        r.result_len = 700 * 1024;
        assert_int_equal(audit_submit(a, &r), ML_OK); /* a served invocation's row is kept */
    }
    assert_false(audit_available(a));
    stop(a, &s);
    /* the disk refuses: RLIMIT_FSIZE makes write(2) fail with EFBIG past 2 MiB */
    c.spill_max_mb = 64;
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 2);
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 2u << 20;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    int refused = 0;
    for (int i = 2; i < 8; i++) {
        r = sample(i, id);
        r.result = big;
        r.result_len = 700 * 1024;
        refused += audit_submit(a, &r) != ML_OK;
    }
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_true(refused >= 4);
    assert_false(audit_available(a));
    errors = metrics_counter(s.metrics, "minilambda_audit_write_errors_total", "", "kind");
    assert_true(metric_value(errors, overflow) == refused);
    assert_int_equal(audit_backlog(a), 2 + 6 - refused);
    ml_sleep_ms(1100);
    assert_true(audit_available(a));
    r = sample(9, id);
    assert_int_equal(audit_submit(a, &r), ML_OK);
    stop(a, &s);
    /* only whole records: the next start counts exactly the accepted ones */
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 2 + 6 - refused + 1);
    stop(a, &s);
    assert_int_equal(read_ids(&t, ids, 16), 2 + 6 - refused + 1);
    free(big);
    tmp_free(&t);
}

/* An executor from before the log left its spill file (JSON lines, a torn last one): the
 * next start moves the whole lines into the log and removes the file. */
static void test_legacy_spill_import(void **state)
{
    tmp t;
    audit_config c;
    svc s;
    audit *a;
    char ids[8][ML_UUID_LEN];
    const char old[] = "{\"id\":\"00000000-0000-4000-8000-000000000001\",\"status\":\"succeeded\"}\n"
                       "{\"id\":\"00000000-0000-4000-8000-000000000002\",\"status\":\"failed\"}\n"
                       "{\"id\":\"00000000-00";
    struct stat st;

    (void)state;
    tmp_make(&t);
    append_file(t.base, old, sizeof(old) - 1);
    c = dead_config(t.base);
    a = start(&c, &s);
    assert_int_equal(audit_backlog(a), 2);
    assert_int_not_equal(stat(t.base, &st), 0); /* gone */
    stop(a, &s);
    assert_int_equal(read_ids(&t, ids, 8), 2);
    assert_string_equal(ids[1], "00000000-0000-4000-8000-000000000002");
    a = start(&c, &s); /* imported once: still 2 */
    assert_int_equal(audit_backlog(a), 2);
    stop(a, &s);
    tmp_free(&t);
}

typedef struct submitter {
    audit *a;
    int from, to;
} submitter;

static void *submit_thread(void *arg)
{
    submitter *j = arg;

    submit_range(j->a, j->from, j->to);
    return NULL;
}

/* Four threads appending at once, with the group fdatasync (always) and the batch one: every
 * record lands whole, exactly once, across segment rolls. */
static void test_concurrent_submit(void **state)
{
    static char ids[1000][ML_UUID_LEN];
    const char *modes[] = { "always", "batch" };
    tmp t;

    (void)state;
    for (size_t m = 0; m < 2; m++) {
        audit_config c;
        pthread_t th[4];
        submitter jobs[4];
        svc s;
        audit *a;
        bool seen[800] = { false };
        size_t n;

        tmp_make(&t);
        c = dead_config(t.base);
        c.fsync = modes[m];
        c.segment_bytes = 16384;
        a = start(&c, &s);
        for (int i = 0; i < 4; i++) {
            jobs[i] = (submitter){ a, i * 200, (i + 1) * 200 };
            assert_int_equal(pthread_create(&th[i], NULL, submit_thread, &jobs[i]), 0);
        }
        for (int i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
        assert_int_equal(audit_backlog(a), 800);
        stop(a, &s);
        a = start(&c, &s);
        assert_int_equal(audit_backlog(a), 800);
        stop(a, &s);
        n = read_ids(&t, ids, 1000);
        assert_int_equal(n, 800);
        for (size_t i = 0; i < n; i++) {
            long k = strtol(ids[i] + 24, NULL, 10);
            assert_false(seen[k]);
            seen[k] = true;
        }
        tmp_free(&t);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc_and_parse),
        cmocka_unit_test(test_reader),
        cmocka_unit_test(test_replay_after_crash),
        cmocka_unit_test(test_checkpoint_and_segments),
        cmocka_unit_test(test_fsync_modes),
        cmocka_unit_test(test_disk_full),
        cmocka_unit_test(test_concurrent_submit),
        cmocka_unit_test(test_legacy_spill_import),
    };
    int fd = open("/dev/null", O_WRONLY);

    ml_log_set_fd(fd); /* the writer's warnings are expected here */
    return cmocka_run_group_tests(tests, NULL, NULL);
}
