#!/usr/bin/env bash
# Secrets stay secret (issue 16 item 5, docs/secrets.md): write-only env through the gateway
# and directly, no value in webhooks, destinations, Postgres (pg_dump of both DBs) or logs,
# destinations signed with the function's whsec_, SSRF refusals at create/PATCH (secrets_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/secrets_e2e.py"
