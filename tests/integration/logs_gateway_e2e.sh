#!/usr/bin/env bash
# Issue 18 through the gateway (docs/logs.md): function logs, follow (SSE), build log,
# webhook deliveries, the access log, another namespace 404 (logs_gateway_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/logs_gateway_e2e.py"
