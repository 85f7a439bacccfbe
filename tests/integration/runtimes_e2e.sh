#!/usr/bin/env bash
# Runtimes and the function record's own fields (see runtimes_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/runtimes_e2e.py"
