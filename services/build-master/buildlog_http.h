/* buildlog_http.h — GET /builds/{build_id}/log: a build's log lines (docs/logs.md §3), as a
 * page or, with ?follow=1, as Server-Sent Events until the build has ended. */
#ifndef BM_BUILDLOG_HTTP_H
#define BM_BUILDLOG_HTTP_H

#include "app.h"
#include "httpd.h"

/* Followers at once per build-master; more get 429. */
#define BM_LOG_MAX_FOLLOWERS 32

/* Fills routes (capacity max) with the build log route bound to app; returns how many. */
size_t bm_buildlog_routes(bm_app *app, httpd_route *routes, size_t max);

/* After the server has stopped (its streams are ended): waits up to timeout_ms for the
 * follower threads to finish, so none outlives what it borrows from the app. */
void bm_buildlog_wait_followers(int64_t timeout_ms);

#endif
