#!/usr/bin/env bash
# Outbox lease recovery (issue 15 item 7): a dead dispatcher's lease is taken over at once, a
# live one's is not stolen (see outbox_lease_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/outbox_lease_e2e.py"
