#!/usr/bin/env bash
# Response streaming end to end: python generator, node streamifyResponse, the AWS SDK's
# InvokeWithResponseStream, errors and timeouts mid-stream (see stream_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/stream_e2e.py"
