#!/usr/bin/env bash
# Gateway routing by capability against fake executors (see gateway_caps_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/gateway_caps_e2e.py"
