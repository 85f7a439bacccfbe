#!/usr/bin/env bash
# The lambda-executor degrades per capability (issue 15, docs/health.md): with Redis frozen,
# RabbitMQ stopped and Postgres stopped in turn, /health stays 200 and fast, /ready/{cap}
# tells which routes it can take, and direct sync invokes keep being served (see
# degrade_e2e.py). It stops servers of the test stack: run it last, or on its own stack.
exec /usr/bin/python3 "$(dirname "$0")/degrade_e2e.py"
