/* ml.h — the few definitions every minilambda module shares. Kept small on purpose. */
#ifndef ML_H
#define ML_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define ML_OK 0
#define ML_ERR (-1)

#define ML_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define ML_UNUSED(x) ((void)(x))

/* printf-style attribute so -Wformat checks our variadic helpers. */
#define ML_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))

/* Monotonic and wall clocks in milliseconds. */
int64_t ml_now_ms(void);
int64_t ml_wall_ms(void);

/* Parse a whole base-10 integer in [min,max]; ML_OK or ML_ERR (never atoi). */
int ml_parse_int64(const char *s, int64_t min, int64_t max, int64_t *out);

/* Bounded copy that always NUL-terminates; returns ML_ERR if truncated. */
int ml_strlcpy(char *dst, const char *src, size_t size);

/* Bounded formatted write; returns ML_ERR if the output was truncated. */
int ml_snprintf(char *dst, size_t size, const char *fmt, ...) ML_PRINTF(3, 4);
int ml_vsnprintf(char *dst, size_t size, const char *fmt, va_list ap) ML_PRINTF(3, 0);
/* Formats into dst, truncating silently; for messages only (logs, errors, labels). Anything
 * whose meaning a cut would change (paths, keys, URLs, SQL parameters, headers) uses
 * ml_snprintf and checks it: `make lint` rejects an ml_snprintf whose result is dropped. */
void ml_snprintf_trunc(char *dst, size_t size, const char *fmt, ...) ML_PRINTF(3, 4);
void ml_vsnprintf_trunc(char *dst, size_t size, const char *fmt, va_list ap) ML_PRINTF(3, 0);

/* New random UUID v4 as 36 lower-case chars + NUL. */
#define ML_UUID_LEN 37
void ml_uuid(char out[ML_UUID_LEN]);
/* ML_OK if s is a canonical UUID string. */
int ml_uuid_valid(const char *s);
/* A list page cursor "<microseconds>.<uuid>": ML_OK with the number's digits in us and the
 * uuid in id, ML_ERR for anything else (a client's cursor is untrusted input). */
int ml_cursor_parse(const char *cursor, char us[24], char id[ML_UUID_LEN]);

/* Removes dir and everything below it without following symlinks or crossing mounts;
 * a missing dir is ML_OK. */
int ml_rmtree(const char *dir);

/* Milliseconds of sleep that honour EINTR. */
void ml_sleep_ms(int64_t ms);

#endif
