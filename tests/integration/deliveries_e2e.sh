#!/usr/bin/env bash
# Webhook deliveries (docs/logs.md §4): a build's user webhook and an invocation's on_failure
# destination against a failing receiver: attempts, next retry, redeliver (see the .py).
exec /usr/bin/python3 "$(dirname "$0")/deliveries_e2e.py"
