/* headers.h — which headers cross the gateway, in each direction.
 *
 * Requests: the upstream sees only an allow-list of the client's end-to-end headers
 * (Content-Type, Accept, User-Agent, X-Invocation-Type, X-Log-Type, Last-Event-ID; on the
 * AWS route the X-Amz-* equivalents, translated), minus any the client's Connection header names, plus the
 * gateway's own X-Request-Id, X-Forwarded-For (the TCP peer's address only: whatever the
 * client claimed is dropped) and X-Forwarded-Proto, and X-Minilambda-Reveal-Secrets only
 * when the gateway itself sets it (gw_hdr_reveal_secrets: a client's copy never passes, as
 * no header outside the allow-list does). Authorization never leaves the gateway.
 * Responses: every upstream header passes except hop-by-hop ones (RFC 9110 §7.6.1), those
 * the upstream's Connection header names, and the ones the gateway's HTTP server writes
 * itself (Content-Length, Content-Type via the response's type, Date, Server, X-Request-Id).
 * Headers are kept as "name\0value\0" pairs in an ml_buf (the proxy's capture format). */
#ifndef GW_HEADERS_H
#define GW_HEADERS_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "buf.h"
#include "httpd.h"

/* Looks up a client request header (case-insensitive); NULL if absent. */
typedef const char *(*gw_hdr_get_fn)(void *ud, const char *name);

/* True for the hop-by-hop headers of RFC 9110 plus Keep-Alive, Proxy-Connection. */
bool gw_hdr_hop_by_hop(const char *name);
/* True if the comma-separated token list (a Connection header value; NULL = empty) names it. */
bool gw_hdr_token_listed(const char *list, const char *name);

/* The headers to send upstream for a client request (see above). aws: read X-Amz-* names.
 * On success *out is a new list the caller frees with curl_slist_free_all. */
int gw_hdr_upstream_request(gw_hdr_get_fn get, void *ud, bool aws, const char *client_ip,
                            const char *request_id, struct curl_slist **out);

/* Adds SECRETBOX_REVEAL_HEADER to the upstream request when scopes hold GW_SCOPE_SECRETS
 * (functions:secrets): the executor then shows env values (docs/secrets.md). */
int gw_hdr_reveal_secrets(struct curl_slist **list, unsigned scopes);

/* Appends one "name\0value\0" pair (name and value trimmed of surrounding whitespace) parsed
 * from a raw header line "Name: value\r\n"; lines without a colon are ignored. */
int gw_hdr_capture_line(ml_buf *pairs, const char *line, size_t len);
/* The first value of name in pairs, or NULL. */
const char *gw_hdr_pairs_get(const ml_buf *pairs, const char *name);
/* True if any Connection header among pairs names `name`. */
bool gw_hdr_pairs_connection_lists(const ml_buf *pairs, const char *name);

/* True if an upstream response header may be passed to the client (see above). */
bool gw_hdr_pass_response(const ml_buf *pairs, const char *name);

/* Copies the passable headers from pairs into resp (names already in resp win: the
 * gateway's own headers are added first), and sets resp->content_type. Headers beyond the
 * response's table are dropped. */
void gw_hdr_copy_response(const ml_buf *pairs, httpd_resp *resp);

/* True if resp already carries header name (case-insensitive). */
bool gw_hdr_resp_has(const httpd_resp *resp, const char *name);

/* A process-lifetime copy of a Content-Type value (httpd_resp.content_type must be a string
 * that outlives the response). At most 64 distinct values are kept; others map to
 * "application/octet-stream". Thread-safe. */
const char *gw_ctype_intern(const char *value);

#endif
