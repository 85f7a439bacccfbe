#!/usr/bin/env bash
# Function logs end to end (docs/logs.md §1): capture → writer → GET /functions/{fn}/logs.
exec /usr/bin/python3 "$(dirname "$0")/function_logs_e2e.py"
