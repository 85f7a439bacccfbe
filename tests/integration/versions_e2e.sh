#!/usr/bin/env bash
# Published versions, aliases and qualifiers in the lambda-executor (see versions_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/versions_e2e.py"
