"""The hot assignment queries use indexes on a realistically sized project (PostgreSQL).

The data: a project with 20,000 items (some complete, some partly taken, the rest open; a few
complete ones turned doubtful by the quality engine: priority 1 and a raised target) and 300 gold
items (a third of them retired), a second project of 5,000 items as noise, three veteran workers
with ~38,000 assignments and ~30,000 annotations between them (some reservations already stale),
one new worker, and one new worker the quality engine counts as reliable. The real statements
of claim (regular, gold, reliable, blocked), block, stale expiry, submit and skip are captured
while the services run. Each distinct statement is EXPLAIN ANALYZEd just before it executes,
inside a savepoint that is rolled back. A plan fails when it scans the item, assignment or
annotation table sequentially, or when it reads and throws away more than DISCARD_BUDGET of their
rows (an index walk that filters most of what it reads is a sequential scan in disguise).

Run with -s to print the plans: pytest tests/crowd/test_query_plans.py -s
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import sys
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from annotation.models import Annotation, Item, Project
from crowd.models import Assignment, WorkerStanding
from crowd.services import (
    WorkerBlockedError,
    assignment_claim_next,
    assignment_expire_stale,
    assignment_skip,
    assignment_submit,
    worker_block,
)
from tests.annotation.factories import ProjectFactory, UserFactory
from tests.crowd.factories import make_annotator

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]

REGULAR_ITEMS = 20_000
GOLD_ITEMS = 300
NOISE_ITEMS = 5_000
OVERLAP = 3
DOUBTFUL_SHARE = 0.06  # of the complete items: reopened for more annotators, routed first
RAISED_TARGET = 5
HOT_TABLES = ("annotation_item", "crowd_assignment", "annotation_annotation")
# A statement may read and discard at most this many hot-table rows (filters, rechecks): about 4%
# of the item table. An index that fits the query reads roughly what it returns.
DISCARD_BUDGET = 1_000
EXPLAINABLE = re.compile(r"^\s*(SELECT|WITH|UPDATE|DELETE)\b", re.IGNORECASE)
BATCH = 5_000
LONG_ARRAY = re.compile(r"'\{[^}]{60,}\}'")  # id lists in printed plans are shortened


@dataclass
class Crowd:
    project: Project
    veterans: list
    newcomer: object
    reliable: object
    stale_count: int
    counts: dict[str, int] = field(default_factory=dict)


def show(text: str) -> None:
    """Plans are the point of this module: visible with pytest -s."""
    sys.stdout.write(text + "\n")


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _populate(
    project: Project, count: int, *, gold: bool, veterans: list, rng: random.Random
) -> int:
    """Create `count` items with a realistic past for the veterans; returns the stale count."""
    now = timezone.now()
    items, plans = [], []  # plans: (item, worker, status, expires_at)
    for n in range(count):
        item = Item(
            project=project,
            data={"text": f"{project.name} review number {n}"},
            content_hash=_hash(f"{project.pk}-{gold}-{n}"),
            gold={"label": "positive"} if gold else None,
            is_gold=gold,
            target=OVERLAP,
        )
        roll = rng.random()
        if gold:
            holders = [w for w in veterans if rng.random() < 0.5]
            item.gold_retired = n < count // 3  # seen too often: never served again
        elif roll < 0.35:
            holders = veterans  # complete, or about to be
            if rng.random() < DOUBTFUL_SHARE:  # in doubt: the quality engine wants more labels
                item.priority, item.target = 1, RAISED_TARGET
        elif roll < 0.50:
            holders = rng.sample(veterans, 2)
        elif roll < 0.65:
            holders = rng.sample(veterans, 1)
        else:
            holders = []  # open
        submit_share = 1.0 if gold else 0.9 if len(holders) == OVERLAP else 0.6
        for worker in holders:
            status_roll = rng.random()
            if status_roll < submit_share:
                status, expires_at = Assignment.Status.SUBMITTED, now - timedelta(hours=1)
            elif status_roll < 0.9 or len(holders) == OVERLAP:
                status, expires_at = Assignment.Status.RESERVED, now + timedelta(minutes=8)
            else:  # the worker walked away and the sweeper has not freed the slot yet
                status, expires_at = Assignment.Status.RESERVED, now - timedelta(minutes=3)
            plans.append((item, worker, status, expires_at))
            item.annotation_count += status == Assignment.Status.SUBMITTED
        item.slots_taken = len(holders)
        items.append(item)
    Item.objects.bulk_create(items, batch_size=BATCH)

    submitted = [plan for plan in plans if plan[2] == Assignment.Status.SUBMITTED]
    annotations = Annotation.objects.bulk_create(
        [
            Annotation(
                project_id=project.pk,
                item=item,
                author=worker,
                value={"label": rng.choice(["positive", "negative"])},
                duration_ms=rng.randint(800, 20_000),
            )
            for item, worker, _status, _expires in submitted
        ],
        batch_size=BATCH,
    )
    annotation_of = dict(zip(map(id, submitted), annotations, strict=True))
    assignments = []
    for plan in plans:
        item, worker, status, expires_at = plan
        assignments.append(
            Assignment(
                project_id=project.pk,
                item=item,
                worker=worker,
                status=status,
                annotation=annotation_of.get(id(plan)),
                expires_at=expires_at,
                finished_at=now if status == Assignment.Status.SUBMITTED else None,
            )
        )
    Assignment.objects.bulk_create(assignments, batch_size=BATCH)
    return sum(
        1
        for _item, _worker, status, expires_at in plans
        if status == Assignment.Status.RESERVED and expires_at < now
    )


@pytest.fixture(scope="module")
def crowd(django_db_setup, django_db_blocker):
    """The large project, built once for the module inside a transaction rolled back at the end."""
    with django_db_blocker.unblock(), transaction.atomic():
        rng = random.Random(20_240_501)
        owner = UserFactory(username="plan-owner")
        project = ProjectFactory(created_by=owner, overlap=OVERLAP, gold_ratio=0.1)
        veterans = [make_annotator(project, f"plan-veteran-{n}") for n in range(3)]
        newcomer = make_annotator(project, "plan-newcomer")
        reliable = make_annotator(project, "plan-reliable")
        WorkerStanding.objects.create(
            project=project, worker=reliable, gold_rate=0.0, reliable=True
        )
        WorkerStanding.objects.create(project=project, worker=veterans[0], gold_rate=0.3)
        noise = ProjectFactory(created_by=owner, overlap=OVERLAP)
        for worker in veterans:
            make_annotator(noise, worker.username)

        stale = _populate(project, REGULAR_ITEMS, gold=False, veterans=veterans, rng=rng)
        stale += _populate(project, GOLD_ITEMS, gold=True, veterans=veterans, rng=rng)
        stale += _populate(noise, NOISE_ITEMS, gold=False, veterans=veterans, rng=rng)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE " + ", ".join(HOT_TABLES))

        counts = {
            "items": Item.objects.count(),
            "doubtful items": Item.objects.filter(project=project, priority__gt=0).count(),
            "retired gold": Item.objects.filter(gold_retired=True).count(),
            "assignments": Assignment.objects.count(),
            "annotations": Annotation.objects.count(),
            "stale reservations": stale,
        }
        show(f"\n[query plans] data set: {counts}")
        yield Crowd(project, veterans, newcomer, reliable, stale_count=stale, counts=counts)
        transaction.set_rollback(True)


@dataclass
class Plan:
    sql: str
    text: str  # EXPLAIN (ANALYZE, BUFFERS) for people
    tree: dict  # the same as JSON, for the checks
    runs: int = 1  # how many times the service sent this statement (with any parameters)

    @property
    def execution_ms(self) -> float:
        return self.tree["Execution Time"]


class PlanRecorder:
    """Execute wrapper: EXPLAIN ANALYZEs each distinct statement just before it runs for real.

    Explaining first, in a savepoint that is rolled back, measures every statement against the
    state it really meets (a replay afterwards would meet the state the service left behind).
    """

    def __init__(self) -> None:
        self.plans: dict[str, Plan] = {}
        self.statements = 0
        self._explaining = False

    def __call__(self, execute, sql, params, many, context):
        if self._explaining:
            return execute(sql, params, many, context)
        if not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE")):
            self.statements += 1
        if not many and EXPLAINABLE.match(sql):
            if sql in self.plans:
                self.plans[sql].runs += 1
            else:
                self._explaining = True
                try:
                    self.plans[sql] = Plan(
                        sql=sql,
                        text=explain(sql, params, "ANALYZE, BUFFERS, COSTS OFF"),
                        tree=json.loads(explain(sql, params, "ANALYZE, FORMAT JSON"))[0],
                    )
                finally:
                    self._explaining = False
        return execute(sql, params, many, context)


def capture(function, **kwargs):
    recorder = PlanRecorder()
    with connection.execute_wrapper(recorder):
        result = function(**kwargs)
    return result, recorder


def explain(sql: str, params, options: str) -> str:
    """EXPLAIN one statement inside a savepoint, so the writes of ANALYZE are undone."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN ({options}) {sql}", params)
        rows = cursor.fetchall()
        transaction.set_rollback(True)
    if len(rows) == 1 and not isinstance(rows[0][0], str):  # psycopg decodes JSON itself
        return json.dumps(rows[0][0])
    return "\n".join(row[0] for row in rows)


def _nodes(node: dict):
    yield node
    for child in node.get("Plans", []):
        yield from _nodes(child)


def hot_table_reads(plan: Plan) -> tuple[list[str], int]:
    """Sequential scans of hot tables, and hot-table rows read only to be thrown away."""
    seq_scans, discarded = [], 0
    for node in _nodes(plan.tree["Plan"]):
        table = node.get("Relation Name")
        if table not in HOT_TABLES or node["Node Type"] == "ModifyTable":
            continue
        if "Seq Scan" in node["Node Type"]:
            seq_scans.append(table)
        # EXPLAIN reports these counters per loop.
        removed = node.get("Rows Removed by Filter", 0) + node.get(
            "Rows Removed by Index Recheck", 0
        )
        discarded += round(removed * node.get("Actual Loops", 1))
    return seq_scans, discarded


def assert_indexed(path: str, recorder: PlanRecorder) -> list[Plan]:
    """Print each distinct plan of `path`; fail on a hot-table seq scan or a wasteful walk."""
    plans = list(recorder.plans.values())
    assert plans, f"{path}: no statement was captured"
    show(f"\n##### {path}: {recorder.statements} statements sent, {len(plans)} distinct")
    failures = []
    for number, plan in enumerate(plans, start=1):
        seq_scans, discarded = hot_table_reads(plan)
        show(f"\n=== {path} · statement {number}/{len(plans)}, sent {plan.runs}x")
        show(" ".join(plan.sql.split())[:700])
        show(LONG_ARRAY.sub(lambda m: f"'{{{m.group(0).count(',') + 1} values}}'", plan.text))
        show(
            f"--- {path} #{number}: {plan.execution_ms:.3f} ms, "
            f"hot-table rows discarded: {discarded}"
        )
        if seq_scans:
            failures.append(f"sequential scan of {sorted(set(seq_scans))}")
        if discarded > DISCARD_BUDGET:
            failures.append(f"{discarded} hot-table rows read and thrown away")
        if failures:
            pytest.fail(f"{path}: {'; '.join(failures)}\n{plan.sql}\n{plan.text}")
    return plans


@pytest.fixture
def no_sweep(monkeypatch):
    """Claims also sweep stale reservations now and then; those queries have their own tests."""
    monkeypatch.setattr("crowd.services.claims.assignment_expire_stale", lambda **kwargs: 0)


@pytest.fixture
def regular_claims(monkeypatch, no_sweep):
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.99)  # no gold this time


def test_claim_for_a_veteran_worker_reads_items_by_index(crowd, regular_claims):
    veteran = crowd.veterans[0]

    assignment, recorder = capture(assignment_claim_next, worker=veteran, project=crowd.project)

    assert assignment is not None
    assert any("SKIP LOCKED" in sql.upper() for sql in recorder.plans)
    plans = assert_indexed("claim (veteran)", recorder)
    assert any("annotation_item" in plan.text for plan in plans)


def test_claim_for_a_new_worker_reads_items_by_index(crowd, regular_claims):
    assignment, recorder = capture(
        assignment_claim_next, worker=crowd.newcomer, project=crowd.project
    )

    item = Item.objects.get(pk=assignment.item_id)
    assert item.is_gold is False
    assert item.slots_taken == OVERLAP  # fullest first: it completes a nearly done item
    assert_indexed("claim (newcomer)", recorder)


def test_gold_claim_reads_gold_items_by_index(crowd, monkeypatch, no_sweep):
    monkeypatch.setattr("crowd.services.claims.random.random", lambda: 0.0)  # gold this time
    veteran = crowd.veterans[1]

    assignment, recorder = capture(assignment_claim_next, worker=veteran, project=crowd.project)

    served = Item.objects.get(pk=assignment.item_id)
    assert served.is_gold is True
    assert served.gold_retired is False
    plans = assert_indexed("claim (gold)", recorder)
    assert any("item_gold_idx" in plan.text for plan in plans)


def test_claim_for_a_reliable_worker_reads_doubtful_items_by_index(crowd, no_sweep):
    assignment, recorder = capture(
        assignment_claim_next, worker=crowd.reliable, project=crowd.project
    )

    item = Item.objects.get(pk=assignment.item_id)
    assert item.priority == 1
    assert item.is_gold is False
    assert item.slots_taken == OVERLAP + 1  # doubtful, fullest first
    plans = assert_indexed("claim (reliable worker: doubtful first)", recorder)
    assert any("item_claimable_doubtful_idx" in plan.text for plan in plans)


def _refused(**kwargs):
    with pytest.raises(WorkerBlockedError) as error:
        assignment_claim_next(**kwargs)
    return error.value


def test_claim_for_a_blocked_worker_is_refused_by_index(crowd, regular_claims):
    worker_block(worker=crowd.newcomer, project=crowd.project, reason="Spam")

    refused, recorder = capture(_refused, worker=crowd.newcomer, project=crowd.project)

    assert "Spam" in refused.message
    assert_indexed("claim (blocked worker)", recorder)


def test_block_releases_reservations_by_index(crowd, regular_claims):
    veteran = crowd.veterans[1]
    live = Assignment.objects.filter(
        worker=veteran, project=crowd.project, status=Assignment.Status.RESERVED
    )
    held = live.count()
    assert held > 0

    block, recorder = capture(worker_block, worker=veteran, project=crowd.project, reason="Spam")

    assert block.is_active
    assert not live.exists()
    assert_indexed(f"block (releases {held} reservations)", recorder)


def test_stale_expiry_for_one_project_reads_only_stale_reservations(crowd):
    expired, recorder = capture(assignment_expire_stale, project_id=crowd.project.pk, limit=100)

    assert expired == 100
    assert_indexed("expire stale (one project, limit 100)", recorder)


def test_stale_expiry_sweeper_reads_only_stale_reservations(crowd):
    expired, recorder = capture(assignment_expire_stale, limit=1000)

    assert expired == min(1000, crowd.stale_count)
    assert_indexed("expire stale (sweeper: all projects, limit 1000)", recorder)


def test_stale_expiry_with_nothing_stale_reads_next_to_nothing(crowd):
    while assignment_expire_stale(limit=1000):
        pass  # the steady state: the sweeper has caught up
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE crowd_assignment")

    scoped, scoped_recorder = capture(
        assignment_expire_stale, project_id=crowd.project.pk, limit=100
    )
    swept, sweeper_recorder = capture(assignment_expire_stale, limit=1000)

    assert (scoped, swept) == (0, 0)
    assert_indexed("expire stale, nothing stale (one project)", scoped_recorder)
    assert_indexed("expire stale, nothing stale (sweeper)", sweeper_recorder)


def test_submit_touches_rows_by_primary_key(crowd, regular_claims):
    assignment = assignment_claim_next(worker=crowd.newcomer, project=crowd.project)

    annotation, recorder = capture(
        assignment_submit,
        assignment=assignment,
        worker=crowd.newcomer,
        value={"label": "positive"},
        duration_ms=4200,
    )

    assert Assignment.objects.get(pk=assignment.pk).annotation_id == annotation.pk
    assert_indexed("submit", recorder)


def test_skip_touches_rows_by_primary_key(crowd, regular_claims):
    worker = crowd.veterans[2]
    assignment = assignment_claim_next(worker=worker, project=crowd.project)

    skipped, recorder = capture(assignment_skip, assignment=assignment, worker=worker)

    assert skipped.status == Assignment.Status.SKIPPED
    assert_indexed("skip", recorder)
