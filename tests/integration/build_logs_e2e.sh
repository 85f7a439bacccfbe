#!/usr/bin/env bash
# Build logs (docs/logs.md §3): each step in order with sizes and timings, every refused entry
# of a hostile package, live reading and follow (SSE), other namespaces 404 (see the .py).
exec /usr/bin/python3 "$(dirname "$0")/build_logs_e2e.py"
