/* artifacts.h — function code on local disk: each artifact (the build's code.tar.gz) is
 * fetched from S3 once, verified against its sha256, and unpacked into
 * <cache_dir>/<sha256>/, which sandboxes mount read-only. */
#ifndef EX_ARTIFACTS_H
#define EX_ARTIFACTS_H

#include <pthread.h>
#include <stddef.h>

#include "s3.h"

typedef struct artifacts {
    const char *cache_dir;
    pthread_mutex_t lock; /* serialises downloads (rare: once per version per host) */
} artifacts;

int artifacts_init(artifacts *a, const char *cache_dir);

/* Writes the local directory of the artifact (prefix: "artifacts/<fn>/<build>/", sha256 of
 * code.tar.gz) to dir, fetching and unpacking it if this host does not have it yet. */
int artifacts_get(artifacts *a, s3_client *s3, const char *prefix, const char *sha256, char *dir,
                  size_t dirlen, char *err, size_t errlen);

/* How many unpacked artifacts the cache holds, counting up to max (a cheap readdir):
 * with S3 down, those functions can still be invoked. -1 when the cache cannot be read. */
int artifacts_cached(const artifacts *a, int max);

/* Copies the runtime bootstraps (<src>/<runtime>/<file>, regular files only) into
 * <cache_dir>/runtimes, readable by everyone, and writes that directory to out. A sandbox
 * without a mount namespace reads them as an unprivileged uid, which cannot enter a checkout
 * under a private home (/root is 0700 on Debian). Files are replaced by rename, so executors
 * sharing the cache may stage at the same time. */
int artifacts_stage_runtimes(const artifacts *a, const char *src, char *out, size_t outlen,
                             char *err, size_t errlen);

/* Unpacks a tar.gz into an empty directory: regular files and directories only, no
 * absolute or '..' paths, permissions 0644/0755. Exposed for tests. */
int artifacts_unpack(const char *tgz, const char *dest, char *err, size_t errlen);

#endif
