/* validate.h — checks a function definition from POST /functions (JSON or form fields)
 * field by field, so every 400 names the field and the rule it broke. */
#ifndef BM_VALIDATE_H
#define BM_VALIDATE_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fnspec-t.h"

typedef struct fn_spec {
    char name[FNSPEC_NAME_MAX + 1];
    char runtime[FNSPEC_RUNTIME_MAX + 1];
    char handler[FNSPEC_HANDLER_MAX + 1];
    char webhook_url[FNSPEC_URL_MAX + 1]; /* "" when absent */
    /* memory_mb, timeout_s, env, rate_limit, concurrency — normalised, with the defaults of
     * fnspec's field table (concurrency null = no cap, as given) */
    cJSON *config;
} fn_spec;

/* Validates fields (a JSON object). From a JSON body (form false) every member must have
 * its contract kind (fnspec_create_check: the schema PATCH shares; "30" is no number, null
 * only where nullable, unknown members refused); from a form (form true) the fields are
 * strings, accepted where a number or object (JSON text, parsed strictly) is expected. On
 * success fills spec (spec->config owned by the caller: validate_free). On failure returns
 * ML_ERR with the offending field in err_field and a message in err. */
int validate_function(const cJSON *fields, bool form, fn_spec *spec, const char **err_field,
                      char *err, size_t errlen);
/* Validates only webhook_url (used by PUT /functions/{fn}/code); "" / NULL is accepted. */
int validate_webhook_url(const char *url, char *err, size_t errlen);
void validate_free(fn_spec *spec);

/* The largest max_functions quota the build-master takes (a sanity bound, not a policy). */
#define VALIDATE_QUOTA_MAX 1000000000LL
/* The value of TENANT_QUOTA_FUNCTIONS_HEADER (tenant.h, sent by the gateway on POST
 * /functions): NULL (absent) -> *limit = -1, no limit; an exact decimal 0..VALIDATE_QUOTA_MAX
 * -> that; anything else (blanks, a sign, a fraction, too large) ML_ERR (400). */
int validate_quota_functions(const char *value, int64_t *limit);

#endif
