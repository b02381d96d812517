#!/usr/bin/env bash
# Wait until PostgreSQL and Redis answer, then run the container's command ("$@").
# The wait is bounded: after WAIT_FOR_SERVICES_ATTEMPTS tries (default 30, 2 s apart) the
# container exits non-zero so the orchestrator restarts it, instead of hanging for ever.
set -euo pipefail

: "${DATABASE_URL:?DATABASE_URL is required (postgres://user:password@host:5432/name)}"
: "${REDIS_URL:?REDIS_URL is required (redis://host:6379/0)}"

attempts="${WAIT_FOR_SERVICES_ATTEMPTS:-30}"
delay="${WAIT_FOR_SERVICES_DELAY:-2}"

# One probe of both services; prints what is not ready yet and exits 1 if anything is missing.
probe() {
    python - <<'PY'
import os
import sys

import psycopg
import redis

problems = []
try:
    psycopg.connect(os.environ["DATABASE_URL"], connect_timeout=3).close()
except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
    problems.append(f"PostgreSQL: {str(error).strip().splitlines()[0]}")
try:
    redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=3).ping()
except Exception as error:  # noqa: BLE001
    problems.append(f"Redis: {error}")
if problems:
    print("; ".join(problems), file=sys.stderr)
    sys.exit(1)
PY
}

attempt=1
until probe; do
    if [ "${attempt}" -ge "${attempts}" ]; then
        echo "entrypoint: PostgreSQL/Redis still unavailable after ${attempts} attempts, giving up." >&2
        exit 1
    fi
    echo "entrypoint: waiting for PostgreSQL and Redis (attempt ${attempt}/${attempts})..." >&2
    attempt=$((attempt + 1))
    sleep "${delay}"
done

exec "$@"
