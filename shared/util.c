/* util.c — clocks, bounded strings, integer parsing, UUIDs. */
#include "ml.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <uuid.h>

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ml_now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
int64_t ml_wall_ms(void) { return clock_ms(CLOCK_REALTIME); }

int ml_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long v;

    /* strtoll would also take leading blanks and '+': a config value or header is exact */
    if (!s || !(*s == '-' || (*s >= '0' && *s <= '9')))
        return ML_ERR;
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return ML_ERR;
    *out = (int64_t)v;
    return ML_OK;
}

int ml_strlcpy(char *dst, const char *src, size_t size)
{
    size_t n = strlen(src);

    if (size == 0)
        return ML_ERR;
    if (n >= size) {
        memcpy(dst, src, size - 1);
        dst[size - 1] = '\0';
        return ML_ERR;
    }
    memcpy(dst, src, n + 1);
    return ML_OK;
}

int ml_vsnprintf(char *dst, size_t size, const char *fmt, va_list ap)
{
    int n = vsnprintf(dst, size, fmt, ap);

    return (n < 0 || (size_t)n >= size) ? ML_ERR : ML_OK;
}

int ml_snprintf(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = ml_vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    return rc;
}

/* Formats into dst, truncating silently; for messages only. */
void ml_vsnprintf_trunc(char *dst, size_t size, const char *fmt, va_list ap)
{
    if (size)
        vsnprintf(dst, size, fmt, ap);
}

/* Formats into dst, truncating silently; for messages only. */
void ml_snprintf_trunc(char *dst, size_t size, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    ml_vsnprintf_trunc(dst, size, fmt, ap);
    va_end(ap);
}

/* Random bytes for UUIDs come from a small per-thread pool of getrandom() output: libuuid's
 * uuid_generate_random costs six system calls per id, which showed on every request's
 * X-Request-Id. A forked child drops its copy of the pool so no id is ever issued twice. */
#define UUID_POOL_BYTES 256
static _Thread_local unsigned char uuid_pool[UUID_POOL_BYTES];
static _Thread_local size_t uuid_pool_left;
static pthread_once_t uuid_once = PTHREAD_ONCE_INIT;

static void uuid_pool_forget(void)
{
    uuid_pool_left = 0;
}

static void uuid_pool_register(void)
{
    pthread_atfork(NULL, NULL, uuid_pool_forget);
}

void ml_uuid(char out[ML_UUID_LEN])
{
    uuid_t u;

    pthread_once(&uuid_once, uuid_pool_register);
    if (uuid_pool_left < sizeof(u)) {
        if (getrandom(uuid_pool, sizeof(uuid_pool), 0) != (ssize_t)sizeof(uuid_pool)) {
            uuid_generate_random(u);
            uuid_unparse_lower(u, out);
            return;
        }
        uuid_pool_left = sizeof(uuid_pool);
    }
    uuid_pool_left -= sizeof(u);
    memcpy(u, uuid_pool + uuid_pool_left, sizeof(u));
    memset(uuid_pool + uuid_pool_left, 0, sizeof(u));
    u[6] = (unsigned char)((u[6] & 0x0f) | 0x40); /* version 4 */
    u[8] = (unsigned char)((u[8] & 0x3f) | 0x80); /* RFC 4122 variant */
    uuid_unparse_lower(u, out);
}

int ml_uuid_valid(const char *s)
{
    uuid_t u;

    if (!s || strlen(s) != 36)
        return ML_ERR;
    return uuid_parse(s, u) == 0 ? ML_OK : ML_ERR;
}

int ml_cursor_parse(const char *cursor, char us[24], char id[ML_UUID_LEN])
{
    const char *dot = cursor ? strchr(cursor, '.') : NULL;
    int64_t v;

    if (!dot || (size_t)(dot - cursor) >= 24 || ml_uuid_valid(dot + 1) != ML_OK)
        return ML_ERR;
    memcpy(us, cursor, (size_t)(dot - cursor));
    us[dot - cursor] = '\0';
    if (ml_parse_int64(us, 0, INT64_MAX, &v) != ML_OK)
        return ML_ERR;
    return ml_strlcpy(id, dot + 1, ML_UUID_LEN);
}

void ml_sleep_ms(int64_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000 };

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    return (flag == FTW_DP || flag == FTW_DNR) ? rmdir(path) : unlink(path);
}

int ml_rmtree(const char *dir)
{
    struct stat st;

    if (lstat(dir, &st) != 0)
        return errno == ENOENT ? ML_OK : ML_ERR;
    /* FTW_PHYS: never follow a link out of the tree; FTW_MOUNT: never cross into a mount */
    return nftw(dir, rm_entry, 16, FTW_PHYS | FTW_DEPTH | FTW_MOUNT) == 0 ? ML_OK : ML_ERR;
}
