#!/usr/bin/env bash
# The build pipeline end to end against the real test stack (see build_pipeline.py).
exec /usr/bin/python3 "$(dirname "$0")/build_pipeline.py"
