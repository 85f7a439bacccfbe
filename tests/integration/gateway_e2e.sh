#!/usr/bin/env bash
# The gateway end to end against the test stack's Redis and fake upstreams (see gateway_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/gateway_e2e.py"
