/* httpc.h — outbound HTTP client over libcurl.
 *
 * Thread-safety: call httpc_global_init() once from main() before any thread starts. After
 * that, each thread uses its own httpc handle (never share one across threads). A handle
 * keeps its connections alive, so consecutive requests to the same host reuse one
 * connection. Only http:// and https:// URLs are accepted; redirects are not followed unless
 * the request asks for it. Transport failures return ML_ERR with httpc_error(); any HTTP
 * status (including 4xx/5xx) is a successful exchange and returns ML_OK. */
#ifndef ML_HTTPC_H
#define ML_HTTPC_H

#include <stdint.h>
#include <stdio.h>

#include "buf.h"
#include "ml.h"

#define HTTPC_DEFAULT_CONNECT_TIMEOUT_MS 5000
#define HTTPC_DEFAULT_TIMEOUT_MS 30000
#define HTTPC_DEFAULT_MAX_BODY (1024u * 1024u)
/* Response headers kept per response (all header lines together). */
#define HTTPC_MAX_HEADER_BYTES (64u * 1024u)

typedef struct httpc httpc;

/* A zeroed request is a GET with default timeouts and limits; set at least url. */
typedef struct httpc_request {
    const char *method;              /* NULL = "GET"; "HEAD" sends no body and reads none */
    const char *url;
    const char *const *headers;      /* NULL-terminated "Name: value" strings, or NULL */
    /* Request body: either memory (body, body_len) or an open file (body_file, read from its
     * current position for body_len bytes). A body is sent with Content-Length, never chunked. */
    const void *body;
    FILE *body_file;
    size_t body_len;
    long connect_timeout_ms;         /* 0 = HTTPC_DEFAULT_CONNECT_TIMEOUT_MS */
    long timeout_ms;                 /* whole exchange; 0 = HTTPC_DEFAULT_TIMEOUT_MS */
    size_t max_body;                 /* response body cap; 0 = HTTPC_DEFAULT_MAX_BODY */
    /* If set, a 2xx response body is written here instead of httpc_response.body (other
     * statuses still go to .body, so error documents stay readable). */
    FILE *sink_file;
    int max_redirects;               /* 0 = do not follow redirects */
    /* "host:port:addr[,addr]" (CURLOPT_RESOLVE): connect only to these addresses, so a name
     * checked by ssrf_check_url cannot resolve elsewhere at connect time (DNS rebinding). */
    const char *resolve;
    /* AWS Signature V4 (CURLOPT_AWS_SIGV4), e.g. "aws:amz:us-east-1:s3", with the key pair. */
    const char *aws_sigv4;
    const char *aws_access_key;
    const char *aws_secret_key;
} httpc_request;

/* A zeroed response is valid and empty. httpc_request() replaces its previous contents. */
typedef struct httpc_response {
    long status;                     /* final HTTP status, 0 if none was received */
    ml_buf body;                     /* response body (unless it went to sink_file) */
    int64_t body_bytes;              /* body bytes received, wherever they went */
    ml_buf headers;                  /* private: "name\0value\0" pairs of the final response */
} httpc_response;

/* Process-wide libcurl initialisation (curl_global_init). Call once from main() before
 * threads exist; ML_ERR if libcurl cannot initialise. */
int httpc_global_init(void);
/* Counterpart of httpc_global_init, at exit after all threads have stopped. */
void httpc_global_cleanup(void);

/* New handle for the calling thread; free with httpc_free(). NULL on allocation failure. */
httpc *httpc_new(void);
/* Closes the handle's connections and frees it (NULL is fine). */
void httpc_free(httpc *h);

/* Perform one exchange. ML_OK when a response was received (whatever its status); ML_ERR on
 * bad input, connect/TLS/send/receive failure, timeout, or a body over max_body — see
 * httpc_error(). resp is reset first; release it with httpc_response_free(). */
int httpc_do(httpc *h, const httpc_request *req, httpc_response *resp);

/* Message of the handle's last failure, e.g. "GET http://host:1/x: Failed to connect to ...
 * (Connection refused)". Query strings are left out. "" after a success. */
const char *httpc_error(const httpc *h);

/* 1 if the last failure was a network condition where retrying may succeed (connect failure,
 * timeout, connection reset, empty reply); 0 after success or a permanent failure. */
int httpc_error_retryable(const httpc *h);

/* Value of a response header (case-insensitive name; the last one if repeated), or NULL.
 * Points into resp: valid until resp is reused or freed. */
const char *httpc_response_header(const httpc_response *resp, const char *name);

/* Frees the response's buffers; it stays a valid empty response. */
void httpc_response_free(httpc_response *resp);

#endif
