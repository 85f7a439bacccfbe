/* tenant.h — which namespace (tenant) a request acts in, as the services see it.
 *
 * The gateway authenticates the caller and always sends TENANT_HEADER to the services it
 * proxies to (the caller's JWT `ns` claim, the namespace of its SigV4 key, or for an admin
 * the namespace it chose); clients cannot set it, since only the gateway holds the internal
 * token (docs/tenants.md). A request without the header acts in TENANT_DEFAULT, so direct
 * internal callers and old clients keep working. */
#ifndef ML_TENANT_H
#define ML_TENANT_H

#include "fnspec-t.h"

#define TENANT_HEADER "X-Minilambda-Namespace"
#define TENANT_DEFAULT FNSPEC_NS_DEFAULT
#define TENANT_MAX FNSPEC_NS_MAX
/* POST /functions to the build-master: the namespace's max_functions quota, when it has one. */
#define TENANT_QUOTA_FUNCTIONS_HEADER "X-Minilambda-Quota-Functions"

/* The namespace of a request from its TENANT_HEADER value (NULL: absent) into out:
 * TENANT_DEFAULT when absent; ML_ERR when present but not a valid namespace name (the
 * caller answers 400 invalid_namespace). */
int tenant_from_header(const char *value, char out[TENANT_MAX + 1]);

#endif
