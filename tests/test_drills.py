"""The load and Redis-outage drills (benchmarks/drill_*.py), small and bounded, as a CI guard.

Each drill starts and stops its own processes (gunicorn, a Celery worker, a private
redis-server) on a database of its own, and exits non-zero on any lost, duplicated or failed
submission, or when quality scores do not catch up after Redis returns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"
# Each drill migrates a fresh database first; on a loaded 2-core machine that is most of it.
DRILL_TIMEOUT_SECONDS = 89

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


def _need(binary: str | None, name: str) -> None:
    if binary and Path(binary).exists():
        return
    reason = f"{name} is not installed"
    if IN_CI:
        pytest.fail(f"CI=true but {reason}: the drills must run in CI.", pytrace=False)
    pytest.skip(reason)


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DRILL_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, (
        f"{script} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    )
    return result


def test_load_drill_loses_and_duplicates_nothing():
    _need(str(ROOT / ".venv" / "bin" / "gunicorn"), "gunicorn")

    result = _run("drill_load.py", "--annotators", "8", "--seconds", "5", "--items", "500")

    assert "PASS:" in result.stdout
    assert '"5xx": 0' in result.stdout


def test_redis_outage_drill_stores_everything_and_scores_catch_up():
    _need(str(ROOT / ".venv" / "bin" / "gunicorn"), "gunicorn")
    _need(shutil.which("redis-server"), "redis-server")

    result = _run(
        "drill_redis.py",
        *("--annotators", "4", "--items", "300", "--before", "3", "--outage", "4"),
        *("--catch-up", "30", "--workers", "2"),
    )

    assert "PASS:" in result.stdout
    assert '"caught_up_after_redis_returned": {"ok": true' in result.stdout
