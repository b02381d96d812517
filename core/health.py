"""Readiness checks of the services Assay depends on: database, Celery broker, file storage.

Each check returns a `CheckResult` and never raises. Failures carry only the exception's class
name: the full message (which may name hosts or users) goes to the log, not to the response.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connections

logger = logging.getLogger(__name__)

PROBE_PREFIX = "health/"
PROBE_CONTENT = b"assay-readiness-probe"
REDIS_TIMEOUT_SECONDS = 1.0


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: whether it passed, how long it took, and a short note."""

    ok: bool
    latency_ms: float
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": self.ok, "latency_ms": self.latency_ms}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class Readiness:
    """All checks of one readiness probe; `ok` only when every check passed."""

    checks: dict[str, CheckResult] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, result in self.checks.items() if not result.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "failing",
            "checks": {name: result.as_dict() for name, result in self.checks.items()},
            "failed": self.failed,
        }


def _timed(name: str, probe: Callable[[], str]) -> CheckResult:
    """Run `probe` (which returns a note or raises) and time it in milliseconds."""
    started = time.perf_counter()
    try:
        detail = probe()
    except Exception as exc:  # noqa: BLE001 - a probe reports any failure instead of raising
        logger.warning("Readiness check %s failed: %r", name, exc)
        return CheckResult(ok=False, latency_ms=_ms_since(started), detail=type(exc).__name__)
    return CheckResult(ok=True, latency_ms=_ms_since(started), detail=detail)


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _database_probe() -> str:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT 1")
        row = cursor.fetchone()
    if row is None or row[0] != 1:
        raise RuntimeError("SELECT 1 returned an unexpected row")
    return ""


def broker_is_redis(url: str) -> bool:
    """Whether a Celery broker URL names Redis (redis://, rediss:// or a unix socket)."""
    return url.split("://", 1)[0] in ("redis", "rediss", "redis+socket")


@lru_cache(maxsize=4)
def redis_client(url: str) -> Any:
    """A Redis client for `url` with short timeouts, one per process and URL."""
    import redis

    return redis.Redis.from_url(
        url,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
    )


def _broker_probe() -> str:
    url = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
    if url.startswith("memory://"):
        return "embedded"
    if not broker_is_redis(url):
        return "not checked"
    if not redis_client(url).ping():
        raise RuntimeError("Redis PING was not answered")
    return ""


def _storage_probe() -> str:
    name = default_storage.save(
        f"{PROBE_PREFIX}probe-{uuid.uuid4().hex}.txt", ContentFile(PROBE_CONTENT)
    )
    try:
        with default_storage.open(name, "rb") as handle:
            content = handle.read()
    finally:
        default_storage.delete(name)
    if content != PROBE_CONTENT:
        raise RuntimeError("storage returned different bytes than were written")
    return ""


def check_database() -> CheckResult:
    """Whether the default database answers `SELECT 1`."""
    return _timed("database", _database_probe)


def check_broker() -> CheckResult:
    """Whether the Celery broker answers: Redis PING; the in-memory broker counts as embedded."""
    return _timed("broker", _broker_probe)


def check_storage() -> CheckResult:
    """Whether default storage can write, read back and delete a tiny file under health/."""
    return _timed("storage", _storage_probe)


def readiness_check() -> Readiness:
    """Run every readiness check (database, broker, storage)."""
    return Readiness(
        checks={
            "database": check_database(),
            "broker": check_broker(),
            "storage": check_storage(),
        }
    )
