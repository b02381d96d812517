"""End to end through a real Celery worker: submissions -> Redis broker -> worker -> scores.

The worker is a subprocess running the local settings against the test database that
pytest-django created, with Redis DB 13 as broker and cache. This process publishes to the
same Redis and uses it as its cache, so the debounce key is shared as in production.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import redis
from django.db import connection
from django.urls import reverse
from kombu import pools
from rest_framework.test import APIClient

from config.celery_app import app
from crowd.services import assignment_claim_next, assignment_submit
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal
from quality.models import ItemScore, ProjectScore
from tests.annotation.factories import ItemFactory, ProjectFactory
from tests.crowd.factories import make_annotator

pytestmark = [
    pytest.mark.redis,
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]

REPO = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("ASSAY_TEST_CELERY_REDIS_URL", "redis://127.0.0.1:6379/13")
WAIT_SECONDS = 60
LABELS = ("positive", "negative")


def _database_url() -> str:
    """The test database pytest-django created, as a DATABASE_URL for the worker."""
    db = connection.settings_dict
    credentials = quote(db["USER"] or "", safe="")
    if db["PASSWORD"]:
        credentials += ":" + quote(db["PASSWORD"], safe="")
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{credentials}@{host}{port}/{db['NAME']}"


def _reset_broker_pools() -> None:
    """Drop this process's broker connections so the next publish uses the current URL."""
    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def redis_db():
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def shared_broker(settings, redis_db):
    """Publish this process's tasks to Redis DB 13 and share the worker's cache there."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
    previous = app.conf.broker_url
    app.conf.broker_url = REDIS_URL
    _reset_broker_pools()
    yield
    app.conf.broker_url = previous
    _reset_broker_pools()


@pytest.fixture
def worker_process(shared_broker, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.local",
        "DATABASE_URL": _database_url(),
        "REDIS_URL": REDIS_URL,
        "DJANGO_SECRET_KEY": "celery-worker-test-only",
    }
    env.pop("CELERY_BROKER_URL", None)  # Celery would prefer it over the settings
    log_path = tmp_path / "worker.log"
    command = [
        # The interpreter running the tests, so the worker has the same packages
        # (.venv/bin/celery locally).
        sys.executable, "-m", "celery", "-A", "config.celery_app", "worker",
        "-Q", "default,quality,exports", "--pool", "solo", "-l", "info",
        "--without-gossip", "--without-mingle", "-n", f"h3-quality-test-{os.getpid()}@%h",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        yield process, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_score(project, annotations, process, log_path) -> ProjectScore:
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        score = ProjectScore.objects.filter(project=project).first()
        if score is not None and score.annotations_scored == annotations:
            return score
        if process.poll() is not None:
            break
        time.sleep(0.25)
    tail = log_path.read_text(errors="replace")[-4000:]
    pytest.fail(f"no ProjectScore with {annotations} annotations in time; worker log:\n{tail}")


def _label_all(project, worker, choose) -> list[tuple[int, str]]:
    """The worker claims and submits until nothing is left; returns (item id, label) pairs."""
    submitted = []
    while (held := assignment_claim_next(worker=worker, project=project)) is not None:
        label = choose(held.item_id)
        assignment_submit(assignment=held, worker=worker, value={"label": label}, duration_ms=800)
        submitted.append((held.item_id, label))
    return submitted


def test_submissions_are_scored_by_a_real_worker_and_shown(worker_process, owner):
    process, log_path = worker_process
    project = ProjectFactory(created_by=owner, overlap=3, gold_ratio=0.0)
    items = ItemFactory.create_batch(4, project=project)
    truth = {item.pk: LABELS[n % 2] for n, item in enumerate(items)}
    ann, bob, cy = (make_annotator(project, name) for name in ("ann", "bob", "cy"))

    # First burst: two workers who agree except on the first item.
    votes = _label_all(project, ann, truth.get)
    votes += _label_all(project, bob, lambda pk: "negative" if pk == items[0].pk else truth[pk])
    first = _wait_for_score(project, 8, process, log_path)
    # Second burst after the first run: the task reopened the debounce window, so it schedules.
    votes += _label_all(project, cy, truth.get)
    score = _wait_for_score(project, 12, process, log_path)

    worker_log = log_path.read_text(errors="replace")
    assert "Task quality.tasks.quality_recompute_task[" in worker_log  # not run in-process
    assert " succeeded in " in worker_log
    counts = np.zeros((len(items), len(LABELS)))
    row = {item.pk: n for n, item in enumerate(items)}
    for item_id, label in votes:
        counts[row[item_id], LABELS.index(label)] += 1
    assert first.annotations_scored == 8
    assert score.items_scored == 4
    assert score.fleiss_kappa == pytest.approx(fleiss_kappa(counts), abs=1e-12)
    assert score.krippendorff_alpha == pytest.approx(krippendorff_alpha_nominal(counts), abs=1e-12)
    majorities = dict(
        ItemScore.objects.filter(project=project).values_list("item_id", "majority_label")
    )
    assert majorities == truth

    api = APIClient()
    api.force_authenticate(owner)
    body = api.get(reverse("api:project-quality", kwargs={"pk": project.pk})).json()
    assert body["annotations_scored"] == 12
    assert body["fleiss_kappa"] == pytest.approx(score.fleiss_kappa)
    assert {w["username"]: w["annotation_count"] for w in body["workers"]} == {
        "ann": 4,
        "bob": 4,
        "cy": 4,
    }
    assert body["progress"]["complete"] == 4
    api.force_login(owner)  # the same client with a session, for the HTML page
    page = api.get(reverse("quality:dashboard", kwargs={"pk": project.pk}))
    assert f"{score.fleiss_kappa:.3f}" in page.content.decode()
