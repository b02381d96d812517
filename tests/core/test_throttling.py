from __future__ import annotations

import uuid

import pytest

from core.api.throttling import _count_hit, _redis_client
from tests.conftest import TEST_REDIS_URL


@pytest.mark.redis
def test_count_hit_counts_in_redis_with_an_expiry(settings):
    settings.REDIS_URL = TEST_REDIS_URL
    key = f"throttle:test:{uuid.uuid4()}"

    counts = [_count_hit(key, 30) for _ in range(3)]

    client = _redis_client(TEST_REDIS_URL)
    assert counts == [1, 2, 3]
    assert 0 < client.ttl(key) <= 30
    client.delete(key)


def test_count_hit_falls_back_to_the_django_cache(settings):
    settings.REDIS_URL = ""
    key = f"throttle:test:{uuid.uuid4()}"

    assert [_count_hit(key, 30) for _ in range(2)] == [1, 2]


def test_throttle_fails_open_when_redis_is_down(settings, project, worker, client_for, caplog):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"crowd": "1/min", "auth": None},
    }

    codes = [
        client_for(worker).post(f"/api/v1/projects/{project.pk}/next/").status_code
        for _ in range(2)
    ]

    assert codes == [204, 204]
    assert "Rate limiter unavailable" in caplog.text
