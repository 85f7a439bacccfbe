#!/usr/bin/env bash
# Strict input end to end through the gateway: NUL / invalid UTF-8 / schema / nesting /
# framing / idle timeout / JSON log (see strict_input_e2e.py).
exec /usr/bin/python3 "$(dirname "$0")/strict_input_e2e.py"
