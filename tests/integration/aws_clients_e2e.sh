#!/usr/bin/env bash
# The whole Lambda life cycle with unchanged AWS clients (issue 17 "Done when"; docs/versions.md,
# docs/aws-compat.md): Debian's python3-boto3 and AWS CLI v2, and @aws-sdk/client-lambda from npm
# (pinned in tests/aws-sdk-js/package-lock.json, npm ci into build/aws-sdk-js/<hash>) — create,
# wait, get, list, update, publish, weighted alias, invoke by version/alias/ARN, rollback, delete.
exec /usr/bin/python3 "$(dirname "$0")/aws_clients_e2e.py"
