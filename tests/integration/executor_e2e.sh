#!/usr/bin/env bash
# Invocations end to end: build-master, build-worker and lambda-executor on the real stack.
exec /usr/bin/python3 "$(dirname "$0")/executor_e2e.py"
