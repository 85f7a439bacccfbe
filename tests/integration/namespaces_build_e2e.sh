#!/usr/bin/env bash
# Tenants on the build side (docs/tenants.md): names per namespace, every build-master route
# scoped, events carry the namespace, max_functions under concurrency (see the .py).
exec /usr/bin/python3 "$(dirname "$0")/namespaces_build_e2e.py"
