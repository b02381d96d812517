"""Prometheus metrics: families, request latency, Celery signals, scrape-time gauges, access."""

from __future__ import annotations

import math
import os
import uuid
from datetime import timedelta
from unittest import mock

import pytest
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from annotation.models import Annotation
from config.celery_app import app
from core import metrics
from tests.annotation.factories import AnnotationFactory, ItemFactory, UserFactory
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.django_db


@app.task(name="tests.core.metrics_probe_task")
def metrics_probe_task(fail: bool) -> None:
    if fail:
        raise LookupError("probe failure")


def _scrape(client, **extra) -> dict[str, dict[tuple, float]]:
    response = client.get(reverse("ops:metrics"), **extra)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    families: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            families.setdefault(sample.name, {})[key] = sample.value
    return families


def _value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_metrics_exposes_every_family(client):
    client.get(reverse("ops:healthz"))
    metrics_probe_task.apply(args=(False,))
    metrics_probe_task.apply(args=(True,), throw=False)

    families = _scrape(client)

    for name in (
        "assay_http_request_duration_seconds_count",
        "assay_http_request_duration_seconds_bucket",
        "assay_celery_task_duration_seconds_count",
        "assay_celery_task_failures_total",
        "assay_annotations_per_minute",
        "assay_active_workers",
        "assay_metrics_collector_up",
    ):
        assert name in families, name


def test_a_request_is_counted_under_its_view_method_and_status_class(client):
    labels = {"view": "ops:healthz", "method": "GET", "status": "2xx"}
    before = _value("assay_http_request_duration_seconds_count", **labels)

    client.get(reverse("ops:healthz"))

    assert _value("assay_http_request_duration_seconds_count", **labels) == before + 1
    families = _scrape(client)
    key = tuple(sorted(labels.items()))
    assert families["assay_http_request_duration_seconds_count"][key] == before + 1


def test_unmatched_urls_share_one_label_not_their_path(client):
    labels = {"view": metrics.UNRESOLVED_VIEW, "method": "GET", "status": "4xx"}
    before = _value("assay_http_request_duration_seconds_count", **labels)

    client.get(f"/no-such-page-{uuid.uuid4().hex}/")

    assert _value("assay_http_request_duration_seconds_count", **labels) == before + 1


def test_celery_signal_handlers_record_a_task_and_a_failure(celery_eager):
    name = "tests.core.metrics_probe_task"
    ok_before = _value("assay_celery_task_duration_seconds_count", task=name, state="SUCCESS")
    failed_before = _value("assay_celery_task_duration_seconds_count", task=name, state="FAILURE")
    errors_before = _value("assay_celery_task_failures_total", task=name, exception="LookupError")

    metrics_probe_task.delay(False)
    # throw=False: the failure is handled as a worker does (eager mode would re-raise first).
    result = metrics_probe_task.apply(args=(True,), throw=False)

    assert _value("assay_celery_task_duration_seconds_count", task=name, state="SUCCESS") == (
        ok_before + 1
    )
    assert _value("assay_celery_task_duration_seconds_count", task=name, state="FAILURE") == (
        failed_before + 1
    )
    assert _value("assay_celery_task_failures_total", task=name, exception="LookupError") == (
        errors_before + 1
    )
    assert isinstance(result.result, LookupError)
    assert metrics._task_started == {}


def test_annotations_per_minute_and_active_workers_count_recent_answers_only(client):
    item = ItemFactory()
    alice, bob = UserFactory(), UserFactory()
    old = AnnotationFactory(item=item, author=alice)
    three_minutes_ago = AnnotationFactory(item=item, author=UserFactory())
    AnnotationFactory.create_batch(2, item=item, author=alice)
    AnnotationFactory(item=item, author=bob)
    Annotation.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=1))
    Annotation.objects.filter(pk=three_minutes_ago.pk).update(
        created_at=timezone.now() - timedelta(minutes=3)
    )

    families = _scrape(client)

    assert families["assay_annotations_per_minute"][()] == 3
    assert families["assay_active_workers"][()] == 3
    assert families["assay_metrics_collector_up"][(("collector", "database"),)] == 1


def test_scrape_time_counts_are_cheap(django_assert_max_num_queries):
    with django_assert_max_num_queries(4):
        list(metrics.AssayCollector().collect())


def test_a_database_outage_does_not_fail_the_scrape(client):
    with mock.patch.object(
        metrics, "annotations_last_minute", side_effect=OperationalError("down")
    ):
        families = _scrape(client)

    assert math.isnan(families["assay_annotations_per_minute"][()])
    assert math.isnan(families["assay_active_workers"][()])
    assert families["assay_metrics_collector_up"][(("collector", "database"),)] == 0


def test_queue_depth_is_omitted_without_a_redis_broker(client):
    families = _scrape(client)

    assert "assay_celery_queue_depth" not in families


def test_a_broker_outage_omits_queue_depth_and_says_so(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    families = _scrape(client)

    assert "assay_celery_queue_depth" not in families
    assert families["assay_metrics_collector_up"][(("collector", "broker"),)] == 0


@pytest.mark.redis
def test_queue_depth_counts_waiting_messages_per_queue(client, settings):
    import redis

    settings.CELERY_BROKER_URL = TEST_REDIS_URL
    names = [f"metrics-test-{uuid.uuid4().hex}" for _ in range(2)]
    conn = redis.Redis.from_url(TEST_REDIS_URL)
    conn.rpush(names[0], "a", "b", "c")
    conn.rpush(f"{names[0]}{metrics.KOMBU_PRIORITY_SEP}3", "d")
    try:
        with mock.patch.object(metrics, "queue_names", return_value=names):
            families = _scrape(client)
    finally:
        conn.delete(names[0], f"{names[0]}{metrics.KOMBU_PRIORITY_SEP}3")

    depth = families["assay_celery_queue_depth"]
    assert depth[(("queue", names[0]),)] == 4
    assert depth[(("queue", names[1]),)] == 0
    assert families["assay_metrics_collector_up"][(("collector", "broker"),)] == 1


def test_queue_names_cover_every_celery_queue():
    assert set(metrics.queue_names()) >= {"default", "quality", "exports"}


# --- access -------------------------------------------------------------------------------------


def test_metrics_is_hidden_from_other_addresses(client):
    response = client.get(reverse("ops:metrics"), REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 404


def test_metrics_through_a_proxy_is_not_local(client):
    response = client.get(
        reverse("ops:metrics"), REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9"
    )

    assert response.status_code == 404


def test_metrics_allows_configured_networks(client, settings):
    settings.ASSAY_METRICS_ALLOWED_IPS = ["10.0.0.0/8"]

    allowed = client.get(reverse("ops:metrics"), REMOTE_ADDR="10.1.2.3")
    local = client.get(reverse("ops:metrics"), REMOTE_ADDR="127.0.0.1")

    assert allowed.status_code == 200
    assert local.status_code == 404


def test_metrics_accepts_the_bearer_token_from_anywhere(client, settings):
    settings.ASSAY_METRICS_TOKEN = "scrape-token"  # noqa: S105
    url = reverse("ops:metrics")
    remote = {"REMOTE_ADDR": "203.0.113.9"}

    good = client.get(url, HTTP_AUTHORIZATION="Bearer scrape-token", **remote)
    wrong = client.get(url, HTTP_AUTHORIZATION="Bearer other", **remote)
    non_ascii = client.get(url, HTTP_AUTHORIZATION="Bearer jeton-é", **remote)
    missing = client.get(url, **remote)

    assert good.status_code == 200
    assert b"assay_http_request_duration_seconds" in good.content
    assert [wrong.status_code, non_ascii.status_code, missing.status_code] == [404, 404, 404]


def test_no_token_configured_means_no_token_access(client, settings):
    settings.ASSAY_METRICS_TOKEN = ""

    response = client.get(
        reverse("ops:metrics"), REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer "
    )

    assert response.status_code == 404


def test_multiprocess_mode_aggregates_other_processes(tmp_path, monkeypatch):
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "from core import metrics\n"
        "metrics.REQUEST_DURATION.labels(view='mp:view', method='GET', status='2xx').observe(0.2)\n"
        "metrics.TASK_FAILURES.labels(task='mp.task', exception='KeyError').inc()\n"
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    root = Path(__file__).resolve().parents[2]
    for _ in range(2):  # two processes, like two gunicorn workers
        subprocess.run([sys.executable, "-c", code], env=env, cwd=root, check=True, timeout=60)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    registry = metrics.registry_for_scrape()
    worker = metrics.worker_registry()

    assert registry is not metrics.REGISTRY
    labels = {"view": "mp:view", "method": "GET", "status": "2xx"}
    assert registry.get_sample_value("assay_http_request_duration_seconds_count", labels) == 2
    failures = {"task": "mp.task", "exception": "KeyError"}
    assert worker.get_sample_value("assay_celery_task_failures_total", failures) == 2
    assert registry.get_sample_value("assay_annotations_per_minute") == 0


# --- the worker's own exposition ----------------------------------------------------------------


def test_worker_serves_its_task_metrics_when_an_address_is_set(settings):
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings.ASSAY_METRICS_WORKER_ADDRESS = f"127.0.0.1:{port}"
    metrics_probe_task.apply(args=(True,), throw=False)

    server = metrics.worker_metrics_serve()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            body = response.read().decode()
    finally:
        server.shutdown()
        server.server_close()

    assert 'assay_celery_task_failures_total{exception="LookupError"' in body
    assert "assay_celery_task_duration_seconds_count" in body
    assert "assay_annotations_per_minute" not in body


def test_worker_metrics_server_is_off_by_default(settings):
    settings.ASSAY_METRICS_WORKER_ADDRESS = ""

    assert metrics.worker_metrics_serve() is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0.0.0.0:9808", ("0.0.0.0", 9808)),
        (":9808", ("0.0.0.0", 9808)),
        ("[::1]:9808", ("::1", 9808)),
    ],
)
def test_parse_listen_address(value, expected):
    assert metrics.parse_listen_address(value) == expected


@pytest.mark.parametrize("value", ["9808", "host:", "host:port", "host:70000"])
def test_parse_listen_address_rejects_bad_values(value):
    with pytest.raises(ValueError, match="ASSAY_METRICS_WORKER_ADDRESS"):
        metrics.parse_listen_address(value)
