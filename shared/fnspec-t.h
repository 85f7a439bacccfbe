/* fnspec-t.h — types and constants of the function contract (API.md), shared by every
 * service. Functions are in fnspec.h. */
#ifndef ML_FNSPEC_T_H
#define ML_FNSPEC_T_H

#include <stdbool.h>
#include <stdint.h>

#include "ml.h"

/* Names: ^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$ and not a UUID. */
#define FNSPEC_NAME_MAX 64
#define FNSPEC_NS_MAX 63 /* a namespace (tenant) name: docs/tenants.md */
#define FNSPEC_NS_DEFAULT "default"
/* A handler is at most this many bytes. */
#define FNSPEC_HANDLER_MAX 128
/* The longest runtime name: "provided.al2023" (15). Struct sizes depend on it: keep. */
#define FNSPEC_RUNTIME_MAX 15
/* The function record's description and tags (docs/versions.md), in characters. */
#define FNSPEC_DESCRIPTION_MAX 256
#define FNSPEC_TAGS_MAX 50
#define FNSPEC_TAG_KEY_MAX 128
#define FNSPEC_TAG_VALUE_MAX 256
/* webhook_url, on_success_url, on_failure_url. */
#define FNSPEC_URL_MAX 2048
/* env: at most this many bytes of names and values together. */
#define FNSPEC_ENV_BYTES_MAX 4096
/* rate_limit {"rps": 0 < N <= RPS_MAX, "burst": BURST_MIN..BURST_MAX (optional)}. */
#define FNSPEC_RPS_MAX 100000
#define FNSPEC_BURST_MIN 1
#define FNSPEC_BURST_MAX 100000

/* Size limits (API.md "Limits" and the invoke row). Plain ints: every value fits. */
#define FNSPEC_MAX_ZIP_BYTES (50 * 1024 * 1024)
/* A build request body: base64 of the largest ZIP plus 1 MiB for the other fields. */
#define FNSPEC_MAX_UPLOAD_BODY (FNSPEC_MAX_ZIP_BYTES / 3 * 4 + 1024 * 1024)
#define FNSPEC_MAX_UNPACKED_BYTES (250LL * 1024 * 1024)
#define FNSPEC_MAX_ZIP_ENTRIES 10000
#define FNSPEC_MAX_INVOKE_BODY (6 * 1024 * 1024) /* RequestResponse */
#define FNSPEC_MAX_EVENT_BODY (256 * 1024)       /* Event (async) */

/* The configurable fields of a function (POST /functions, PATCH /functions/{fn}, the
 * build.status event's function.config). */
typedef enum fnspec_field_id {
    FNSPEC_MEMORY_MB,
    FNSPEC_TIMEOUT_S,
    FNSPEC_ENV,
    FNSPEC_RATE_LIMIT,
    FNSPEC_CONCURRENCY,
    FNSPEC_MAX_RETRIES,
    FNSPEC_MAX_EVENT_AGE_S,
    FNSPEC_ON_SUCCESS_URL,
    FNSPEC_ON_FAILURE_URL,
    FNSPEC_NETWORK,
    FNSPEC_FIELD_COUNT
} fnspec_field_id;

typedef enum fnspec_field_kind {
    FNSPEC_KIND_INT, /* an integer in [min, max] */
    FNSPEC_KIND_ENV, /* fnspec_env_valid */
    FNSPEC_KIND_RATE, /* fnspec_rate_limit_valid */
    FNSPEC_KIND_URL,  /* fnspec_dest_url_valid */
    FNSPEC_KIND_BOOL  /* true or false */
} fnspec_field_kind;

typedef struct fnspec_field {
    const char *name;
    fnspec_field_kind kind;
    int64_t min, max; /* FNSPEC_KIND_INT only */
    int64_t def;      /* the default when absent at creation; only if has_def */
    bool has_def;
    bool nullable;    /* null is a value (rate_limit: unlimited, concurrency: no cap, urls: none) */
    const char *rule; /* the error message's "must ..." */
} fnspec_field;

/* A build.status event (API.md "Build-status webhooks"; docs/build-pipeline.md).
 * Strings are NUL-terminated; error, config, sealed and artifact_prefix are heap-owned by
 * the struct (fnspec_build_event_free releases them: error/artifact_prefix with free(),
 * config/sealed with cJSON_Delete). */
typedef struct fnspec_build_event {
    char build_id[ML_UUID_LEN];
    char function_id[ML_UUID_LEN];
    char status[16];   /* queued | building | completed | failed */
    char *error;       /* NULL: JSON null */
    char timestamp[48]; /* "YYYY-MM-DDTHH:MM:SS.mmmZ" as the build side writes it */
    /* "function" */
    char ns[FNSPEC_NS_MAX + 1]; /* "namespace"; decode: FNSPEC_NS_DEFAULT when absent */
    char name[FNSPEC_NAME_MAX + 1];
    char runtime[FNSPEC_RUNTIME_MAX + 1];
    char handler[FNSPEC_HANDLER_MAX + 1];
    struct cJSON *config; /* an object, or NULL: the member is absent */
    /* "sealed": only in the lambda-executor's copy (docs/secrets.md): {"env": {NAME:
     * sealed value}, "webhook_secret": sealed whsec_ (optional)}, or NULL: absent. The
     * config's env then shows names only, like every copy users see. */
    struct cJSON *sealed;
    /* "artifact": present (non-null) only when status is completed */
    bool has_artifact;
    char *artifact_prefix;
    char artifact_sha256[65];
    int64_t artifact_size;  /* size_bytes: a JSON number (decoded exactly up to 2^53) */
    int64_t artifact_files; /* files */
} fnspec_build_event;

#endif
