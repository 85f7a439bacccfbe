#!/usr/bin/env bash
# Function URLs end to end through the gateway (issue 20, part 1; see fnurl_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/fnurl_e2e.py"
