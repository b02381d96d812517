"""Fault drills: a Celery worker SIGKILLed mid-task, PostgreSQL restarted under load.

The settings that make them pass are pinned here (late acknowledgement, requeue on a lost
worker, connection health checks, a clean 503 for a lost database); the drills themselves
(benchmarks/drill_celery_kill.py, benchmarks/drill_pg_restart.py) run small, as subprocesses
with their own redis-server and (for the restart) their own PostgreSQL cluster.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from config.celery_app import app

ROOT = Path(__file__).resolve().parents[1]
DRILL_TIMEOUT = 120  # seconds per drill at the sizes below


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {reason}: this drill must run in CI.", pytrace=False)
    pytest.skip(reason)


def _run(script: str, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "all checks passed" in output
    assert "[FAIL]" not in output
    return output


def test_celery_acknowledges_late_and_requeues_on_a_lost_worker() -> None:
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_TASK_REJECT_ON_WORKER_LOST is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True


def test_postgresql_connections_are_health_checked() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("CONN_HEALTH_CHECKS is set for PostgreSQL only")
    assert settings.DATABASES["default"]["CONN_HEALTH_CHECKS"] is True


class _LosesTheDatabase(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    error: type[Exception] = OperationalError

    def get(self, request: object) -> None:
        raise self.error("server closed the connection unexpectedly")


@pytest.mark.parametrize("error", [OperationalError, InterfaceError])
def test_a_lost_database_is_a_clean_503_with_retry_after(error: type[Exception]) -> None:
    view = _LosesTheDatabase.as_view(error=error)
    response = view(APIRequestFactory().get("/api/v1/anything/"))
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.data == {
        "detail": "The database is unavailable right now. Retry shortly.",
        "code": "database_unavailable",
        "fields": {},
    }


def test_drill_celery_worker_killed_mid_recompute_and_mid_release_build() -> None:
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith("postgres"):
        _missing("the Celery drill needs PostgreSQL (DATABASE_URL)")
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed")
    server, _, name = url.rpartition("/")
    output = _run(
        "drill_celery_kill.py",
        "--items",
        "12000",  # a recompute of ~1 s: long enough to be killed mid-way on a busy machine
        "--annotators",
        "20",
        "--kill-after",
        "0.05",
        "--pg",
        server,
        "--database",
        f"{name}_drill_celery",
        "--timeout",
        "40",
    )
    assert "previous ItemScore/ProjectScore intact" in output
    assert "download refused" in output


def test_drill_postgresql_restarted_under_load() -> None:
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")):
        _missing("PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed")
    if shutil.which("redis-server") is None:
        _missing("redis-server is not installed")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        _missing("running as root without runuser: initdb refuses root")
    output = _run("drill_pg_restart.py", "--items", "2000", "--annotators", "6", "--seconds", "12")
    assert "failures are clean" in output
    assert "stored =" in output
