/* routes.h — the public API's route table: which service owns each endpoint, which scope
 * it needs, how large its body may be, and what extra work the gateway does for it. */
#ifndef GW_ROUTES_H
#define GW_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include "fnspec-t.h"
#include "upstream.h"

/* The upstream services. */
typedef enum { GW_SVC_BUILD_MASTER = 0, GW_SVC_EXECUTOR = 1, GW_NSVC } gw_service;

/* Scope bits: a token's "scope" claim maps to a set of these. */
enum {
    GW_SCOPE_READ = 1u << 0,   /* functions:read */
    GW_SCOPE_WRITE = 1u << 1,  /* functions:write */
    GW_SCOPE_INVOKE = 1u << 2, /* functions:invoke */
    /* functions:secrets — no route requires it; with it, env values are shown (docs/secrets.md) */
    GW_SCOPE_SECRETS = 1u << 3,
    /* admin — namespaces, quotas, credentials (/admin/...); implies every functions:* scope
     * and may act in any namespace (docs/tenants.md) */
    GW_SCOPE_ADMIN = 1u << 4,
};
#define GW_SCOPES_FUNCTIONS (GW_SCOPE_READ | GW_SCOPE_WRITE | GW_SCOPE_INVOKE | GW_SCOPE_SECRETS)

typedef enum {
    GW_KIND_PLAIN = 0,    /* authenticate, forward */
    GW_KIND_INVOKE,       /* + per-function rate limit, timeout from the function's timeout_s */
    GW_KIND_AWS_INVOKE,   /* GW_KIND_INVOKE spoken in the AWS Lambda Invoke API dialect */
    GW_KIND_BUILD_SUBMIT, /* + per-subject build submission limit, namespace builds_per_minute */
    GW_KIND_MINT,         /* POST /admin/tokens: answered by the gateway itself */
    GW_KIND_AWS_CTL,      /* an AWS Lambda control-plane operation (awsctl.h): aws_op */
    GW_KIND_AWS_CODE,     /* GetFunction's Code.Location: a signed URL, no credentials */
    GW_KIND_FNURL,        /* a function URL, any method (fnurl.h): auth per the function */
    GW_KIND_BATCH_INVOKE, /* POST /batch-invoke: per-item rate limits, results merged (batchinv.h) */
} gw_kind;

/* The contract's body limits (fnspec-t.h): a build upload (the largest ZIP as base64 plus
 * the form fields: the build-master's own cap), a sync invoke, an async event. */
#define GW_MAX_UPLOAD_BODY ((unsigned)FNSPEC_MAX_UPLOAD_BODY)
#define GW_MAX_INVOKE_BODY ((unsigned)FNSPEC_MAX_INVOKE_BODY)
#define GW_MAX_EVENT_BODY ((unsigned)FNSPEC_MAX_EVENT_BODY)
#define GW_MAX_JSON_BODY (1024u * 1024u)
/* an action whose body is empty or a few options (redeliver) */
#define GW_MAX_SMALL_BODY (16u * 1024u)
/* POST /batch-invoke: up to 100 invocations */
#define GW_MAX_BATCH_BODY (6u * 1024u * 1024u)

typedef struct gw_route_def {
    const char *method;
    const char *pattern; /* shared/httpd pattern syntax: "/functions/{fn}/invoke" */
    gw_service service;
    unsigned scope;      /* the one scope bit the route requires */
    unsigned cap;        /* the GW_CAP_* an instance needs to serve it (invoke: sync; an
                          * Event invoke needs GW_CAP_ASYNC instead) */
    gw_kind kind;
    size_t max_body;
    const char *aws_op;  /* GW_KIND_AWS_CTL: the operation's name ("GetFunction") */
} gw_route_def;

extern const gw_route_def gw_routes[];
extern const size_t gw_nroutes;

/* The definition matching method and path, or NULL. If wrong_method is not NULL it is set
 * when the path exists under another method (the server answers 405 then). */
const gw_route_def *gw_route_find(const char *method, const char *path, bool *wrong_method);

/* Parses a space-separated scope claim ("functions:read functions:invoke") into scope bits;
 * unknown scopes are ignored; admin adds every functions:* bit. NULL gives 0. */
unsigned gw_scopes_parse(const char *claim);
/* Like gw_scopes_parse, but ML_ERR on any name it does not know or an empty list (minting:
 * a token must not carry what nobody checks). */
int gw_scopes_parse_strict(const char *claim, unsigned *bits);

/* "functions:read" etc. for one scope bit; "" for anything else. */
const char *gw_scope_name(unsigned scope);

const char *gw_service_name(gw_service s);

#endif
