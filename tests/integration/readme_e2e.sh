#!/usr/bin/env bash
# The README's commands, as written, against `make run`'s stack (see readme_e2e.py), in a
# network namespace of their own so make run's fixed ports never meet another stack's.
exec unshare --net -- /usr/bin/python3 "$(dirname "$0")/readme_e2e.py"
