#!/usr/bin/env bash
# Exactly-once completion of async invocations across an executor kill -9 (issue 15 item 5).
exec /usr/bin/python3 "$(dirname "$0")/async_exactly_once_e2e.py"
