"""Shared fixtures and the rules for tests that need real services.

Tests marked `postgres`, `redis` or `browser` skip with a reason when the service is missing,
except under CI=true, where a missing service fails the test instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from django.db import connection
from rest_framework.test import APIClient

from annotation.models import ProjectMember
from annotation.services import project_member_set
from tests.annotation.factories import ItemFactory, ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

IN_CI = os.environ.get("CI", "").lower() == "true"
CHROMIUM = os.environ.get("ASSAY_CHROMIUM", "/usr/bin/chromium")
TEST_REDIS_URL = os.environ.get("ASSAY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _missing(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true but {reason}: this test must run in CI.", pytrace=False)
    pytest.skip(reason)


def redis_available() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - any failure means "not available"
        return False


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("postgres") and connection.vendor != "postgresql":
        _missing("PostgreSQL is not configured (set DATABASE_URL to a PostgreSQL database)")
    if item.get_closest_marker("redis") and not redis_available():
        _missing(f"no Redis server answers at {TEST_REDIS_URL}")
    if item.get_closest_marker("browser") and not (
        Path(CHROMIUM).exists() or shutil.which("chromium")
    ):
        _missing(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")


@pytest.fixture
def celery_eager():
    """Run Celery tasks in-process for this test (test settings keep eager mode off)."""
    from config.celery_app import app

    app.conf.task_always_eager = True
    yield app
    app.conf.task_always_eager = False


@pytest.fixture
def owner(db):
    return UserFactory(username="owner")


@pytest.fixture
def project(owner):
    return ProjectFactory(created_by=owner, name="Reviews")


@pytest.fixture
def item(project):
    return ItemFactory(project=project)


@pytest.fixture
def worker(project):
    return make_annotator(project, "worker")


@pytest.fixture
def gold_item(project):
    return ItemFactory(project=project, gold={"label": "positive"})


@pytest.fixture
def reviewer(project):
    """A user who reviews `project` (sees it, does not own it, does not label)."""
    user = UserFactory(username="reviewer")
    project_member_set(project=project, user=user, role=ProjectMember.Role.REVIEWER)
    return user


@pytest.fixture
def outsider(db):
    """A signed-up user with no role in any project."""
    return UserFactory(username="outsider")


@pytest.fixture
def media_root(settings, tmp_path):
    """Uploads and release files go to a directory of this test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def client_for():
    """Build an API client authenticated as the given user (anonymous for None)."""

    def build(user) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_authenticate(user)
        return client

    return build
