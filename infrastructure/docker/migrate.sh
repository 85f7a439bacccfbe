#!/bin/sh
# The migrate image's entrypoint (compose `migrate` service, k8s Job): applies the pending
# migrations of both databases. ml-migrate takes an advisory lock, so replicas racing are safe.
set -eu
dir=${ML_MIGRATIONS_DIR:-/usr/local/share/minilambda/migrations}
: "${MINILAMBDA_BUILD_DB_URL:?MINILAMBDA_BUILD_DB_URL must be set}"
: "${MINILAMBDA_LAMBDA_DB_URL:?MINILAMBDA_LAMBDA_DB_URL must be set}"
ml-migrate "$MINILAMBDA_BUILD_DB_URL" "$dir/build"
ml-migrate "$MINILAMBDA_LAMBDA_DB_URL" "$dir/lambda"
