#!/usr/bin/env bash
# Durable audit under crash (issue 15 item 6): no served invocation's audit row is lost to a
# kill -9 of the executor, with Postgres down or up (see audit_durable_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/audit_durable_e2e.py"
