#!/usr/bin/env bash
# Cron schedules across two executors (takes about 3.5 minutes: it waits for real minutes).
exec /usr/bin/python3 "$(dirname "$0")/schedules_e2e.py"
