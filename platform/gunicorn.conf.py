"""Gunicorn settings for the web process (gunicorn config.wsgi -c platform/gunicorn.conf.py).

Every value can be overridden from the environment; the defaults suit one container with a
TLS-terminating proxy in front of it. The file name has a dot in it on purpose: it is loaded by
gunicorn, never imported.
"""

from __future__ import annotations

import os
from pathlib import Path

# Upper bound for the computed default: each thread can hold one PostgreSQL connection
# (CONN_MAX_AGE), so workers x threads x containers must stay under max_connections.
MAX_DEFAULT_WORKERS = 8


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))  # CPUs this container may use (cpuset-aware)
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _int(name: str, default: int, minimum: int = 1) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = int(raw)  # a typo must stop start-up, not silently use the default
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        raise ValueError(f"{name} must be a boolean (1/0, true/false), got {raw!r}")
    return raw in {"1", "true", "yes", "on"}


bind = f"0.0.0.0:{_int('PORT', 8000)}"
# SO_REUSEPORT: several gunicorn masters (e.g. web containers sharing the host network, or a
# blue/green restart) may bind the same port, and the kernel spreads new connections over them.
# They share no state but PostgreSQL and Redis, which is all Assay needs (docs/scaling.md).
reuse_port = _bool("GUNICORN_REUSE_PORT", False)
workers = _int("WEB_CONCURRENCY", min(2 * _cores() + 1, MAX_DEFAULT_WORKERS))
worker_class = "gthread"
threads = _int("GUNICORN_THREADS", 4)

# A request slower than this is killed and logged; raise it rather than making views slower.
timeout = _int("GUNICORN_TIMEOUT", 30)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)

# Recycle workers now and then so a slow leak never takes the site down; jitter keeps them from
# restarting all at once.
max_requests = _int("GUNICORN_MAX_REQUESTS", 1000, minimum=0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 100, minimum=0)

# Each worker imports Django itself: no database connection or file handle is shared across a
# fork, and a reload (HUP) picks up new code.
preload_app = False

# Heartbeat files in memory, not on the container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if Path("/dev/shm").is_dir() else None

accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
# %(M)s is the request time in milliseconds; %({x-request-id}i)s is the proxy's request id if any.
access_log_format = (
    '%(h)s %(t)s "%(r)s" %(s)s %(B)s %(M)sms "%(f)s" "%(a)s" rid=%({x-request-id}i)s'
)
