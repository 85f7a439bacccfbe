/* tenant.c — the namespace of a request (tenant.h). */
#include "tenant.h"

#include "fnspec.h"
#include "ml.h"

int tenant_from_header(const char *value, char out[TENANT_MAX + 1])
{
    if (!value)
        return ml_strlcpy(out, TENANT_DEFAULT, TENANT_MAX + 1);
    if (fnspec_ns_valid(value) != ML_OK)
        return ML_ERR;
    return ml_strlcpy(out, value, TENANT_MAX + 1);
}
