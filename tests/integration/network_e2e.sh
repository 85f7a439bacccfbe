#!/usr/bin/env bash
# Per-function network with an egress policy (issue 16 item 3, docs/network.md); needs root.
exec /usr/bin/python3 "$(dirname "$0")/network_e2e.py"
