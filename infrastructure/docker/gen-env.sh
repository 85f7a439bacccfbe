#!/bin/sh
# Prints .env.example with every empty secret filled in with a fresh random value:
#     sh infrastructure/docker/gen-env.sh > .env
# Values are hex (URL-safe); INTERNAL_WEBHOOK_SECRET is a Standard Webhooks "whsec_" secret,
# SECRETS_KEY base64 of 32 bytes (an AES-256 key).
# Optional settings that are empty on purpose (AWS_ACCESS_KEY, AWS_SECRET_KEY,
# INTERNAL_TOKEN_OLD) stay empty.
set -eu
example=${1:-$(dirname "$0")/../../.env.example}
hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }
while IFS= read -r line; do
	case $line in
	AWS_ACCESS_KEY= | AWS_SECRET_KEY= | INTERNAL_TOKEN_OLD=) printf '%s\n' "$line" ;;
	INTERNAL_WEBHOOK_SECRET=) printf 'INTERNAL_WEBHOOK_SECRET=whsec_%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" ;;
	SECRETS_KEY=) printf 'SECRETS_KEY=%s\n' "$(head -c 32 /dev/urandom | base64 | tr -d '\n')" ;;
	S3_ACCESS_KEY=) printf 'S3_ACCESS_KEY=minilambda-%s\n' "$(hex 6)" ;;
	[A-Z]*=) printf '%s%s\n' "$line" "$(hex 24)" ;;
	*) printf '%s\n' "$line" ;;
	esac
done <"$example"
