/* redis.h — synchronous Redis client over hiredis 0.14 (prefix rds_; hiredis owns redis*).
 *
 * One rds_conn per thread: hiredis contexts are not thread-safe, and an rds_conn holds its
 * hiredis context plus its last error. Give every thread its own rds_conn.
 *
 * Failure model: after any transport error (refused, reset, timeout, protocol error) the
 * hiredis context is dead — a timed-out command's late reply would otherwise be read as the
 * answer to the next command. The context is freed and the next call reconnects lazily.
 * The first reconnect after losing an established connection is immediate; failed connect
 * attempts back off exponentially (RDS_BACKOFF_MIN_MS..RDS_BACKOFF_MAX_MS), and calls made
 * during the backoff fail at once without touching the network. Each (re)connect re-applies
 * the command timeout, AUTH and SELECT.
 *
 * Commands are always sent with argv + length arrays: no format string is ever built from
 * data, so values are binary-safe and may contain '%' or NUL bytes.
 *
 * hiredis writes with write(2): the process must ignore SIGPIPE, or a write to a connection
 * the server closed kills it. */
#ifndef ML_REDIS_H
#define ML_REDIS_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "buf.h"
#include "ml.h"

/* rds_get's "key does not exist" result; distinct from ML_OK and ML_ERR. */
#define RDS_NIL 1

#define RDS_BACKOFF_MIN_MS 100
#define RDS_BACKOFF_MAX_MS 5000

#define RDS_HOST_MAX 256
#define RDS_CRED_MAX 256

/* A parsed redis://[[user]:password@]host[:port][/db] URL. user/password are
 * percent-decoded; port defaults to 6379, db to 0. */
typedef struct rds_url {
    char host[RDS_HOST_MAX];
    int port;
    int db;
    char user[RDS_CRED_MAX];     /* "" = none (AUTH password only, pre-ACL style) */
    char password[RDS_CRED_MAX]; /* "" = no AUTH */
} rds_url;

typedef struct rds_options {
    int connect_timeout_ms; /* 0 = 2000 */
    int command_timeout_ms; /* 0 = 2000; bounds each command's send + reply */
} rds_options;

typedef struct rds_conn rds_conn;

/* Parses a Redis URL into *out. ML_ERR with a message in err on a malformed URL. */
int rds_url_parse(const char *url, rds_url *out, char *err, size_t errlen);

/* New handle for url; does not connect (the first command does, or call rds_ping).
 * opts may be NULL for defaults. Returns NULL on a bad URL or out of memory, with the
 * reason in err. The caller owns the handle and frees it with rds_free. */
rds_conn *rds_new(const char *url, const rds_options *opts, char *err, size_t errlen);

/* Closes the connection and frees the handle; NULL is a no-op. */
void rds_free(rds_conn *c);

/* The last error of this handle ("" if none). Valid until the next call on the handle. */
const char *rds_error(const rds_conn *c);

/* Sends one command given as argc arguments of argvlen[i] bytes each (argvlen NULL means
 * every argument is a NUL-terminated string). Returns the reply, which the caller frees
 * with freeReplyObject(); or NULL on failure — transport errors and Redis error replies
 * (e.g. "WRONGTYPE ...") alike — with the reason in rds_error(). A Redis error reply leaves
 * the connection usable. */
redisReply *rds_command(rds_conn *c, int argc, const char **argv, const size_t *argvlen);

/* GET key into out (reset first; out's max bounds the value). ML_OK if found,
 * RDS_NIL if the key does not exist, ML_ERR on failure or a value over out's max. */
int rds_get(rds_conn *c, const char *key, ml_buf *out);

/* SET key to len bytes of val; ttl_ms > 0 sets an expiry (PX), 0 means none. */
int rds_set(rds_conn *c, const char *key, const void *val, size_t len, int64_t ttl_ms);

/* DEL key; *deleted (may be NULL) receives 1 if it existed, else 0. */
int rds_del(rds_conn *c, const char *key, int64_t *deleted);

/* PING round trip (reconnecting if needed); ML_OK when the server answered PONG. */
int rds_ping(rds_conn *c);

/* A Lua script identified by its SHA1. A zeroed struct is empty; fill it with
 * rds_script_init. The source is not copied: it must outlive the struct (a string
 * literal is the intended use). The struct holds no connection and can be shared
 * read-only by threads once initialised. */
typedef struct rds_script {
    const char *source;
    char sha[41]; /* lower-case hex SHA1 of source */
} rds_script;

/* Sets the source and computes its SHA1 locally (the same digest Redis uses). */
void rds_script_init(rds_script *s, const char *source);

/* SCRIPT LOAD on c, so a syntax error is reported at startup rather than on first use.
 * ML_ERR if Redis rejects the script or returns a different SHA1. */
int rds_script_load(rds_conn *c, const rds_script *s);

/* EVALSHA s with nkeys keys and nargs arguments (NUL-terminated strings). If the script
 * cache lost the script (NOSCRIPT: restart, SCRIPT FLUSH, failover) it is loaded again and
 * the call retried once. Returns the reply (caller frees with freeReplyObject) or NULL
 * with rds_error(), as rds_command. */
redisReply *rds_evalsha(rds_conn *c, const rds_script *s, int nkeys, const char *const *keys,
                        int nargs, const char *const *args);

#endif
