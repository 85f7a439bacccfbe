#!/usr/bin/env bash
# Streamed responses (SSE, NDJSON) through the gateway, against stub upstreams (see gateway_stream_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/gateway_stream_e2e.py"
