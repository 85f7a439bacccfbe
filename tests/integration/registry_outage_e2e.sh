#!/usr/bin/env bash
# Executor metadata through a Postgres outage (issue 15 item 7; see registry_outage_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/registry_outage_e2e.py"
