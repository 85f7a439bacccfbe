#!/usr/bin/env bash
# Tenant isolation matrix (issue 16 items 1-2, docs/tenants.md): through the gateway, native
# API and AWS Invoke API with per-namespace SigV4 keys, one namespace's tokens and keys get a
# 404 for every object of another, nothing of it changes, an admin reaches both (tenants_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/tenants_e2e.py"
