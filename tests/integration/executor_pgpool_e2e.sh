#!/usr/bin/env bash
# The lambda-executor's Postgres connections stay within its pool under concurrent requests
# (issue 14), on the test stack (see executor_pgpool_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/executor_pgpool_e2e.py"
