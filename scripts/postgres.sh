#!/usr/bin/env bash
# A PostgreSQL for the team MLflow server and its tests: installs Debian's postgresql if it is
# absent, starts its cluster on 127.0.0.1:${PGPORT:-5432} unless one already answers there, and
# makes a role `promptgov` (may create databases) owning the database `promptgov_mlflow`.
# Idempotent; needs root. Prints the URL for `promptgov server --backend-store-uri`
# (the tests read it from PROMPTGOV_TEST_POSTGRES_URL).
set -euo pipefail
port=${PGPORT:-5432}
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  echo "postgres: installing postgresql (apt)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /usr/lib/postgresql | sort -V | tail -1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$ver main"; then
  pg_createcluster --port "$port" "$ver" main >/dev/null
fi
ready() { pg_isready -q -h 127.0.0.1 -p "$port"; }
if ! ready; then
  pg_ctlcluster "$ver" main start -- -o "-c listen_addresses=127.0.0.1 -c port=$port" \
    >/dev/null 2>&1 || pg_ctlcluster "$ver" main start
  for _ in $(seq 100); do ready && break; sleep 0.1; done
  ready || { echo "postgres: the $ver/main cluster did not start on 127.0.0.1:$port" >&2; exit 1; }
fi
psql_() { su postgres -c "psql -p $port -qtAX -v ON_ERROR_STOP=1 $*" </dev/null; }
if [ "$(psql_ "-c \"select 1 from pg_roles where rolname='promptgov'\"")" != 1 ]; then
  psql_ "-c \"create role promptgov login createdb password 'promptgov'\""
fi
if [ "$(psql_ "-c \"select 1 from pg_database where datname='promptgov_mlflow'\"")" != 1 ]; then
  psql_ "-c \"create database promptgov_mlflow owner promptgov\""
fi
echo "postgresql://promptgov:promptgov@127.0.0.1:$port/promptgov_mlflow"
