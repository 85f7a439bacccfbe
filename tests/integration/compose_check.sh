#!/usr/bin/env bash
# The container deployment checked offline: docker-compose.yml, Dockerfile, seccomp profile,
# k8s manifests (see compose_check.py). Needs the built binaries (ML_BIN_DIR, set by tests/run.sh).
exec /usr/bin/python3 "$(dirname "$0")/compose_check.py"
