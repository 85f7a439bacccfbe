/* artifact.h — packs an extracted, validated tree into the artifact the executors fetch:
 * one deterministic tar.gz (files in manifest order, fixed mtime and owner) plus a JSON
 * manifest (paths, sizes, modes, sha256 of each file, of the tree, and of the archive). */
#ifndef BW_ARTIFACT_H
#define BW_ARTIFACT_H

#include <cJSON.h>

#include "extract.h"

/* Writes tree (the files of r under dir) to out_path as tar.gz. */
int artifact_pack(const char *dir, const extract_result *r, const char *out_path, char *err,
                  size_t errlen);

/* The manifest document; caller owns it (cJSON_Delete). */
cJSON *artifact_manifest(const extract_result *r, const char *archive_key,
                         const char *archive_sha256, int64_t archive_size);

#endif
