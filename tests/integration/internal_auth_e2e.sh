#!/usr/bin/env bash
# Internal APIs authenticated: the executor and build-master answer 401 without the internal token (docs/security.md).
exec /usr/bin/python3 "$(dirname "$0")/internal_auth_e2e.py"
