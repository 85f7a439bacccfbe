#!/usr/bin/env bash
# Async invocations, retries, dead-letter queue and destinations against the real stack.
exec /usr/bin/python3 "$(dirname "$0")/async_e2e.py"
