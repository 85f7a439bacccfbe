/* log.h — JSON-lines logging to stdout: {"ts","level","service","msg","request_id",...extra}. */
#ifndef ML_LOG_H
#define ML_LOG_H

#include "ml.h"

typedef enum { ML_LOG_DEBUG = 0, ML_LOG_INFO, ML_LOG_WARN, ML_LOG_ERROR } ml_log_level;

/* service is copied. Lines below min_level are dropped. */
void ml_log_init(const char *service, ml_log_level min_level);
/* Parses "debug|info|warn|error"; ML_ERR on anything else. */
int ml_log_parse_level(const char *s, ml_log_level *out);

/* The calling thread's current request id (NULL clears); copied into thread-local storage,
 * so every line logged by this thread carries it until cleared. */
void ml_log_set_request_id(const char *request_id);
const char *ml_log_request_id(void);

/* Formatted message, no extra fields. */
void ml_log(ml_log_level level, const char *fmt, ...) ML_PRINTF(2, 3);
/* Message plus extra string fields given as key, value pairs ending with NULL:
 *   ml_log_kv(ML_LOG_INFO, "build queued", "build_id", id, "function_id", fid, NULL); */
void ml_log_kv(ml_log_level level, const char *msg, ...) __attribute__((sentinel));

#define ml_log_debug(...) ml_log(ML_LOG_DEBUG, __VA_ARGS__)
#define ml_log_info(...) ml_log(ML_LOG_INFO, __VA_ARGS__)
#define ml_log_warn(...) ml_log(ML_LOG_WARN, __VA_ARGS__)
#define ml_log_error(...) ml_log(ML_LOG_ERROR, __VA_ARGS__)

/* Test hook: write lines to this fd instead of stdout (-1 restores stdout). */
void ml_log_set_fd(int fd);

#endif
