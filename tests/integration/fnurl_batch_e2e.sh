#!/usr/bin/env bash
# Per-route micro-batching end to end: 1,000 concurrent function URL requests over 10 keys, a
# failing item, record-level streaming of a batch (see fnurl_batch_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/fnurl_batch_e2e.py"
