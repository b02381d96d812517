"""Active-learning serving orders compose with the claim rules (PostgreSQL and SQLite).

With serving_order "uncertainty" or "rare_first", open regular items are served by descending
serve_rank, within overlap, no repeats, reservations, gold mixing and doubtful-first routing.
The PostgreSQL test at the end checks the ranked claim walks its partial index on a large
project (ASSAY_SERVING_BENCH_ITEMS sets the size, default 20,000) and prints its latency.
"""

from __future__ import annotations

import hashlib
import os
import random
import statistics
import sys
import time

import pytest
from django.db import connection, transaction

from annotation.models import Item
from crowd.models import Assignment
from crowd.services import (
    assignment_claim_next,
    assignment_submit,
    worker_standings_set,
)
from crowd.services.claims import _claimable_sql
from tests.annotation.factories import ItemFactory, ProjectFactory
from tests.crowd.factories import make_annotator

pytestmark = pytest.mark.django_db

RANKS = [0.2, 0.9, 0.05, 0.6, 0.75, 0.1, 0.4, 0.3]


@pytest.fixture
def no_gold(monkeypatch):
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.99)


def ranked_project(owner, *, order: str = "uncertainty", overlap: int = 1, ranks=RANKS):
    project = ProjectFactory(created_by=owner, overlap=overlap, serving_order=order)
    items = ItemFactory.create_batch(len(ranks), project=project)
    for item, rank in zip(items, ranks, strict=True):
        item.serve_rank = rank
    Item.objects.bulk_update(items, ["serve_rank"])
    return project, items


def by_rank(items) -> list[int]:
    return [item.pk for item in sorted(items, key=lambda item: -item.serve_rank)]


def label_all(worker, project) -> list[int]:
    """Claim and answer until nothing is left; the item ids in the order they were served."""
    served = []
    while (assignment := assignment_claim_next(worker=worker, project=project)) is not None:
        served.append(assignment.item_id)
        assignment_submit(
            assignment=assignment, worker=worker, value={"label": "positive"}, duration_ms=5
        )
    return served


@pytest.mark.parametrize("order", ["uncertainty", "rare_first"])
def test_items_are_served_by_descending_serve_rank(owner, no_gold, order):
    project, items = ranked_project(owner, order=order)
    worker = make_annotator(project)

    assert label_all(worker, project) == by_rank(items)


def test_the_default_order_ignores_serve_rank(owner, no_gold):
    project, items = ranked_project(owner, order="default")
    worker = make_annotator(project)

    assert label_all(worker, project) == [item.pk for item in items]  # all empty: by id


def test_overlap_and_no_repeats_hold_in_rank_order(owner, no_gold):
    project, items = ranked_project(owner, overlap=2)
    first, second, third = (make_annotator(project) for _ in range(3))

    served_first = label_all(first, project)
    served_second = label_all(second, project)

    assert served_first == by_rank(items)  # nobody repeats an item
    assert served_second == by_rank(items)
    assert label_all(third, project) == []  # every item has its two annotations
    assert set(Item.objects.filter(project=project).values_list("annotation_count", flat=True)) == {
        2
    }


def test_reservations_are_respected_in_rank_order(owner, no_gold):
    project, items = ranked_project(owner, overlap=1)
    first, second = make_annotator(project), make_annotator(project)
    ranked = by_rank(items)

    held = assignment_claim_next(worker=first, project=project)
    other = assignment_claim_next(worker=second, project=project)

    assert held.item_id == ranked[0]
    assert other.item_id == ranked[1]  # the top item's one slot is reserved
    assert Assignment.objects.filter(item_id=ranked[0]).count() == 1


def test_a_higher_rank_wins_over_fuller_items(owner, no_gold):
    project, items = ranked_project(owner, overlap=3, ranks=[0.1, 0.8])
    low, high = items
    make_annotator(project)
    helper = make_annotator(project)
    claimed = assignment_claim_next(worker=helper, project=project)
    assert claimed.item_id == high.pk
    worker = make_annotator(project)
    Item.objects.filter(pk=low.pk).update(slots_taken=2)  # fuller, but less uncertain

    assert assignment_claim_next(worker=worker, project=project).item_id == high.pk


def test_doubtful_routing_still_comes_first(owner, no_gold):
    project, items = ranked_project(owner)
    doubtful = min(items, key=lambda item: item.serve_rank)  # the least uncertain one
    Item.objects.filter(pk=doubtful.pk).update(priority=1)
    reliable, plain = make_annotator(project), make_annotator(project)
    worker_standings_set(project=project, standings={reliable.pk: (0.0, True)})

    first_reliable = assignment_claim_next(worker=reliable, project=project)
    first_plain = assignment_claim_next(worker=plain, project=project)

    assert first_reliable.item_id == doubtful.pk  # doubtful first for reliable workers
    rest = [pk for pk in by_rank(items) if pk != doubtful.pk]
    assert first_plain.item_id == rest[0]  # and last for everyone else, then by rank


def test_gold_is_mixed_in_as_before(owner, monkeypatch):
    project, items = ranked_project(owner)
    gold = ItemFactory(project=project, gold={"label": "positive"})
    worker = make_annotator(project)
    worker_standings_set(project=project, standings={worker.pk: (1.0, False)})

    served = label_all(worker, project)

    assert served == [gold.pk, *by_rank(items)]


def test_the_default_claim_statement_is_unchanged():
    default_sql, _params = _claimable_sql(False, False)
    ranked_sql, _ = _claimable_sql(False, False, True)

    assert "serve_rank" not in default_sql
    order = 'ORDER BY "annotation_item"."priority" ASC, "annotation_item"."slots_taken" DESC'
    assert order in default_sql
    assert '"annotation_item"."serve_rank" DESC' in ranked_sql
    assert "serve_rank" not in _claimable_sql(True, False)[0]  # gold keeps its order


# --- a large project (PostgreSQL) ------------------------------------------------------------


def _explain(sql: str, params) -> str:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (ANALYZE, COSTS OFF) {sql}", params)
        rows = [row[0] for row in cursor.fetchall()]
        transaction.set_rollback(True)
    return "\n".join(rows)


@pytest.mark.postgres
@pytest.mark.parametrize("reliable", [False, True])
def test_ranked_claims_walk_their_index_on_a_large_project(owner, monkeypatch, reliable):
    count = int(os.environ.get("ASSAY_SERVING_BENCH_ITEMS", "20000"))
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.99)
    monkeypatch.setattr("crowd.services.claims.assignment_expire_stale", lambda **kw: 0)
    project = ProjectFactory(created_by=owner, overlap=3, serving_order="uncertainty")
    rng = random.Random(7)
    Item.objects.bulk_create(
        [
            Item(
                project=project,
                data={"text": f"review {n}"},
                content_hash=hashlib.sha256(f"{n}".encode()).hexdigest(),
                target=3,
                slots_taken=rng.choice([0, 0, 1, 2, 3]),
                priority=1 if rng.random() < 0.02 else 0,
                serve_rank=rng.random(),
            )
            for n in range(count)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute('ANALYZE "annotation_item"')
    workers = [make_annotator(project, f"bench-{n}") for n in range(5)]
    if reliable:
        worker_standings_set(project=project, standings={w.pk: (0.0, True) for w in workers})

    sql, params = _claimable_sql(False, reliable, True)
    params = tuple(
        workers[0].pk if p == -900_001 else project.pk if p == -900_002 else p for p in params
    )
    plan = _explain(sql, params)
    index = "item_claim_ranked_doubtful_idx" if reliable else "item_claim_ranked_idx"
    assert index in plan, plan
    assert "Seq Scan on annotation_item" not in plan, plan

    served = []
    for n in range(30):
        assignment = assignment_claim_next(worker=workers[n % len(workers)], project=project)
        served.append(assignment.item_id)
    top = list(
        Item.objects.filter(project=project, priority=1 if reliable else 0)
        .order_by("-serve_rank")
        .values_list("pk", flat=True)[:3]
    )
    assert served[0] in top

    latency = {}
    for order in ("default", "uncertainty"):  # the same data, the same workers
        project.serving_order = order
        timings = []
        for n in range(60):
            started = time.perf_counter()
            assert assignment_claim_next(worker=workers[n % len(workers)], project=project)
            timings.append((time.perf_counter() - started) * 1000)
        timings.sort()
        latency[order] = f"median {statistics.median(timings):.2f} ms, p95 {timings[56]:.2f} ms"
    sys.stdout.write(f"\n[serving order] {count} items, reliable={reliable}: next item {latency}\n")
