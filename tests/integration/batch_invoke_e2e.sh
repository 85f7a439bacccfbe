#!/usr/bin/env bash
# Batch invoke and function URL configuration end to end through the gateway (issue 20,
# parts 1 and 4; see batch_invoke_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/batch_invoke_e2e.py"
