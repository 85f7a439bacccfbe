#!/usr/bin/env bash
# The lambda-executor scopes every route by namespace (see namespaces_exec_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/namespaces_exec_e2e.py"
