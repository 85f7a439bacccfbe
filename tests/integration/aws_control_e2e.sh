#!/usr/bin/env bash
# The AWS Lambda control plane through the gateway with boto3 (issue 17 item 1,
# docs/aws-compat.md): every supported operation's shape and status, errors as boto3's
# exception classes, name/ARN/partial-ARN/name:qualifier forms, pagination, the waiters,
# versions and a weighted alias, and namespace isolation (aws_control_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/aws_control_e2e.py"
