#!/usr/bin/env bash
# Tenants' admin API in the lambda-executor (issue 16 items 1-2, docs/tenants.md): namespaces
# and quotas, per-namespace SigV4 access keys, the gateway's internal key lookup, secrets
# sealed at rest and never logged (tenancy_admin_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/tenancy_admin_e2e.py"
