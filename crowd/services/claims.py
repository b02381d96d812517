"""The assignment engine: claiming work, submitting, skipping and expiring reservations.

Lock order, everywhere: an Assignment row before its Item row; Item rows in primary-key order.
Claiming locks a free Item row with SKIP LOCKED and inserts a new Assignment, so it never waits
on a row another transaction holds. The lock is FOR NO KEY UPDATE (only the counters change), so
rows that merely point at the item (annotations and predictions, whose deferred foreign-key checks
take KEY SHARE at commit) never make a claim skip it.

The claim's rules live in one queryset (`_claimable`), compiled to SQL for PostgreSQL's
one-statement claim and run as is on SQLite: pool membership, blocks (project and pool),
never the same item twice, open slots, retired gold never served, and the routing order
(doubtful items, priority > 0, first for reliable workers and last for everyone else).
With the project's serving order "uncertainty" or "rare_first" (active learning), open regular
items are served by descending `serve_rank` within each routing tier (quality.model keeps it).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import time
from collections import Counter
from collections.abc import Collection
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import psycopg
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from annotation.models import Annotation, Item, Project
from annotation.services import (
    annotation_announce,
    annotation_create,
    annotation_input_clean,
    annotation_suggestion_outcome,
)
from annotation.task_types import task_type_get
from core.exceptions import ApplicationError, ConflictError, NotAllowedError
from crowd.exceptions import WorkerBlockedError
from crowd.models import (
    Assignment,
    PoolMember,
    ProjectPool,
    ProjectRequirement,
    WorkerBlock,
    WorkerStanding,
)
from crowd.pools import requirements_check
from crowd.selectors import assignment_list_live, suggestions_shown_to, worker_block_active
from crowd.services.members import worker_may_label

CLAIM_ATTEMPTS = 3


def assignment_deadline(*, project: Project, now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=project.reservation_timeout_seconds)


def _slots_release(item_counts: Counter[int]) -> None:
    """Give back slots: lock the items in primary-key order, then one UPDATE per count."""
    list(
        Item.objects.filter(pk__in=list(item_counts))
        .order_by("pk")
        .select_for_update(no_key=True)  # counters only: inserts pointing at the item go on
        .values_list("pk", flat=True)
    )
    by_count: dict[int, list[int]] = {}
    for item_id, count in item_counts.items():
        by_count.setdefault(count, []).append(item_id)
    for count, item_ids in sorted(by_count.items()):
        Item.objects.filter(pk__in=item_ids).update(slots_taken=F("slots_taken") - count)


def assignment_expire_stale(*, project_id: int | None = None, limit: int = 500) -> int:
    """Expire reservations past their deadline and free their slots; returns how many.

    Rows another transaction holds (a submit in flight) are skipped, not waited for.
    """
    now = timezone.now()
    with transaction.atomic():
        stale = Assignment.objects.filter(status=Assignment.Status.RESERVED, expires_at__lt=now)
        if project_id is not None:
            stale = stale.filter(project_id=project_id)
        rows = list(
            stale.select_for_update(skip_locked=True)
            .order_by("expires_at")
            .values_list("id", "item_id")[:limit]
        )
        if not rows:
            return 0
        Assignment.objects.filter(pk__in=[row[0] for row in rows]).update(
            status=Assignment.Status.EXPIRED, finished_at=now
        )
        _slots_release(Counter(row[1] for row in rows))
    return len(rows)


_last_sweep: dict[int, datetime] = {}


def _expire_stale_now_and_then(*, project_id: int) -> None:
    """Sweep the project's stale reservations at most every few seconds per process.

    The beat sweeper does the same for every project; this keeps the embedded default (no
    beat) honest and frees expired slots within seconds under load.
    """
    now = timezone.now()
    last = _last_sweep.get(project_id)
    interval = timedelta(seconds=settings.ASSAY_SWEEP_INTERVAL_SECONDS)
    if last is not None and last <= now < last + interval:
        return
    _last_sweep[project_id] = now
    assignment_expire_stale(project_id=project_id, limit=100)


def _labeler(*, worker: AbstractBaseUser, project: Project) -> Exists:
    """The worker labels here: a member of a labeling pool of the project that has not blocked
    them, and not blocked from the project itself. Neither depends on the item, so PostgreSQL
    evaluates both once per statement (through the blocks' partial unique indexes)."""
    pool_blocked = WorkerBlock.objects.filter(
        worker_id=worker.pk, pool_id=OuterRef("pool_id"), lifted_at__isnull=True
    )
    project_blocked = WorkerBlock.objects.filter(
        worker_id=worker.pk, project_id=project.pk, lifted_at__isnull=True
    )
    return Exists(
        PoolMember.objects.filter(
            user_id=worker.pk,
            pool__project_pools__project_id=project.pk,
            pool__project_pools__rule=ProjectPool.Rule.LABEL,
        )
        .exclude(Exists(pool_blocked))
        .exclude(Exists(project_blocked))
    )


def _ranked(project: Project) -> bool:
    """Whether the project serves regular items by the model's rank (active learning)."""
    return project.serving_order != "default"


def _claimable(
    *,
    worker: AbstractBaseUser,
    project: Project,
    gold: bool,
    reliable: bool = False,
    ranked: bool = False,
) -> Any:
    """Items the worker may claim, best first. Membership and blocks are part of the query, so
    a claim can't skip them. Each ordering walks its own partial index (annotation.Item.Meta;
    the `ranked` ones, highest serve_rank first within the routing tier: migration 0008).
    """
    seen = Assignment.objects.filter(item_id=OuterRef("pk"), worker_id=worker.pk)
    items = Item.objects.filter(
        _labeler(worker=worker, project=project), project_id=project.pk, is_gold=gold
    )
    if gold:
        return items.filter(gold_retired=False).exclude(Exists(seen)).order_by("id")
    priority = "-priority" if reliable else "priority"
    order = (
        (priority, "-serve_rank", "-slots_taken", "id")
        if ranked
        else (priority, "-slots_taken", "id")
    )
    return items.filter(slots_taken__lt=F("target")).exclude(Exists(seen)).order_by(*order)


def _claim_one(
    *, worker: AbstractBaseUser, project: Project, gold: bool, reliable: bool = False
) -> Assignment | None:
    """Lock one claimable item (skipping rows others hold), take a slot, record the claim."""
    if connection.vendor == "postgresql":
        return _claim_one_postgres(worker=worker, project=project, gold=gold, reliable=reliable)
    with transaction.atomic():
        item = (
            _claimable(
                worker=worker,
                project=project,
                gold=gold,
                reliable=reliable,
                ranked=not gold and _ranked(project),
            )
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .only("id", "project_id", "data", "is_gold")
            .first()
        )
        if item is None:
            return None
        Item.objects.filter(pk=item.pk).update(slots_taken=F("slots_taken") + 1)
        return Assignment.objects.create(
            project_id=project.pk,
            item=item,
            worker=worker,
            expires_at=assignment_deadline(project=project),
        )


# Stand-in ids: the claim SQL is compiled once per process and the real ids bound per call.
_ANY_WORKER, _ANY_PROJECT = -900_001, -900_002


@functools.cache
def _claimable_sql(gold: bool, reliable: bool, ranked: bool = False) -> tuple[str, tuple[Any, ...]]:
    """The ORM's SQL for `_claimable`, compiled once (compiling costs more than running it)."""
    worker, project = SimpleNamespace(pk=_ANY_WORKER), SimpleNamespace(pk=_ANY_PROJECT)
    claimable = _claimable(
        worker=worker,  # type: ignore[arg-type]
        project=project,  # type: ignore[arg-type]
        gold=gold,
        reliable=reliable,
        ranked=ranked,
    )
    return claimable.values("id")[:1].query.sql_with_params()


def _fetch_one_prepared(sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """Run a hot statement as a prepared statement: PostgreSQL plans it once per connection.

    Django's cursors bind parameters client-side, so PostgreSQL would plan every call. The
    statement still passes through the connection's execute wrappers and query log.
    """
    connection.ensure_connection()
    started = time.monotonic()
    with psycopg.Cursor(connection.connection) as cursor:

        def run(sql: str, params: Any, many: bool, context: dict[str, Any]) -> None:
            with connection.wrap_database_errors:
                cursor.execute(sql, params, prepare=True)

        executor: Any = run
        for wrapper in reversed(connection.execute_wrappers):
            executor = functools.partial(wrapper, executor)
        executor(sql, params, False, {"connection": connection, "cursor": cursor})
        row = cursor.fetchone()
    if connection.queries_logged:
        connection.queries_log.append(
            {"sql": f"{sql} -- params {params!r}", "time": f"{time.monotonic() - started:.3f}"}
        )
    return row


def _claim_one_postgres(
    *, worker: AbstractBaseUser, project: Project, gold: bool, reliable: bool
) -> Assignment | None:
    """The same claim as one statement: lock, take the slot and insert in one round trip.

    The item filter is the ORM's own SQL for `_claimable`, so both paths share one definition.
    """
    picked_sql, picked_params = _claimable_sql(gold, reliable, not gold and _ranked(project))
    picked_params = tuple(
        worker.pk if p == _ANY_WORKER else project.pk if p == _ANY_PROJECT else p
        for p in picked_params
    )
    now = timezone.now()
    expires_at = assignment_deadline(project=project, now=now)
    sql = f"""
        WITH picked AS ({picked_sql} FOR NO KEY UPDATE OF "annotation_item" SKIP LOCKED),
        taken AS (
            UPDATE "annotation_item" SET "slots_taken" = "slots_taken" + 1
            FROM picked WHERE "annotation_item"."id" = picked."id"
            RETURNING "annotation_item"."id", "annotation_item"."data"
        ),
        claimed AS (
            INSERT INTO "crowd_assignment"
                ("project_id", "item_id", "worker_id", "status", "created_at", "expires_at")
            SELECT %s, taken."id", %s, %s, %s, %s FROM taken
            RETURNING "id", "item_id"
        )
        SELECT claimed."id", claimed."item_id", taken."data"
        FROM claimed JOIN taken ON taken."id" = claimed."item_id"
    """  # noqa: S608 - every value is a bound parameter; the subquery is ORM-compiled
    params = (*picked_params, project.pk, worker.pk, Assignment.Status.RESERVED, now, expires_at)
    row = _fetch_one_prepared(sql, params)
    if row is None:
        return None
    assignment_id, item_id, data = row
    item = Item(
        id=item_id,
        project_id=project.pk,
        data=json.loads(data) if isinstance(data, str) else data,
        is_gold=gold,
    )
    assignment = Assignment(
        id=assignment_id,
        project_id=project.pk,
        worker=worker,
        status=Assignment.Status.RESERVED,
        created_at=now,
        expires_at=expires_at,
    )
    assignment.item = item
    return assignment


def _regular_left(*, worker: AbstractBaseUser, project: Project) -> bool:
    """Whether any regular item is open to the worker (walks the claim index, like a claim)."""
    claimable = _claimable(worker=worker, project=project, gold=False)
    return claimable.values_list("id", flat=True).first() is not None


# One round trip for what every claim needs to know first: the worker's standing (no row: the
# defaults) and whether the project has requirements at all (an index probe; only then does
# crowd.pools.requirements_check run its one query).
_STANDING_SQL = (
    'SELECT s."gold_rate", s."reliable", EXISTS (SELECT 1 FROM "crowd_projectrequirement" r '
    'WHERE r."project_id" = %s) FROM (SELECT 1) AS one LEFT JOIN "crowd_workerstanding" s '
    'ON s."project_id" = %s AND s."worker_id" = %s'
)


def _standing(*, worker: AbstractBaseUser, project: Project) -> tuple[float, bool, bool]:
    """The worker's gold rate (the project's gold ratio unless the quality engine set one),
    whether they count as reliable, and whether the project has requirements. One lookup on
    the standing's unique index (a prepared statement on PostgreSQL, like the claim: it runs on
    every next call)."""
    if connection.vendor == "postgresql":
        row = _fetch_one_prepared(_STANDING_SQL, (project.pk, project.pk, worker.pk))
        gold_rate, reliable, has_requirements = row or (None, False, False)
    else:
        standing = WorkerStanding.objects.filter(project_id=project.pk, worker_id=worker.pk)
        gold_rate, reliable = standing.values_list("gold_rate", "reliable").first() or (None, False)
        has_requirements = ProjectRequirement.objects.filter(project_id=project.pk).exists()
    gold_rate = project.gold_ratio if gold_rate is None else gold_rate
    return gold_rate, bool(reliable), bool(has_requirements)


def assignment_claim_next(*, worker: AbstractBaseUser, project: Project) -> Assignment | None:
    """Give the worker one item: fullest open items first, gold mixed in at the worker's gold
    rate (adaptive gold), doubtful items first for reliable workers and last for the others.

    Returns None when no regular item is left for this worker (gold alone is never served).
    Membership and blocks are checked inside the claim query; only an empty result pays for
    telling "nothing left" (None) from "blocked" (WorkerBlockedError, with the reason) and
    "not a labeler here" (NotAllowedError). The project's requirements are checked first
    (crowd.pools.requirements_check: RequirementNotMetError, and nothing is claimed).
    """
    return _assignment_claim_next(worker=worker, project=project, checked=False)


def _assignment_claim_next(
    *, worker: AbstractBaseUser, project: Project, checked: bool
) -> Assignment | None:
    _expire_stale_now_and_then(project_id=project.pk)
    gold_rate, reliable, has_requirements = _standing(worker=worker, project=project)
    if has_requirements and not checked:
        requirements_check(worker=worker, project=project)
    claimed = _claim_next(worker=worker, project=project, gold_rate=gold_rate, reliable=reliable)
    if claimed is None:
        block = worker_block_active(worker=worker, project=project)
        if block is not None:
            raise WorkerBlockedError(block)
        if not worker_may_label(worker=worker, project=project):
            raise NotAllowedError("You are not a labeler on this project.")
    return claimed


def _claim_next(
    *, worker: AbstractBaseUser, project: Project, gold_rate: float, reliable: bool
) -> Assignment | None:
    want_gold = gold_rate > 0 and random.random() < gold_rate
    for _attempt in range(CLAIM_ATTEMPTS):
        try:
            if want_gold and _regular_left(worker=worker, project=project):
                gold = _claim_one(worker=worker, project=project, gold=True)
                if gold is not None:
                    return gold
            return _claim_one(worker=worker, project=project, gold=False, reliable=reliable)
        except IntegrityError:
            # A concurrent claim by this same worker won the (item, worker) race: try again.
            continue
    return None


def _assignment_lock(*, assignment_id: int, worker: AbstractBaseUser) -> Assignment:
    try:
        return (
            Assignment.objects.select_for_update(of=("self",))
            .select_related("item__project")
            .get(pk=assignment_id, worker_id=worker.pk)
        )
    except Assignment.DoesNotExist:
        raise ApplicationError("No such assignment.", code="not_found") from None


def client_key_compute(*, address: str, user_agent: str) -> str:
    """A keyed hash (HMAC-SHA256 with SECRET_KEY, 32 hex characters) of a client's network
    address and user agent: several accounts behind one device share it, and the address itself
    is never stored. "" when both are unknown."""
    if not address and not user_agent:
        return ""
    message = f"{address}\n{user_agent}".encode()
    digest = hmac.new(settings.SECRET_KEY.encode(), message, hashlib.sha256).hexdigest()
    return digest[:32]


def assignment_submit(
    *,
    assignment: Assignment,
    worker: AbstractBaseUser,
    value: Any,
    duration_ms: int,
    client_key: str = "",
    suggestion_id: int | None = None,
) -> Annotation:
    """Store the worker's answer for a claim. Repeating a submit returns the same annotation.

    A late submit is still taken while its slot is free and the worker is not blocked;
    otherwise it is refused (409, or 403 for a blocked worker). `client_key` comes from
    client_key_compute. `suggestion_id` is the pre-label the page showed: it is recorded (with
    whether the answer is it unchanged, computed here) only when it is a prediction of the item
    and the worker is shown suggestions on the project; otherwise it is ignored.
    """
    project = assignment.project
    checked_item = assignment.item if task_type_get(project.task_type).checks_item else None
    cleaned = annotation_input_clean(
        project=project, value=value, duration_ms=duration_ms, item=checked_item
    )
    if suggestion_id is not None and not suggestions_shown_to(worker=worker, project=project):
        suggestion_id = None
    suggestion = annotation_suggestion_outcome(
        item=assignment.item, suggestion_id=suggestion_id, value=cleaned
    )
    if connection.vendor == "postgresql":
        stored = _submit_reserved_postgres(
            assignment=assignment,
            worker=worker,
            value=cleaned,
            duration_ms=duration_ms,
            client_key=client_key,
            schema_version=project.schema_version,
            suggestion=suggestion,
        )
        if stored is not None:
            return stored
    with transaction.atomic():
        locked = _assignment_lock(assignment_id=assignment.pk, worker=worker)
        if locked.status == Assignment.Status.SUBMITTED:
            return Annotation.objects.get(pk=locked.annotation_id)
        if locked.status == Assignment.Status.SKIPPED:
            raise ConflictError("This item was skipped; it cannot be submitted.", code="skipped")
        if locked.status == Assignment.Status.EXPIRED:
            # Blocking a worker expires their reservations: a late submit must not sneak in.
            block = worker_block_active(worker=worker, project=locked.item.project)
            if block is not None:
                raise WorkerBlockedError(block)
            retaken = Item.objects.filter(pk=locked.item_id, slots_taken__lt=F("target")).update(
                slots_taken=F("slots_taken") + 1
            )
            if not retaken and not locked.item.is_gold:
                raise ConflictError(
                    "The reservation expired and the item was given to others.", code="expired"
                )
        annotation = annotation_create(
            item=locked.item,
            author=worker,
            value=value,
            duration_ms=duration_ms,
            client_key=client_key,
            suggestion_id=suggestion[0],
        )
        locked.status = Assignment.Status.SUBMITTED
        locked.annotation = annotation
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "annotation", "finished_at"])
    return annotation


def _submit_reserved_postgres(
    *,
    assignment: Assignment,
    worker: AbstractBaseUser,
    value: dict,
    duration_ms: int,
    client_key: str,
    schema_version: int,
    suggestion: tuple[int | None, bool | None] = (None, None),
) -> Annotation | None:
    """The common case (a live reservation) in one statement: lock it, store the annotation,
    count it on the item and close the claim. None when the claim is not reserved any more,
    or when the project's label schema changed since the answer was checked (the project row
    is read under a key-share lock, which waits for a schema change in progress); the caller
    then takes the general path (idempotent repeat, expired, skipped, checked again).
    """
    now = timezone.now()
    sql = """
        WITH schema AS (
            SELECT "id" FROM "annotation_project"
            WHERE "id" = %s AND "schema_version" = %s
            FOR KEY SHARE
        ),
        held AS (
            SELECT "id", "item_id", "project_id" FROM "crowd_assignment"
            WHERE "id" = %s AND "worker_id" = %s AND "status" = %s
              AND "project_id" IN (SELECT "id" FROM schema)
            FOR UPDATE
        ),
        stored AS (
            INSERT INTO "annotation_annotation"
                ("project_id", "item_id", "author_id", "value", "duration_ms", "client_key",
                 "created_at", "schema_version", "suggestion_id", "suggestion_accepted")
            SELECT held."project_id", held."item_id", %s, %s::jsonb, %s, %s, %s, %s,
                   (SELECT "id" FROM "annotation_prediction" WHERE "id" = %s), %s
            FROM held
            RETURNING "id", "item_id", "project_id"
        ),
        counted AS (
            UPDATE "annotation_item" SET "annotation_count" = "annotation_count" + 1
            FROM stored WHERE "annotation_item"."id" = stored."item_id"
        ),
        closed AS (
            UPDATE "crowd_assignment"
            SET "status" = %s, "annotation_id" = stored."id", "finished_at" = %s
            FROM stored WHERE "crowd_assignment"."id" = %s
        )
        SELECT "id", "item_id", "project_id" FROM stored
    """
    params = (
        assignment.project_id,
        schema_version,
        assignment.pk,
        worker.pk,
        Assignment.Status.RESERVED,
        worker.pk,
        json.dumps(value),
        duration_ms,
        client_key,
        now,
        schema_version,
        suggestion[0],
        suggestion[1],
        Assignment.Status.SUBMITTED,
        now,
        assignment.pk,
    )
    row = _fetch_one_prepared(sql, params)
    if row is None:
        return None
    annotation = Annotation(
        id=row[0],
        item_id=row[1],
        project_id=row[2],
        author=worker,
        value=value,
        duration_ms=duration_ms,
        client_key=client_key,
        created_at=now,
        schema_version=schema_version,
        suggestion_id=suggestion[0],
        suggestion_accepted=suggestion[1],
    )
    annotation_announce(annotation=annotation)
    return annotation


def assignment_skip(*, assignment: Assignment, worker: AbstractBaseUser) -> Assignment:
    """Give an item back; this worker will not be offered it again. Idempotent."""
    with transaction.atomic():
        locked = _assignment_lock(assignment_id=assignment.pk, worker=worker)
        if locked.status == Assignment.Status.SUBMITTED:
            raise ConflictError("This item was already submitted.", code="submitted")
        if locked.status == Assignment.Status.RESERVED:
            locked.status = Assignment.Status.SKIPPED
            locked.finished_at = timezone.now()
            locked.save(update_fields=["status", "finished_at"])
            _slots_release(Counter([locked.item_id]))
    return locked


def assignment_list_ready(
    *,
    worker: AbstractBaseUser,
    project: Project,
    held: Collection[int],
    pending: Collection[int] = (),
    size: int = 2,
) -> list[Assignment]:
    """Fill a worker's buffer up to `size`: live reservations first, then new claims.

    `held` are shown to the worker already; `pending` were answered by requests in flight.
    The project's requirements are checked once, before anything is handed out.
    """
    requirements_check(worker=worker, project=project)
    want = max(size - len(held), 0)
    live = assignment_list_live(worker=worker, project=project)
    ready = list(live.exclude(pk__in=[*held, *pending])[:want])
    while len(ready) < want:
        claimed = _assignment_claim_next(worker=worker, project=project, checked=True)
        if claimed is None:
            break
        ready.append(claimed)
    return ready
