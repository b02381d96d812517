"""Running the quality engine on a project: scheduling, the recompute, and what it writes.

A recompute reads the project's annotations, fits the configured truth-inference model (gold
and expert decisions as fixed truths), scores workers, applies the spam rules, adapts overlap,
gold rates and skills, and writes ItemScore, WorkerScore and ProjectScore rows. It runs in one
transaction under a per-project advisory lock, so results are always a consistent snapshot and
a crash leaves the previous snapshot in place. Only rows whose values changed are written.

A *light* run (after submissions) does all of that except the expensive project statistics
(bootstrap agreement, trends, Cohen's matrix), whose previous values it keeps; a *full* run
also recomputes them. The debounced post-submit task runs full while the project is small
(fewer than FULL_EVERY_RUN_BELOW annotations: the statistics cost little there, and owners
watching a new project see them move), and otherwise light unless the last full run is older
than FULL_RECOMPUTE_MAX_AGE; Celery beat runs a full one for every project with newer
annotations (quality_recompute_stale_enqueue).

Submissions never depend on Redis: when the debounce key or the task cannot be sent, the
process that stored the annotation keeps the project as owed and retries in the background
until Redis answers, so scores catch up soon after an outage even if nobody submits again
(benchmarks/drill_redis.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BigIntegerField, Exists, OuterRef, Subquery
from django.db.models.fields.json import KT
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotation.models import Annotation, Item, Project
from annotation.task_types import task_config_of, task_type_get
from quality.adaptive import GoldPolicy, overlap_decisions
from quality.models import (
    ItemScore,
    ProjectScore,
    QualityAction,
    QualityConfig,
    ReviewDecision,
)
from quality.services import engine, scores
from quality.services.approval import approval_decisions_apply
from quality.services.engine import Consensus, Votes
from quality.services.typed import typed_recompute
from quality.tasks import quality_recompute_task

logger = logging.getLogger(__name__)

# A burst of submissions within this window costs one recompute, started this long after the
# first of them (short: the Redis broker redelivers long ETAs, see STYLE §4).
RECOMPUTE_DELAY_SECONDS = 2
# Safety net: if a scheduled task is lost, the debounce key expires and the next submission
# schedules again. A task clears the key as soon as it starts, so this rarely matters.
RECOMPUTE_PENDING_TTL_SECONDS = 60
# A recompute that could not be queued (Redis or the broker down) is retried by the process
# in the background: first after this many seconds, then doubling up to the maximum, until it
# is queued or this long has passed (Celery beat's sweep of stale projects catches the rest).
RECOMPUTE_RETRY_FIRST_SECONDS = 1.0
RECOMPUTE_RETRY_MAX_SECONDS = 8.0
RECOMPUTE_RETRY_GIVE_UP_SECONDS = 30 * 60.0
# First key of the two-key PostgreSQL advisory lock (the second is the project id). Any
# constant works as long as no other code uses it; this one spells "QR" (quality recompute).
RECOMPUTE_LOCK_NAMESPACE = 0x5152
# A post-submit recompute is a full one when the last full run is older than this.
FULL_RECOMPUTE_MAX_AGE = timedelta(minutes=10)
# Below this many scored annotations every post-submit run is a full one.
FULL_EVERY_RUN_BELOW = 50_000
# Rule actions that take a worker's labels out of consensus.
EXCLUDING_KINDS = (QualityAction.Kind.EXCLUDE, QualityAction.Kind.BLOCK)
# New exclusions refit the model within the same run, at most this many times.
MAX_RULE_ROUNDS = 3

State = ItemScore.State

# Projects whose recompute this process still owes (id -> monotonic time of the first
# failure), and the thread retrying them; see _owe.
_owed: dict[int, float] = {}
_owed_lock = threading.Lock()
_retrier: threading.Thread | None = None


def _pending_key(project_id: int) -> str:
    return f"quality:recompute-pending:{project_id}"


def quality_config_get(*, project: Project) -> QualityConfig:
    """The project's quality configuration, created with the defaults on first use."""
    config, _ = QualityConfig.objects.get_or_create(project=project)
    return config


def quality_recompute_schedule(*, project_id: int) -> None:
    """Enqueue at most one quality recompute per project per debounce window, after commit.

    Both the debounce key and the enqueue happen in an on_commit callback, so a rolled-back
    transaction neither sends a task nor blocks later scheduling with a stale key. The signal
    receiver already runs after commit; then the callback runs immediately.
    """
    transaction.on_commit(partial(_recompute_enqueue, project_id))


def _recompute_enqueue(project_id: int) -> None:
    """Send the debounced task. Runs after the submission committed, so it never fails it.

    With Redis or the broker down the error is logged, the key dropped and the project owed:
    this process keeps retrying in the background (see _owe), so the recompute is queued soon
    after Redis returns even when nobody submits any more.
    """
    if not _enqueue_once(project_id, log_failure=True):
        _owe(project_id)
    elif _owed:  # queued now: whatever this process still owed for the project is settled
        with _owed_lock:
            _owed.pop(project_id, None)


def _enqueue_once(project_id: int, *, log_failure: bool) -> bool:
    """Try to queue the debounced task; False when Redis or the broker refused."""
    key = _pending_key(project_id)
    try:
        # cache.add is atomic (SET NX on Redis): only the first caller in a window enqueues.
        if cache.add(key, 1, timeout=RECOMPUTE_PENDING_TTL_SECONDS):
            quality_recompute_task.apply_async(
                args=(project_id,), countdown=RECOMPUTE_DELAY_SECONDS
            )
    except Exception:
        if log_failure:
            logger.exception("Could not schedule a quality recompute for project %s", project_id)
        with contextlib.suppress(Exception):
            cache.delete(key)
        return False
    return True


def _owe(project_id: int) -> None:
    """Remember a recompute this process could not queue, and make sure a retrier runs."""
    global _retrier
    with _owed_lock:
        _owed.setdefault(project_id, time.monotonic())
        if _retrier is None or not _retrier.is_alive():  # none yet, or lost in a fork
            _retrier = threading.Thread(
                target=_owed_retry, name="quality-recompute-retry", daemon=True
            )
            _retrier.start()


def _owed_retry() -> None:
    """Retry owed recomputes with a doubling delay until each is queued or given up.

    A thread of its own (only cache and broker calls, never the database): it must not hold
    up a request, and must run when no request comes. Owed projects live in this process's
    memory only; if the process dies first, Celery beat's stale sweep is the backstop.
    """
    global _retrier
    delay = RECOMPUTE_RETRY_FIRST_SECONDS
    while True:
        time.sleep(delay)
        with _owed_lock:
            owed = dict(_owed)
        for project_id, since in owed.items():
            queued = _enqueue_once(project_id, log_failure=False)
            if queued or time.monotonic() - since > RECOMPUTE_RETRY_GIVE_UP_SECONDS:
                if not queued:
                    logger.error("Gave up queueing a quality recompute for project %s", project_id)
                with _owed_lock:
                    if _owed.get(project_id) == since:
                        del _owed[project_id]
        with _owed_lock:
            if not _owed:
                _retrier = None
                return
        delay = min(delay * 2, RECOMPUTE_RETRY_MAX_SECONDS)


def quality_recompute_scheduled(
    *, project_id: int, full: bool | None = None
) -> ProjectScore | None:
    """Run a queued recompute (None if the project is gone).

    `full=None` is the debounced post-submit run: it reopens the debounce window *before*
    reading annotations (so a submission committed after this point schedules a new run),
    and is light unless the last full run is older than FULL_RECOMPUTE_MAX_AGE.
    """
    if full is None:
        cache.delete(_pending_key(project_id))
    project = Project.objects.filter(pk=project_id).first()
    if project is None:  # deleted after the task was enqueued: nothing to score
        return None
    if full is None:
        full = _full_due(project_id=project.pk)
    return quality_recompute(project=project, full=full)


def _full_due(*, project_id: int, now: datetime | None = None) -> bool:
    row = (
        ProjectScore.objects.filter(project_id=project_id)
        .values_list("details", "annotations_scored")
        .first()
    )
    if row is None:
        return True
    details, annotations = row
    if annotations < FULL_EVERY_RUN_BELOW:
        return True
    stamp = parse_datetime(str((details or {}).get("full_at") or ""))
    return stamp is None or stamp < (now or timezone.now()) - FULL_RECOMPUTE_MAX_AGE


def project_list_stale(*, now: datetime | None = None) -> list[int]:
    """Ids of projects with annotations newer than their last full recompute.

    A full run records the highest annotation id it read; one index probe on
    (project, id) per project tells whether anything came after.
    """
    last_seen = Subquery(
        ProjectScore.objects.filter(project_id=OuterRef("pk"))
        .annotate(seen=Cast(KT("details__annotation_max_id"), BigIntegerField()))
        .values("seen")[:1]
    )
    newer = Annotation.objects.filter(project_id=OuterRef("pk"), id__gt=OuterRef("last_seen"))
    return list(
        Project.objects.annotate(last_seen=Coalesce(last_seen, 0))
        .filter(Exists(newer))
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def quality_recompute_stale_enqueue() -> list[int]:
    """Enqueue a full recompute for every stale project (Celery beat); returns their ids."""
    stale = project_list_stale()
    for project_id in stale:
        transaction.on_commit(
            partial(quality_recompute_task.apply_async, args=(project_id,), kwargs={"full": True})
        )
    return stale


def quality_recompute(*, project: Project, full: bool = True) -> ProjectScore:
    """Recompute the project's quality (see _quality_recompute), then queue a retraining of the
    built-in model when one is due and the project uses pre-labels (suggestions shown, or work
    served by the model's rank)."""
    from quality.model import model_retrain_if_due  # the model package reads these scores

    score = _quality_recompute(project=project, full=full)
    if project.suggestions_enabled or project.serving_order != "default":
        model_retrain_if_due(project=project)
    return score


def _quality_recompute(*, project: Project, full: bool = True) -> ProjectScore:
    """Recompute consensus, worker scores, actions and project scores of one project.

    Idempotent: the same annotations, actions and decisions always give the same rows, and a
    second run writes nothing but ProjectScore.computed_at. Holds a transaction-level
    PostgreSQL advisory lock on (RECOMPUTE_LOCK_NAMESPACE, project id) from before the read
    until commit, so two recomputes of one project never interleave and a waiting one reads
    what the first committed. An advisory lock, not a row lock: the ProjectScore row may not
    exist yet, and locking the Project row FOR UPDATE would block every annotation insert.
    """
    from quality.services.actions import rules_apply  # actions imports this module

    task_type = task_type_get(project.task_type)
    with transaction.atomic():
        _recompute_lock(project_id=project.pk)
        now = timezone.now()  # after the wait: a queued run is stamped later than the first
        config = quality_config_get(project=project)
        if not task_type.category_key:  # spans, boxes, free text, multi-label: the type's rule
            return typed_recompute(
                project=project,
                config=config,
                task_type=task_type,
                excluded=_excluded_worker_ids(project=project),
                now=now,
            )
        votes = _votes_load(project=project)
        excluded_ids = _excluded_worker_ids(project=project)
        consensus = signals = None
        for _ in range(MAX_RULE_ROUNDS):
            excluded = np.isin(votes.worker_ids, list(excluded_ids))
            consensus = engine.consensus_infer(
                votes, excluded=excluded, method=config.method, seed=project.pk
            )
            signals = engine.signals_compute(votes, consensus) if votes.n_workers else None
            if signals is None:
                break
            rules_apply(project=project, config=config, votes=votes, signals=signals)
            now_excluded = _excluded_worker_ids(project=project)
            if now_excluded == excluded_ids:
                break
            excluded_ids = now_excluded
        stats = engine.gold_stats(votes)
        states = _item_states(project=project, config=config, votes=votes, consensus=consensus)
        scores.item_scores_write(
            project=project, votes=votes, consensus=consensus, states=states, now=now
        )
        rates = engine.gold_rates_recent(votes, stats, _gold_policy(config))
        excluded = np.isin(votes.worker_ids, list(excluded_ids))
        scores.worker_scores_write(
            project=project,
            votes=votes,
            consensus=consensus,
            stats=stats,
            signals=signals,
            excluded=excluded,
            now=now,
        )
        scores.standings_write(
            project=project,
            config=config,
            votes=votes,
            consensus=consensus,
            rates=rates,
            excluded=excluded,
        )
        scores.skills_write(project=project, config=config, votes=votes, stats=stats)
        votes = scores.gold_retire(project=project, config=config, votes=votes)
        approval_decisions_apply(project=project, config=config)
        pool = engine.gold_pool(votes, rates=rates, active=~excluded) if full else None
        return scores.project_score_write(
            project=project,
            config=config,
            votes=votes,
            consensus=consensus,
            stats=stats,
            pool=pool,
            full=full,
            now=now,
        )


def _recompute_lock(*, project_id: int) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # Two int4 keys; project ids beyond 2**31 fold onto others, which only serialises more.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            [RECOMPUTE_LOCK_NAMESPACE, project_id & 0x7FFFFFFF],
        )


def _gold_policy(config: QualityConfig) -> GoldPolicy:
    onboarding = min(max(config.gold_rate_onboarding, 0.0), 0.99)
    return GoldPolicy(
        onboarding_rate=onboarding,
        floor=min(max(config.gold_rate_floor, 0.0), onboarding),
        onboarding_count=max(config.gold_onboarding_count, 1),
        accuracy_bar=min(max(config.gold_accuracy_bar, 1e-6), 1.0),
    )


def _excluded_worker_ids(*, project: Project) -> set[int]:
    return set(
        QualityAction.objects.filter(
            project_id=project.pk, undone_at__isnull=True, kind__in=EXCLUDING_KINDS
        ).values_list("worker_id", flat=True)
    )


# --- loading -----------------------------------------------------------------------------------


def _annotation_rows(*, project_id: int, key: str = "label") -> list[tuple[Any, ...]]:
    """(id, item, author, category or None, duration, epoch seconds, client key), by id.

    `key` is the task type's category key (label, choice, rating). Answers superseded by a
    label schema change are left out. On PostgreSQL one plain query where the database
    extracts the category and the epoch: for 300,000 annotations that is several times faster
    than Django's per-value converters.
    """
    if connection.vendor == "postgresql":
        table = Annotation._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, item_id, author_id, value->>%s, duration_ms, "  # noqa: S608
                f"EXTRACT(EPOCH FROM created_at)::float8, client_key FROM {table} "
                f"WHERE project_id = %s AND superseded_at IS NULL ORDER BY id",
                [key, project_id],
            )
            return cursor.fetchall()
    return [
        (*row[:5], row[5].timestamp(), row[6])
        for row in Annotation.objects.filter(project_id=project_id, superseded_at__isnull=True)
        .order_by("id")
        .values_list(
            "id",
            "item_id",
            "author_id",
            KT(f"value__{key}"),
            "duration_ms",
            "created_at",
            "client_key",
        )
    ]


def _votes_load(*, project: Project) -> Votes:
    """Read annotations, items and review decisions (three queries) and index them."""
    task_type = task_type_get(project.task_type)
    key = task_type.category_key
    rows = [
        (*row[:3], str(row[3]), *row[4:])
        for row in _annotation_rows(project_id=project.pk, key=key)
        if row[3] is not None
    ]
    items = list(
        Item.objects.filter(project_id=project.pk)
        .order_by("id")
        .values_list(
            "id",
            "is_gold",
            KT(f"gold__{key}"),
            "gold_retired",
            "target",
            "annotation_count",
            "priority",
        )
    )
    reviewed: dict[int, str] = {}
    for item_id, label in (
        ReviewDecision.objects.filter(project_id=project.pk)
        .order_by("id")
        .values_list("item_id", KT(f"value__{key}"))
    ):
        if label is not None:
            reviewed[item_id] = str(label)  # the latest decision wins

    configured = task_type.category_values(config=task_config_of(project))
    seen = {row[3] for row in rows} | set(reviewed.values())
    labels = configured + sorted(seen - set(configured))  # labels no longer in the set go last
    column = {label: index for index, label in enumerate(labels)}

    item_ids = np.fromiter((row[0] for row in items), dtype=np.int64, count=len(items))
    count = len(rows)
    raw_items = np.fromiter((row[1] for row in rows), dtype=np.int64, count=count)
    raw_workers = np.fromiter((row[2] for row in rows), dtype=np.int64, count=count)
    label_idx = np.fromiter((column[row[3]] for row in rows), dtype=np.int64, count=count)
    duration = np.fromiter((row[4] for row in rows), dtype=np.int64, count=count)
    stamps = np.fromiter((row[5] for row in rows), dtype=np.float64, count=count)
    devices: dict[str, int] = {}
    client = np.fromiter(
        (devices.setdefault(row[6], len(devices)) if row[6] else -1 for row in rows),
        dtype=np.int64,
        count=count,
    )
    item_idx = np.searchsorted(item_ids, raw_items)
    worker_ids, worker_idx = np.unique(raw_workers, return_inverse=True)

    # A correction is a new annotation: keep only each author's latest vote on an item.
    pair = item_idx * max(len(worker_ids), 1) + worker_idx
    _, last_reversed = np.unique(pair[::-1], return_index=True)
    keep = np.sort(count - 1 - last_reversed)

    gold_label_idx = np.array(
        [-1 if not row[1] else column.get(row[2] or "", -2) for row in items], dtype=np.int64
    )
    reviewed_idx = np.array(
        [column[reviewed[row[0]]] if row[0] in reviewed else -1 for row in items], dtype=np.int64
    )
    return Votes(
        labels=labels,
        item_ids=item_ids,
        worker_ids=worker_ids,
        item_idx=item_idx[keep],
        worker_idx=worker_idx[keep],
        label_idx=label_idx[keep],
        duration_ms=duration[keep],
        submitted_at=stamps[keep],
        client_code=client[keep],
        gold_label_idx=gold_label_idx,
        gold_retired=np.array([row[3] for row in items], dtype=bool),
        target=np.array([row[4] for row in items], dtype=np.int64),
        item_annotations=np.array([row[5] for row in items], dtype=np.int64),
        priority=np.array([row[6] for row in items], dtype=np.int64),
        reviewed=np.where(gold_label_idx == -1, reviewed_idx, -1),
        annotation_max_id=int(rows[-1][0]) if rows else 0,
    )


# --- items -------------------------------------------------------------------------------------


def _item_states(
    *, project: Project, config: QualityConfig, votes: Votes, consensus: Consensus
) -> np.ndarray:
    """Each item's state, after raising targets and priorities (adaptive overlap)."""
    from annotation.services import item_priorities_set, item_targets_raise

    n = votes.n_items
    counts = np.bincount(votes.item_idx, minlength=n)  # distinct workers with a vote
    regular = ~votes.is_gold & (votes.reviewed < 0)
    new_target, doubtful, review = overlap_decisions(
        confidence=np.where(regular, consensus.confidence, np.nan),
        annotation_count=counts,
        target=votes.target,
        threshold=config.confidence_threshold,
        max_overlap=config.max_overlap,
        review_enabled=config.review_enabled,
    )
    raised = np.flatnonzero(new_target > votes.target)
    if raised.size:
        item_targets_raise(
            project=project,
            targets=dict(
                zip(votes.item_ids[raised].tolist(), new_target[raised].tolist(), strict=True)
            ),
        )
    unsure = consensus.confidence < config.confidence_threshold
    collecting = regular & (counts < new_target)
    # More annotators asked: the target was raised (now or before) and doubt remains.
    waiting = collecting & unsure & ((new_target > project.overlap) | doubtful)
    states = np.full(n, State.CONFIDENT.value, dtype=object)
    states[collecting] = State.OPEN.value
    states[waiting] = State.DOUBTFUL.value
    # At the maximum overlap with review off: nothing more to ask, still in doubt.
    states[regular & ~collecting & unsure] = State.DOUBTFUL.value
    states[review] = State.REVIEW.value
    states[votes.reviewed >= 0] = State.REVIEWED.value

    # Doubtful items waiting for annotators go to reliable workers first.
    if not np.array_equal(waiting, votes.priority > 0):
        item_priorities_set(project=project, high=votes.item_ids[waiting].tolist())
    return states
