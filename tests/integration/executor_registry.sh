#!/usr/bin/env bash
# The lambda-executor's function registry and audit reads against the real test stack
# (see executor_registry.py).
exec /usr/bin/python3 "$(dirname "$0")/executor_registry.py"
