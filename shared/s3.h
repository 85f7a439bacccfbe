/* s3.h — S3 client (path-style URLs, AWS Signature V4 via libcurl) for one bucket.
 *
 * Thread-safety: one s3_client per thread (it owns an httpc handle, whose connections it keeps
 * alive); httpc_global_init() must have been called from main() first.
 * Results: ML_OK, ML_ERR (message in s3_error(), S3's error Code in s3_error_code()), or
 * S3_NOT_FOUND where noted. Connection failures, timeouts and 5xx answers are retried up to
 * max_retries times with exponential backoff (100 ms, doubling, at most 2 s); 4xx answers
 * never are.
 * Payload hashing: x-amz-content-sha256 is the hex SHA-256 of the body for uploads (S3 then
 * verifies the bytes it stored, and the hash is covered by the signature) and the hash of the
 * empty string for bodiless requests; never UNSIGNED-PAYLOAD. */
#ifndef ML_S3_H
#define ML_S3_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"
#include "crypto.h"
#include "ml.h"

/* Returned (instead of ML_ERR) when the object or bucket does not exist. */
#define S3_NOT_FOUND 1

#define S3_KEY_MAX 1024
#define S3_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define S3_DEFAULT_TIMEOUT_MS 300000
#define S3_DEFAULT_MAX_RETRIES 3

/* Strings are copied by s3_new(). Zero numeric fields mean the defaults. */
typedef struct s3_config {
    const char *endpoint;    /* "http://127.0.0.1:9000" (scheme, host, port; no path) */
    const char *region;      /* e.g. "us-east-1" */
    const char *bucket;
    const char *access_key;
    const char *secret_key;
    long connect_timeout_ms; /* 0 = S3_DEFAULT_CONNECT_TIMEOUT_MS */
    long timeout_ms;         /* per attempt; 0 = S3_DEFAULT_TIMEOUT_MS */
    int max_retries;         /* further attempts after the first; 0 = default, <0 = none */
} s3_config;

typedef struct s3_client s3_client;

typedef struct s3_object_info {
    int64_t size;
    char etag[128];          /* as sent, quotes included; "" if absent */
} s3_object_info;

typedef struct s3_object {
    char *key;               /* decoded key, NUL-terminated */
    int64_t size;
} s3_object;

/* One page of a listing. A zeroed page is valid and empty; free with s3_list_page_free(). */
typedef struct s3_list_page {
    s3_object *objects;
    size_t count;
    char *next_token;        /* continuation token for the next page; NULL on the last page */
} s3_list_page;

/* Fills cfg from MINILAMBDA_S3_ENDPOINT/_REGION/_BUCKET/_ACCESS_KEY/_SECRET_KEY (pointers
 * into the environment). ML_ERR naming the first missing variable in err. */
int s3_config_from_env(s3_config *cfg, char *err, size_t errlen);

/* New client (validates and copies cfg); free with s3_free(). NULL with a reason in err. */
s3_client *s3_new(const s3_config *cfg, char *err, size_t errlen);
void s3_free(s3_client *c);

/* Last failure: message (e.g. "s3 GET minilambda/a.zip: HTTP 403 SignatureDoesNotMatch: ..."),
 * S3 error Code ("" if none was given), HTTP status (0 if no response). */
const char *s3_error(const s3_client *c);
const char *s3_error_code(const s3_client *c);
long s3_error_status(const s3_client *c);

/* Upload len bytes from memory. content_type may be NULL (application/octet-stream). */
int s3_put(s3_client *c, const char *key, const void *data, size_t len,
           const char *content_type);

/* Upload a file, streamed from disk (never loaded whole). Its SHA-256 is computed first (one
 * read pass) and, like its size, returned when sha256_hex / size are non-NULL. */
int s3_put_file(s3_client *c, const char *key, const char *path, const char *content_type,
                char sha256_hex[CRYPTO_SHA256_HEX_LEN], int64_t *size);

/* Download into out if the object is at most max bytes (0 = ML_BUF_DEFAULT_MAX). On ML_OK
 * out's previous storage is freed and replaced by the downloaded one (free with ml_buf_free).
 * S3_NOT_FOUND if there is no such key. */
int s3_get(s3_client *c, const char *key, ml_buf *out, size_t max);

/* Download into the file at path (created or truncated, mode 0600) if at most max bytes
 * (0 = ML_BUF_DEFAULT_MAX), streamed to disk. On any failure the file is removed.
 * S3_NOT_FOUND if there is no such key. */
int s3_get_file(s3_client *c, const char *key, const char *path, size_t max);

/* Size and ETag of an object; S3_NOT_FOUND if there is no such key. */
int s3_head(s3_client *c, const char *key, s3_object_info *info);

/* Remove an object (ML_OK also when it did not exist, as S3 does). */
int s3_delete(s3_client *c, const char *key);

/* One ListObjectsV2 page of keys starting with prefix (NULL/"" = all), after
 * continuation_token (NULL = first page), at most max_keys (1..1000; 0 = 1000) entries.
 * page is freed and refilled; the caller frees it with s3_list_page_free(). */
int s3_list(s3_client *c, const char *prefix, const char *continuation_token, int max_keys,
            s3_list_page *page);
void s3_list_page_free(s3_list_page *page);

/* The parser behind s3_list: fills page from a ListObjectsV2 XML document xml[0..len) (keys
 * entity-decoded, sizes checked, the continuation token if truncated). Bounded scanning, no
 * XML library. ML_ERR with a reason in err for a malformed document. */
int s3_list_parse(const char *xml, size_t len, s3_list_page *page, char *err, size_t errlen);

/* Create the configured bucket unless it exists already. */
int s3_bucket_ensure(s3_client *c);

#endif
