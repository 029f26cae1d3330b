#!/usr/bin/env bash
# A Redis for the job tests and BullMQ workers: installs redis-server (Debian package) if it is
# absent and starts it on 127.0.0.1:${REDIS_PORT:-6379} unless one already answers there.
# Idempotent; needs root for the install. Prints the URL to use (PROMPTGOV_TEST_REDIS_URL).
set -euo pipefail
port=${REDIS_PORT:-6379}
if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis: installing redis-server (apt)" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
fi
ping() { redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null | grep -q PONG; }
if ! ping; then
  redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --daemonize yes \
    --dir "${TMPDIR:-/tmp}" --logfile "${TMPDIR:-/tmp}/redis-$port.log" >/dev/null
  for _ in $(seq 50); do ping && break; sleep 0.1; done
  ping || { echo "redis: redis-server did not start on 127.0.0.1:$port" >&2; exit 1; }
fi
echo "redis://127.0.0.1:$port/0"
