#!/usr/bin/env bash
# The gateway's access log (docs/logs.md §2) end to end: the real gateway, the stack's Redis, a stand-in upstream.
exec /usr/bin/python3 "$(dirname "$0")/gateway_access_log_e2e.py"
