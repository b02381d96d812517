"""Liveness and readiness: /healthz touches nothing, /readyz checks database, broker, storage."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.files.storage import default_storage
from django.db import OperationalError
from django.urls import reverse

from core import health
from tests.conftest import TEST_REDIS_URL

pytestmark = pytest.mark.django_db


def test_healthz_answers_ok_without_queries(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get(reverse("ops:healthz"))

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_all_checks_pass(client):
    response = client.get(reverse("ops:readyz"))

    body = response.json()
    assert response.status_code == 200
    assert body["status"] == "ok"
    assert body["failed"] == []
    assert set(body["checks"]) == {"database", "broker", "storage"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert check["latency_ms"] >= 0
    # Test settings use the in-memory broker of the embedded default.
    assert body["checks"]["broker"]["detail"] == "embedded"


def test_readyz_database_failing_answers_503_naming_it(client):
    secret = "password authentication failed for user assay-secret-user"

    with mock.patch.object(health, "_database_probe", side_effect=OperationalError(secret)):
        response = client.get(reverse("ops:readyz"))

    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "failing"
    assert body["failed"] == ["database"]
    assert body["checks"]["database"] == {
        "ok": False,
        "latency_ms": body["checks"]["database"]["latency_ms"],
        "detail": "OperationalError",
    }
    assert "assay-secret-user" not in response.content.decode()
    assert body["checks"]["storage"]["ok"] is True


def test_readyz_storage_failing_answers_503_naming_it(client):
    with mock.patch.object(default_storage, "save", side_effect=PermissionError("read-only")):
        response = client.get(reverse("ops:readyz"))

    body = response.json()
    assert response.status_code == 503
    assert body["failed"] == ["storage"]
    assert body["checks"]["storage"]["detail"] == "PermissionError"


def test_storage_check_fails_when_bytes_differ_and_leaves_no_probe_file():
    written = []
    real_save = default_storage.save

    def save(name, content):
        stored = real_save(name, content)
        written.append(stored)
        with default_storage.open(stored, "wb") as handle:
            handle.write(b"corrupted")
        return stored

    with mock.patch.object(default_storage, "save", side_effect=save):
        result = health.check_storage()

    assert result.ok is False
    assert result.detail == "RuntimeError"
    assert written
    assert written[0].startswith("health/")
    assert not default_storage.exists(written[0])


def test_storage_check_cleans_up_its_probe():
    before = (
        set(default_storage.listdir("health")[1]) if default_storage.exists("health") else set()
    )

    result = health.check_storage()

    after = set(default_storage.listdir("health")[1])
    assert result.ok is True
    assert after == before


def test_broker_check_reports_a_redis_that_does_not_answer(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    result = health.check_broker()

    assert result.ok is False
    assert result.detail == "ConnectionError"


def test_broker_check_skips_brokers_it_cannot_ping(settings):
    settings.CELERY_BROKER_URL = "amqp://guest@127.0.0.1:5672//"

    result = health.check_broker()

    assert result.ok is True
    assert result.detail == "not checked"


@pytest.mark.redis
def test_broker_check_pings_redis(settings):
    settings.CELERY_BROKER_URL = TEST_REDIS_URL

    result = health.check_broker()

    assert result.ok is True
    assert result.detail == ""


def test_readyz_failing_broker_answers_503(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"

    response = client.get(reverse("ops:readyz"))

    assert response.status_code == 503
    assert response.json()["failed"] == ["broker"]
    assert "127.0.0.1:1" not in response.content.decode()
