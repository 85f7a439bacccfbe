#!/usr/bin/env bash
# The whole Lambda life cycle (issue 17 "Done when"; docs/versions.md) through the gateway's AWS
# control plane with @aws-sdk/client-lambda from npm (tests/aws-sdk-js: npm ci of the pinned lockfile into build/aws-sdk-js/<hash>, then lifecycle.mjs):
# create, wait, get, list, update, publish, weighted alias, invoke by version/alias/ARN,
# rollback, delete; errors as the client's own classes. One client a script, so each has the
# runner's 900 s to itself (aws_clients_e2e.py says what is checked).
ML_AWS_CLIENTS=js exec /usr/bin/python3 "$(dirname "$0")/aws_clients_e2e.py"
