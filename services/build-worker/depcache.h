/* depcache.h — the content-addressed cache of installed dependency trees, shared by every
 * build-worker through S3 (docs/build-pipeline.md "Dependencies").
 *
 * Key: sha256 over "v1", the ecosystem (pip|npm), the runtime name and the interpreter's
 * exact version, the platform (machine + libc, e.g. x86_64-linux-gnu), the installer flags
 * that change the result (only-binary vs sdists, --omit=dev), the index/registry URL, and the
 * bytes of the files the install reads (requirements.txt; package.json + the lockfile).
 * Object: depcache/<ecosystem>/<key>.tar.gz, a deterministic tar.gz (artifact.h's packer) of
 * the installed tree, regular files only. A hit is extracted with the package extractor's
 * rules (no links, no escapes), so a tampered object cannot write outside the tree. */
#ifndef BW_DEPCACHE_H
#define BW_DEPCACHE_H

#include <stddef.h>

#include "s3.h"

#define DEPCACHE_KEY_LEN 65   /* lower-case hex sha256 + NUL */

typedef struct depcache_key_in {
    const char *ecosystem;      /* "pip" | "npm" */
    const char *runtime;        /* e.g. "python3.11" */
    const char *interp_version; /* e.g. "3.11.2" / "v18.19.0" */
    const char *platform;       /* e.g. "x86_64-linux-gnu" */
    const char *flags;          /* installer flags that change the result */
    const char *index_url;      /* index / registry URL (credentials stripped by the caller) */
    const char *const *files;   /* NULL-terminated paths of the inputs the install reads */
} depcache_key_in;

/* Computes the key into key[DEPCACHE_KEY_LEN]. ML_ERR if an input file cannot be read. */
int depcache_key(const depcache_key_in *in, char key[DEPCACHE_KEY_LEN]);
/* The object key for (ecosystem, key), into buf. */
void depcache_object(const char *ecosystem, const char *key, char *buf, size_t len);
/* Fetches and extracts the cached tree into dest (an empty dir). ML_OK on a hit; ML_ERR on a
 * miss (*missing set) or a failure (err; the caller installs as on a miss). */
int depcache_get(s3_client *s3, const char *object, const char *dest, int *missing, char *err,
                 size_t errlen);
/* Packs tree (the installer's output) and stores it under object. Best effort: ML_ERR with
 * err, the build goes on. */
int depcache_put(s3_client *s3, const char *object, const char *tree, char *err, size_t errlen);

#endif
