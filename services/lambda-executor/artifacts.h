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

/* Unpacks a tar.gz into an empty directory: regular files and directories only, no
 * absolute or '..' paths, permissions 0644/0755. Exposed for tests. */
int artifacts_unpack(const char *tgz, const char *dest, char *err, size_t errlen);

#endif
