#!/usr/bin/env bash
# Invoke input errors end to end: non-JSON / invalid UTF-8 / empty / 7 MiB bodies through the
# native and AWS routes, raw HTTP, boto3 and the AWS CLI v2 (see invoke_input_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/invoke_input_e2e.py"
