#!/usr/bin/env bash
# Delete is final (issue 15 item 1): 1,000 create/delete/create interleavings at the executor's
# webhook and API, and a few through the full pipeline (see delete_race_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/delete_race_e2e.py"
