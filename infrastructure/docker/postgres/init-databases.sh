#!/bin/sh
# Runs once, on an empty data volume (postgres image: /docker-entrypoint-initdb.d/).
# One database per side and one owner role per database: the build side cannot read the
# lambda side's tables and the reverse (README, Architecture).
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v build_pw="$BUILD_DB_PASSWORD" -v lambda_pw="$LAMBDA_DB_PASSWORD" <<'SQL'
CREATE ROLE minilambda_build LOGIN PASSWORD :'build_pw';
CREATE ROLE minilambda_lambda LOGIN PASSWORD :'lambda_pw';
CREATE DATABASE build_service_db OWNER minilambda_build;
CREATE DATABASE lambda_service_db OWNER minilambda_lambda;
REVOKE ALL ON DATABASE build_service_db FROM PUBLIC;
REVOKE ALL ON DATABASE lambda_service_db FROM PUBLIC;
SQL
