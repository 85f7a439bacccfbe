#!/usr/bin/env bash
# The whole Lambda life cycle (issue 17 "Done when"; docs/versions.md) through the gateway's AWS
# control plane with Debian's python3-boto3 (this script runs under /usr/bin/python3):
# create, wait, get, list, update, publish, weighted alias, invoke by version/alias/ARN,
# rollback, delete; errors as the client's own classes. One client a script, so each has the
# runner's 900 s to itself (aws_clients_e2e.py says what is checked).
ML_AWS_CLIENTS=boto3 exec /usr/bin/python3 "$(dirname "$0")/aws_clients_e2e.py"
