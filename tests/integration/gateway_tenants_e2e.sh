#!/usr/bin/env bash
# Tenants in the gateway: namespace per request, admin scope, /admin/tokens, quotas, per-tenant SigV4 keys (docs/tenants.md).
exec /usr/bin/python3 "$(dirname "$0")/gateway_tenants_e2e.py"
