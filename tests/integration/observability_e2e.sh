#!/usr/bin/env bash
# Observability end to end: Prometheus (via infrastructure/dev/observe.sh) against the four
# daemons on the test stack; every dashboard and alert query must return data (see the .py).
set -euo pipefail
# PyYAML reads the configs; deps.sh brings it with docker-compose, but a bare machine may not have it
if ! /usr/bin/python3 -c 'import yaml' 2>/dev/null; then
    apt-get install -y -qq --no-install-recommends python3-yaml >/dev/null
fi
exec /usr/bin/python3 "$(dirname "$0")/observability_e2e.py"
