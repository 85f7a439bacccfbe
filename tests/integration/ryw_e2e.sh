#!/usr/bin/env bash
# Read-your-writes after create (issue 13 item 3) through the real gateway, build-master,
# build-worker and lambda-executor on the test stack (see ryw_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/ryw_e2e.py"
