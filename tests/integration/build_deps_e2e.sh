#!/usr/bin/env bash
# Build-time dependencies (issue 19, services/build-worker/install.h) with no internet: a local
# PEP 503 index and a local verdaccio (tests/integration/depfixtures.py); requirements.txt and
# package.json installs, a missing package, hostile install scripts contained, the S3 cache hit,
# the hidden-dependency trap, opt-out and vendored node_modules (see the .py).
exec /usr/bin/python3 "$(dirname "$0")/build_deps_e2e.py"
