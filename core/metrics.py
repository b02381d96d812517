"""Prometheus metrics: request latency, Celery tasks, queue depth and labeling activity.

Families (all prefixed `assay_`):
- `http_request_duration_seconds{view,method,status}`: histogram per resolved view name
  (`<unresolved>` for URLs matching no pattern), method and status class (`2xx`...).
- `celery_task_duration_seconds{task,state}` and `celery_task_failures_total{task,exception}`:
  from Celery's task_prerun/task_postrun/task_failure signals (connected in CoreConfig.ready).
- `celery_queue_depth{queue}`: messages waiting per queue (Redis LLEN), computed at scrape;
  omitted when the broker is not Redis or does not answer.
- `annotations_per_minute` and `active_workers` (distinct authors in the last 5 minutes),
  computed at scrape; NaN when the database does not answer.
- `metrics_collector_up{collector}`: 1 when a scrape-time collector worked, else 0.

Processes: each process keeps its own counters. Under gunicorn with several workers (and for
Celery prefork children) set PROMETHEUS_MULTIPROC_DIR to an empty directory shared by the
processes of one host (wiped at start-up): values are then written there and every scrape
aggregates all processes of that host.

Celery task families are recorded where tasks run: the worker serves them itself on
ASSAY_METRICS_WORKER_ADDRESS ("host:port", off when empty), and the web's /metrics shows them
only when web and worker share PROMETHEUS_MULTIPROC_DIR on one host.

`RequestMetricsMiddleware` goes first in MIDDLEWARE, so the latency includes every middleware.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from core.health import broker_is_redis, redis_client

REGISTRY = CollectorRegistry()
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNRESOLVED_VIEW = "<unresolved>"
# kombu's Redis transport keeps messages of priority p > 0 under "<queue>\x06\x16<p>".
KOMBU_PRIORITY_SEP = "\x06\x16"
KOMBU_PRIORITY_STEPS = (3, 6, 9)

REQUEST_DURATION = Histogram(
    "assay_http_request_duration_seconds",
    "Time from the first middleware to the response, per view, method and status class.",
    ["view", "method", "status"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
TASK_DURATION = Histogram(
    "assay_celery_task_duration_seconds",
    "Run time of Celery tasks, per task name and final state.",
    ["task", "state"],
    registry=REGISTRY,
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600),
)
TASK_FAILURES = Counter(
    "assay_celery_task_failures",
    "Celery tasks that raised, per task name and exception class.",
    ["task", "exception"],
    registry=REGISTRY,
)


# --- requests ---------------------------------------------------------------------------------


def status_class(code: int) -> str:
    """`2xx`, `4xx`... for an HTTP status code."""
    return f"{code // 100}xx"


class RequestMetricsMiddleware:
    """Observe each request's latency under its view name, method and status class."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        view = match.view_name if match is not None and match.view_name else UNRESOLVED_VIEW
        method = request.method if request.method in KNOWN_METHODS else "OTHER"
        REQUEST_DURATION.labels(
            view=view, method=method, status=status_class(response.status_code)
        ).observe(time.perf_counter() - started)
        return response


# --- Celery -----------------------------------------------------------------------------------

_task_started: dict[str, float] = {}
# Eager tasks that raise with task_eager_propagates never send task_postrun: bound the leftovers.
_TASK_STARTED_MAX = 10_000


def task_prerun_record(task_id: str | None = None, **_: Any) -> None:
    """Remember when a task started (Celery task_prerun)."""
    if task_id is None:
        return
    if len(_task_started) >= _TASK_STARTED_MAX:
        _task_started.clear()
    _task_started[task_id] = time.perf_counter()


def task_postrun_record(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    """Observe a finished task's duration under its name and state (Celery task_postrun)."""
    started = _task_started.pop(task_id, None) if task_id is not None else None
    if started is None or task is None:
        return
    TASK_DURATION.labels(task=task.name, state=state or "UNKNOWN").observe(
        time.perf_counter() - started
    )


def task_failure_record(
    sender: Any = None, exception: BaseException | None = None, **_: Any
) -> None:
    """Count a task that raised, under its name and exception class (Celery task_failure)."""
    name = getattr(sender, "name", None) or "unknown"
    TASK_FAILURES.labels(task=name, exception=type(exception).__name__).inc()


def parse_listen_address(value: str) -> tuple[str, int]:
    """("host", port) from "host:port" (IPv6 hosts in brackets: "[::1]:9808")."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ASSAY_METRICS_WORKER_ADDRESS: expected host:port, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)  # noqa: S104 - an empty host means all


def worker_metrics_serve(**_: Any) -> Any:
    """Serve the worker's metrics on ASSAY_METRICS_WORKER_ADDRESS (Celery worker_init).

    With the prefork pool, tasks run in child processes: their values reach this server only
    through PROMETHEUS_MULTIPROC_DIR. Returns the HTTP server, or None when not configured.
    """
    address = getattr(settings, "ASSAY_METRICS_WORKER_ADDRESS", "")
    if not address:
        return None
    from prometheus_client import start_http_server

    host, port = parse_listen_address(address)
    server, _thread = start_http_server(port, addr=host, registry=worker_registry())
    return server


def connect_celery_metrics() -> None:
    """Connect the task signal handlers and the worker's metrics server (idempotent)."""
    from celery.signals import task_failure, task_postrun, task_prerun, worker_init

    task_prerun.connect(task_prerun_record, dispatch_uid="assay-metrics-prerun", weak=False)
    task_postrun.connect(task_postrun_record, dispatch_uid="assay-metrics-postrun", weak=False)
    task_failure.connect(task_failure_record, dispatch_uid="assay-metrics-failure", weak=False)
    worker_init.connect(worker_metrics_serve, dispatch_uid="assay-metrics-worker", weak=False)


# --- computed at scrape -----------------------------------------------------------------------


def _recent_annotations(seconds: int) -> Any:
    """Annotations created in the last `seconds`, found by walking the primary key backwards.

    Annotation ids grow with creation time, so the newest row older than the window bounds an
    id range: both queries read the primary-key index over recent rows only.
    """
    annotation = apps.get_model("annotation", "Annotation")
    since = timezone.now() - timedelta(seconds=seconds)
    boundary = (
        annotation.objects.filter(created_at__lt=since)
        .order_by("-pk")
        .values_list("pk", flat=True)
        .first()
    )
    recent = annotation.objects.filter(created_at__gte=since).order_by()
    return recent if boundary is None else recent.filter(pk__gt=boundary)


def annotations_last_minute() -> int:
    """How many annotations were created in the last 60 seconds."""
    return int(_recent_annotations(60).count())


def active_workers_last_5_minutes() -> int:
    """How many distinct users created an annotation in the last 5 minutes."""
    return int(_recent_annotations(300).values("author_id").distinct().count())


def queue_names() -> list[str]:
    """The Celery queues Assay routes work to."""
    from config.celery_app import Queue

    names = [str(queue) for queue in Queue]
    default = getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "default")
    return names if default in names else [*names, default]


def queue_depths(url: str) -> dict[str, int]:
    """Messages waiting per queue on the Redis broker at `url` (all priority lists summed)."""
    names = queue_names()
    pipe = redis_client(url).pipeline(transaction=False)
    for name in names:
        pipe.llen(name)
        for step in KOMBU_PRIORITY_STEPS:
            pipe.llen(f"{name}{KOMBU_PRIORITY_SEP}{step}")
    lengths = iter(pipe.execute())
    return {
        name: sum(next(lengths) for _ in range(1 + len(KOMBU_PRIORITY_STEPS))) for name in names
    }


class AssayCollector(Collector):
    """Gauges computed at scrape; a failing source is reported, never fails the scrape."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily(
            "assay_metrics_collector_up",
            "1 when the scrape-time collector could read its source, else 0.",
            labels=["collector"],
        )
        per_minute = GaugeMetricFamily(
            "assay_annotations_per_minute", "Annotations created in the last 60 seconds."
        )
        workers = GaugeMetricFamily(
            "assay_active_workers", "Distinct annotation authors in the last 5 minutes."
        )
        try:
            per_minute.add_metric([], annotations_last_minute())
            workers.add_metric([], active_workers_last_5_minutes())
            up.add_metric(["database"], 1)
        except DatabaseError:
            per_minute.add_metric([], math.nan)
            workers.add_metric([], math.nan)
            up.add_metric(["database"], 0)
        yield per_minute
        yield workers

        url = str(getattr(settings, "CELERY_BROKER_URL", "") or "")
        if broker_is_redis(url):
            try:
                depths = queue_depths(url)
            except Exception:  # noqa: BLE001 - a broker outage must not fail the scrape
                up.add_metric(["broker"], 0)
            else:
                depth = GaugeMetricFamily(
                    "assay_celery_queue_depth",
                    "Messages waiting per Celery queue.",
                    labels=["queue"],
                )
                for name, count in depths.items():
                    depth.add_metric([name], count)
                yield depth
                up.add_metric(["broker"], 1)
        yield up


REGISTRY.register(AssayCollector())


class _TaskMetrics(Collector):
    """This process's Celery task families only (no scrape-time database or broker reads)."""

    def collect(self) -> Iterator[Any]:
        yield from TASK_DURATION.collect()
        yield from TASK_FAILURES.collect()


WORKER_REGISTRY = CollectorRegistry()
WORKER_REGISTRY.register(_TaskMetrics())


def multiprocess_dir() -> str:
    """PROMETHEUS_MULTIPROC_DIR, or "" when each process keeps its own counters."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")


def worker_registry() -> CollectorRegistry:
    """What a Celery worker serves: its task metrics (every child's in multiprocess mode)."""
    if not multiprocess_dir():
        return WORKER_REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def registry_for_scrape() -> CollectorRegistry:
    """The registry to expose: this process's, or every process's in multiprocess mode."""
    if not multiprocess_dir():
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    registry.register(AssayCollector())
    return registry
