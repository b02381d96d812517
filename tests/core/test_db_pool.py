"""DJANGO_DB_POOL_MAX_SIZE: Django's psycopg connection pool, off by default.

The settings are read in a subprocess with the environment under test (settings are evaluated
once per process), like the ASSAY_STORAGE switch in tests/quality/test_release_delivery.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]
PG_URL = "postgres://u:p@127.0.0.1:5432/db"  # never connected to: settings only
SETTINGS_SCRIPT = """
import json
import django
from django.conf import settings
django.setup()
default = settings.DATABASES["default"]
keys = ("CONN_MAX_AGE", "CONN_HEALTH_CHECKS", "OPTIONS")
print(json.dumps({key: default.get(key) for key in keys}))
"""
# Eight threads, each holding a connection for a moment, through a pool of at most two.
POOL_SCRIPT = """
import json
import threading
import django
django.setup()
from django.db import connection
from psycopg_pool import ConnectionPool

pids = []

def query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid() FROM pg_sleep(0.2)")
        pids.append(cursor.fetchone()[0])
    connection.close()  # CONN_MAX_AGE = 0: back to the pool, as at the end of a request

threads = [threading.Thread(target=query) for _ in range(8)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(json.dumps({"pool": type(connection.pool).__name__, "pids": pids,
                  "is_pool": isinstance(connection.pool, ConnectionPool)}))
"""


def _run(script: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS_"))}
    clean.update(env, DJANGO_SETTINGS_MODULE="config.settings.local")
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _test_database_url() -> str:
    """The URL of the test run's PostgreSQL database, for a subprocess's DATABASE_URL."""
    params = connection.settings_dict
    return (
        f"postgres://{params['USER']}:{params['PASSWORD']}@{params['HOST'] or '127.0.0.1'}:"
        f"{params['PORT'] or 5432}/{params['NAME']}"
    )


def _database_settings(**env: str) -> dict:
    result = _run(SETTINGS_SCRIPT, {"DATABASE_URL": PG_URL, **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_db_pool_is_off_by_default():
    default = _database_settings()

    assert default["CONN_MAX_AGE"] == 60
    assert default["CONN_HEALTH_CHECKS"] is True
    assert "pool" not in (default["OPTIONS"] or {})


def test_db_pool_zero_keeps_persistent_connections():
    default = _database_settings(DJANGO_DB_POOL_MAX_SIZE="0", DJANGO_CONN_MAX_AGE="30")

    assert default["CONN_MAX_AGE"] == 30
    assert "pool" not in (default["OPTIONS"] or {})


def test_db_pool_size_switches_to_the_psycopg_pool_with_conn_max_age_zero():
    default = _database_settings(DJANGO_DB_POOL_MAX_SIZE="4", DJANGO_CONN_MAX_AGE="60")

    assert default["OPTIONS"]["pool"] == {"min_size": 1, "max_size": 4, "timeout": 10.0}
    assert default["CONN_MAX_AGE"] == 0  # Django refuses a pool with persistent connections
    assert default["CONN_HEALTH_CHECKS"] is True  # the pool checks a connection on checkout


def test_db_pool_reads_min_size_and_timeout():
    default = _database_settings(
        DJANGO_DB_POOL_MAX_SIZE="8", DJANGO_DB_POOL_MIN_SIZE="2", DJANGO_DB_POOL_TIMEOUT="2.5"
    )

    assert default["OPTIONS"]["pool"] == {"min_size": 2, "max_size": 8, "timeout": 2.5}


def test_db_pool_refuses_a_min_size_above_the_max_size():
    result = _run(
        SETTINGS_SCRIPT,
        {"DATABASE_URL": PG_URL, "DJANGO_DB_POOL_MAX_SIZE": "2", "DJANGO_DB_POOL_MIN_SIZE": "3"},
    )

    assert result.returncode != 0
    assert "DJANGO_DB_POOL_MIN_SIZE must be between 0 and DJANGO_DB_POOL_MAX_SIZE" in result.stderr


def test_db_pool_is_ignored_on_sqlite():
    default = _database_settings(DATABASE_URL="sqlite:///:memory:", DJANGO_DB_POOL_MAX_SIZE="4")

    assert "pool" not in default["OPTIONS"]
    assert default["OPTIONS"]["timeout"] == 20


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_db_pool_shares_at_most_max_size_connections_between_threads():
    url = _test_database_url()

    result = _run(POOL_SCRIPT, {"DATABASE_URL": url, "DJANGO_DB_POOL_MAX_SIZE": "2"})

    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["is_pool"] is True
    assert len(figures["pids"]) == 8  # every thread was served ...
    assert len(set(figures["pids"])) <= 2  # ... by at most max_size server connections


# One request holds the only pooled connection; a second request cannot get one in time.
EXHAUSTED_SCRIPT = """
import json
import threading
import django
django.setup()
from django.db import connection
from django.test import Client

holding, release = threading.Event(), threading.Event()

def hold():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        holding.set()
        release.wait(20)
    connection.close()

holder = threading.Thread(target=hold)
holder.start()
holding.wait(10)
client = Client(raise_request_exception=False)
response = client.get("/api/v1/projects/", HTTP_AUTHORIZATION="Token " + "0" * 40)
release.set()
holder.join()
print(json.dumps({"status": response.status_code, "retry_after": response.get("Retry-After"),
                  "body": response.content.decode()[:300]}))
"""


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_an_exhausted_pool_answers_503_with_retry_after_not_500():
    url = _test_database_url()

    result = _run(
        EXHAUSTED_SCRIPT,
        {
            "DATABASE_URL": url,
            "DJANGO_DB_POOL_MAX_SIZE": "1",
            "DJANGO_DB_POOL_TIMEOUT": "0.5",
            "DJANGO_ALLOWED_HOSTS": "testserver",
        },
    )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503, answer
    assert answer["retry_after"] is not None
