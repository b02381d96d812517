"""Many workers label one project at once on PostgreSQL: the assignment engine must hold.

Each thread is one annotator with its own database connection. Like the labeling page, it keeps
up to two reservations (the item on screen and the one held ready), submits most items, skips
some, and lets some reservations run out (their deadline is moved into the past, which is what
the clock would do; the worker then tries a late submit or walks away). The quality engine's
steering is on: a tenth of the items are doubtful (served first to the reliable half of the
crowd), and a quarter of the workers have their own gold rate.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count, F
from django.utils import timezone

from annotation.models import Annotation, Item
from annotation.services import item_priorities_set
from core.exceptions import ConflictError
from crowd.models import Assignment
from crowd.services import (
    assignment_claim_next,
    assignment_skip,
    assignment_submit,
    worker_standings_set,
)
from tests.annotation.factories import ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 32
ITEMS = 300
GOLD_ITEMS = 12
OVERLAP = 3
STATS_LOCK = threading.Lock()
DEADLINE_SECONDS = 90  # a run takes a few seconds; this only stops a hung engine


def _items(project, count, *, gold):
    prefix = "gold" if gold else "item"
    rows = [
        Item(
            project=project,
            data={"text": f"{prefix} {n}"},
            content_hash=hashlib.sha256(f"{prefix} {n}".encode()).hexdigest(),
            gold={"label": "positive"} if gold else None,
            is_gold=gold,
            target=OVERLAP,
        )
        for n in range(count)
    ]
    return Item.objects.bulk_create(rows)


def _work_left_for(worker, project):
    """True while an incomplete regular item exists that this worker has not seen."""
    return (
        Item.objects.filter(project=project, is_gold=False, annotation_count__lt=F("target"))
        .exclude(assignments__worker=worker)
        .exists()
    )


def _label(worker, project, seed, stats, errors, start, stop_at):
    rng = random.Random(seed)
    mine = Counter()
    try:
        start.wait()
        held = []
        while time.monotonic() < stop_at:
            while len(held) < 2:  # the page's buffer: current item plus the next one
                claimed = assignment_claim_next(worker=worker, project=project)
                if claimed is None:
                    break
                held.append(claimed)
            if not held:
                if not _work_left_for(worker, project):
                    break
                time.sleep(0.01)  # others hold the rest; some of it may come free
                continue
            assignment = held.pop(0)
            roll = rng.random()
            if roll < 0.05:
                assignment_skip(assignment=assignment, worker=worker)
                mine["skipped"] += 1
            elif roll < 0.09:
                # Hold it past the deadline, then either walk away or submit late.
                Assignment.objects.filter(pk=assignment.pk).update(
                    expires_at=timezone.now() - timedelta(seconds=1)
                )
                time.sleep(rng.uniform(0.005, 0.05))
                mine["expired"] += 1
                if rng.random() < 0.5:
                    try:
                        assignment_submit(
                            assignment=assignment,
                            worker=worker,
                            value={"label": "negative"},
                            duration_ms=rng.randint(1, 9000),
                        )
                        mine["late_accepted"] += 1
                    except ConflictError:
                        mine["late_refused"] += 1
            else:
                label = rng.choice(["positive", "negative"])
                assignment_submit(
                    assignment=assignment,
                    worker=worker,
                    value={"label": label},
                    duration_ms=rng.randint(300, 9000),
                )
                mine["submitted"] += 1
        else:
            errors.append(f"{worker.username}: still busy at the deadline")
    except Exception as error:  # noqa: BLE001 - any exception in a thread fails the test
        errors.append(f"{worker.username}: {error!r}")
    finally:
        connection.close()
        with STATS_LOCK:
            stats.update(mine)


def test_concurrent_workers_fill_every_item_exactly_to_overlap():
    owner = UserFactory(username="owner")
    project = ProjectFactory(created_by=owner, overlap=OVERLAP, gold_ratio=0.1)
    regular = _items(project, ITEMS, gold=False)
    gold = _items(project, GOLD_ITEMS, gold=True)
    workers = [make_annotator(project, f"worker{n:02d}") for n in range(WORKERS)]
    item_priorities_set(project=project, high=[item.pk for item in regular[::10]])
    worker_standings_set(
        project=project,
        standings={w.pk: (0.3 if n % 4 == 1 else None, n % 2 == 0) for n, w in enumerate(workers)},
    )
    stats, errors = Counter(), []
    start = threading.Barrier(WORKERS)
    stop_at = time.monotonic() + DEADLINE_SECONDS
    threads = [
        threading.Thread(
            target=_label, args=(worker, project, n, stats, errors, start, stop_at), daemon=True
        )
        for n, worker in enumerate(workers)
    ]

    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_SECONDS + 10)
    elapsed = time.monotonic() - began

    per_item = Counter(Annotation.objects.filter(project=project).values_list("item_id", flat=True))
    duplicates = (
        Annotation.objects.filter(project=project)
        .values("item_id", "author_id")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .count()
    )
    gold_ids = {item.pk for item in gold}
    gold_seen = Counter(
        Assignment.objects.filter(item_id__in=gold_ids).values_list("item_id", "worker_id")
    )
    over = [pk for pk, n in per_item.items() if pk not in gold_ids and n > OVERLAP]
    short = [item.pk for item in regular if per_item[item.pk] != OVERLAP]
    counters_off = Item.objects.filter(project=project, is_gold=False).exclude(
        annotation_count=OVERLAP, slots_taken=OVERLAP
    )
    print(  # noqa: T201 - the figures are the point of running this test by hand
        f"\n{WORKERS} workers, {ITEMS} items (+{GOLD_ITEMS} gold), overlap {OVERLAP}: "
        f"{elapsed:.1f}s, {sum(per_item.values())} annotations "
        f"({sum(per_item[pk] for pk in gold_ids)} on gold), {dict(stats)}; "
        f"over-overlap {len(over)}, duplicates {duplicates}, short {len(short)}, "
        f"gold repeats {sum(1 for n in gold_seen.values() if n > 1)}, errors {len(errors)}"
    )
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert over == []
    assert duplicates == 0
    assert short == []
    assert not counters_off.exists()
    assert all(n == 1 for n in gold_seen.values())
    assert not Assignment.objects.filter(
        project=project, status=Assignment.Status.RESERVED
    ).exists()
    assert stats["submitted"] > 0
    assert stats["skipped"] > 0
    assert stats["expired"] > 0
