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
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import BigIntegerField, Exists, FloatField, OuterRef, Subquery
from django.db.models.fields.json import KT, KeyTextTransform
from django.db.models.functions import Cast, Coalesce
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from annotation.models import Annotation, Item, Project
from quality.adaptive import GoldPolicy, overlap_decisions
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal, vote_shares
from quality.models import (
    ItemScore,
    ProjectScore,
    QualityAction,
    QualityConfig,
    ReviewDecision,
    WorkerScore,
)
from quality.services import engine
from quality.services.engine import Consensus, GoldStats, Votes, json_number
from quality.tasks import quality_recompute_task

logger = logging.getLogger(__name__)

# A burst of submissions within this window costs one recompute, started this long after the
# first of them (short: the Redis broker redelivers long ETAs, see STYLE §4).
RECOMPUTE_DELAY_SECONDS = 2
# Safety net: if a scheduled task is lost, the debounce key expires and the next submission
# schedules again. A task clears the key as soon as it starts, so this rarely matters.
RECOMPUTE_PENDING_TTL_SECONDS = 60
# First key of the two-key PostgreSQL advisory lock (the second is the project id). Any
# constant works as long as no other code uses it; this one spells "QR" (quality recompute).
RECOMPUTE_LOCK_NAMESPACE = 0x5152
UPSERT_BATCH_SIZE = 5000
# A post-submit recompute is a full one when the last full run is older than this.
FULL_RECOMPUTE_MAX_AGE = timedelta(minutes=10)
# Below this many scored annotations every post-submit run is a full one.
FULL_EVERY_RUN_BELOW = 50_000
# Rule actions that take a worker's labels out of consensus.
EXCLUDING_KINDS = (QualityAction.Kind.EXCLUDE, QualityAction.Kind.BLOCK)
# New exclusions refit the model within the same run, at most this many times.
MAX_RULE_ROUNDS = 3

State = ItemScore.State


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

    With Redis or the broker down the error is logged and the key dropped (best effort): the
    annotation is stored, and the next submission schedules the recompute again.
    """
    key = _pending_key(project_id)
    try:
        # cache.add is atomic (SET NX on Redis): only the first caller in a window enqueues.
        if not cache.add(key, 1, timeout=RECOMPUTE_PENDING_TTL_SECONDS):
            return
        quality_recompute_task.apply_async(args=(project_id,), countdown=RECOMPUTE_DELAY_SECONDS)
    except Exception:
        logger.exception("Could not schedule a quality recompute for project %s", project_id)
        with contextlib.suppress(Exception):
            cache.delete(key)


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
    """Recompute consensus, worker scores, actions and project scores of one project.

    Idempotent: the same annotations, actions and decisions always give the same rows, and a
    second run writes nothing but ProjectScore.computed_at. Holds a transaction-level
    PostgreSQL advisory lock on (RECOMPUTE_LOCK_NAMESPACE, project id) from before the read
    until commit, so two recomputes of one project never interleave and a waiting one reads
    what the first committed. An advisory lock, not a row lock: the ProjectScore row may not
    exist yet, and locking the Project row FOR UPDATE would block every annotation insert.
    """
    from quality.services.actions import rules_apply  # actions imports this module

    with transaction.atomic():
        _recompute_lock(project_id=project.pk)
        now = timezone.now()  # after the wait: a queued run is stamped later than the first
        config = quality_config_get(project=project)
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
        _item_scores_write(
            project=project, votes=votes, consensus=consensus, states=states, now=now
        )
        rates = engine.gold_rates_recent(votes, stats, _gold_policy(config))
        excluded = np.isin(votes.worker_ids, list(excluded_ids))
        _worker_scores_write(
            project=project,
            votes=votes,
            consensus=consensus,
            stats=stats,
            signals=signals,
            excluded=excluded,
            now=now,
        )
        _standings_write(
            project=project,
            config=config,
            votes=votes,
            consensus=consensus,
            rates=rates,
            excluded=excluded,
        )
        _skills_write(project=project, config=config, votes=votes, stats=stats)
        votes = _gold_retire(project=project, config=config, votes=votes)
        pool = engine.gold_pool(votes, rates=rates, active=~excluded) if full else None
        return _project_score_write(
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


def _annotation_rows(*, project_id: int) -> list[tuple[Any, ...]]:
    """(id, item, author, label or None, duration, epoch seconds, client key), by id.

    On PostgreSQL one plain query where the database extracts the label and the epoch: for
    300,000 annotations that is several times faster than Django's per-value converters.
    """
    if connection.vendor == "postgresql":
        table = Annotation._meta.db_table
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT id, item_id, author_id, value->>'label', duration_ms, "  # noqa: S608
                f"EXTRACT(EPOCH FROM created_at)::float8, client_key FROM {table} "
                f"WHERE project_id = %s ORDER BY id",
                [project_id],
            )
            return cursor.fetchall()
    return [
        (*row[:5], row[5].timestamp(), row[6])
        for row in Annotation.objects.filter(project_id=project_id)
        .order_by("id")
        .values_list(
            "id",
            "item_id",
            "author_id",
            KT("value__label"),
            "duration_ms",
            "created_at",
            "client_key",
        )
    ]


def _votes_load(*, project: Project) -> Votes:
    """Read annotations, items and review decisions (three queries) and index them."""
    rows = [row for row in _annotation_rows(project_id=project.pk) if row[3] is not None]
    items = list(
        Item.objects.filter(project_id=project.pk)
        .order_by("id")
        .values_list(
            "id",
            "is_gold",
            KT("gold__label"),
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
        .values_list("item_id", KT("value__label"))
    ):
        if label is not None:
            reviewed[item_id] = label  # the latest decision wins

    configured = project.label_values
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


def _item_scores_write(
    *,
    project: Project,
    votes: Votes,
    consensus: Consensus,
    states: np.ndarray,
    now: datetime,
) -> None:
    """Upsert the score of every voted item, writing only rows whose values changed.

    `majority_label`/`agreement` stay the plain vote over every vote (excluded workers'
    too); `label`/`confidence`/`posterior` are the model's. `computed_at` is therefore when
    the item's score last changed. The comparison with the stored rows is vectorised: the
    posteriors are read back per label by the database, not parsed as JSON in Python.
    """
    labels = votes.labels
    width = len(labels) or 1
    counts = np.bincount(
        votes.item_idx * width + votes.label_idx, minlength=votes.n_items * width
    ).reshape(-1, width)
    winners, shares = vote_shares(counts)
    totals = counts.sum(axis=1)
    decimals = engine.PROBABILITY_DECIMALS
    chosen = consensus.label
    posterior = np.round(consensus.posteriors[:, : len(labels)], decimals)
    posterior[chosen < 0] = np.nan  # no consensus: an empty posterior
    confidence = np.round(consensus.confidence, decimals)
    names = np.array([*labels, ""], dtype=object)  # index -1: no consensus
    majority = names[winners]
    label = names[chosen]

    columns = {
        f"p{c}": Cast(KeyTextTransform(name, "posterior"), FloatField())
        for c, name in enumerate(labels)
    }
    rows = list(
        ItemScore.objects.filter(project_id=project.pk)
        .annotate(**columns)
        .values_list(
            "item_id",
            "majority_label",
            "agreement",
            "annotation_count",
            "label",
            "confidence",
            "method",
            "state",
            *columns,
        )
    )
    voted = totals > 0
    same = np.zeros(votes.n_items, dtype=bool)
    stale: list[int] = []
    if rows:
        table = np.array(rows, dtype=object)
        ids = table[:, 0].astype(np.int64)
        at = np.minimum(np.searchsorted(votes.item_ids, ids), max(votes.n_items - 1, 0))
        known = (votes.item_ids[at] == ids) if votes.n_items else np.zeros(ids.size, bool)
        stale = ids[~known | ~voted[at]].tolist()  # items whose annotations are all gone
        at, table = at[known], table[known]
        stored = table[:, 8:].astype(np.float64) if labels else np.empty((at.size, 0))
        fresh = posterior[at]
        same_posterior = ((stored == fresh) | (np.isnan(stored) & np.isnan(fresh))).all(axis=1)
        same[at] = (
            (table[:, 1] == majority[at])
            & (table[:, 2].astype(np.float64) == shares[at])
            & (table[:, 3].astype(np.int64) == totals[at])
            & (table[:, 4] == label[at])
            & (table[:, 5].astype(np.float64) == confidence[at])
            & (table[:, 6] == consensus.method)
            & (table[:, 7] == states[at])
            & same_posterior
        )
    changed = [
        ItemScore(
            item_id=int(votes.item_ids[i]),
            project_id=project.pk,
            majority_label=majority[i],
            agreement=float(shares[i]),
            annotation_count=int(totals[i]),
            label=label[i],
            confidence=float(confidence[i]),
            posterior={}
            if chosen[i] < 0
            else dict(zip(labels, posterior[i].tolist(), strict=True)),
            method=consensus.method,
            state=str(states[i]),
            computed_at=now,
        )
        for i in np.flatnonzero(voted & ~same).tolist()
    ]
    ItemScore.objects.bulk_create(
        changed,
        batch_size=UPSERT_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["item"],
        update_fields=[
            "project",
            "majority_label",
            "agreement",
            "annotation_count",
            "label",
            "confidence",
            "posterior",
            "method",
            "state",
            "computed_at",
        ],
    )
    for begin in range(0, len(stale), UPSERT_BATCH_SIZE):
        ItemScore.objects.filter(item_id__in=stale[begin : begin + UPSERT_BATCH_SIZE]).delete()


# --- workers -----------------------------------------------------------------------------------


def _group_medians(values: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Median of `values` per group id in [0, n_groups); NaN for empty groups."""
    order = np.lexsort((values, groups))
    ordered = values[order].astype(np.float64)
    sizes = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    medians = np.full(n_groups, np.nan)
    present = sizes > 0
    low = starts[present] + (sizes[present] - 1) // 2
    high = starts[present] + sizes[present] // 2
    medians[present] = (ordered[low] + ordered[high]) / 2.0
    return medians


def _worker_scores_write(
    *,
    project: Project,
    votes: Votes,
    consensus: Consensus,
    stats: GoldStats,
    signals: Any,
    excluded: np.ndarray,
    now: datetime,
) -> None:
    n_workers = votes.n_workers
    width = len(votes.labels) or 1
    counts = np.bincount(
        votes.item_idx * width + votes.label_idx, minlength=votes.n_items * width
    ).reshape(-1, width)
    winners, _ = vote_shares(counts)
    totals = counts.sum(axis=1)
    # Agreement with the plain majority only where a majority means something: regular items
    # with at least two votes.
    comparable = (~votes.is_gold & (totals >= 2))[votes.item_idx]
    agrees = comparable & (votes.label_idx == winners[votes.item_idx])

    def per_worker(mask: np.ndarray | None = None) -> list[int]:
        chosen = votes.worker_idx if mask is None else votes.worker_idx[mask]
        return np.bincount(chosen, minlength=n_workers).tolist()

    annotation_count, compared, agreed = per_worker(), per_worker(comparable), per_worker(agrees)
    medians = _group_medians(votes.duration_ms, votes.worker_idx, n_workers)
    fields = (
        "annotation_count",
        "gold_seen",
        "gold_correct",
        "majority_agreement",
        "median_duration_ms",
        "gold_low",
        "gold_high",
        "gold_recent",
        "class_recall",
        "reliability",
        "signals",
        "excluded",
    )
    previous = {
        worker_id: tuple(values)
        for worker_id, *values in WorkerScore.objects.filter(project_id=project.pk).values_list(
            "worker_id", *fields
        )
    }
    changed = []
    for w, worker_id in enumerate(votes.worker_ids.tolist()):
        recall = {
            votes.labels[c]: round(float(r), engine.PROBABILITY_DECIMALS)
            for c, r in enumerate(stats.recall[w])
            if np.isfinite(r)
        }
        values = (
            annotation_count[w],
            int(stats.seen[w]),
            int(stats.correct[w]),
            agreed[w] / compared[w] if compared[w] else None,
            None if np.isnan(medians[w]) else int(np.floor(medians[w] + 0.5)),
            json_number(stats.low[w]),
            json_number(stats.high[w]),
            json_number(stats.recent[w]),
            recall,
            json_number(consensus.reliability[w]),
            _signals_json(signals, w),
            bool(excluded[w]),
        )
        if previous.pop(worker_id, None) == values:
            continue
        changed.append(
            WorkerScore(
                project_id=project.pk,
                worker_id=worker_id,
                computed_at=now,
                **dict(zip(fields, values, strict=True)),
            )
        )
    WorkerScore.objects.bulk_create(
        changed,
        batch_size=UPSERT_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["project", "worker"],
        update_fields=[*fields, "computed_at"],
    )
    if previous:  # workers whose every annotation is gone
        WorkerScore.objects.filter(project_id=project.pk, worker_id__in=list(previous)).delete()


def _signals_json(signals: Any, w: int) -> dict[str, Any]:
    if signals is None:
        return {}
    out: dict[str, Any] = {}
    for name, values in signals.values.items():
        out[name] = json_number(values[w])
        out[f"{name}_n"] = int(signals.evidence[name][w])
    return out


def _standings_write(
    *,
    project: Project,
    config: QualityConfig,
    votes: Votes,
    consensus: Consensus,
    rates: np.ndarray,
    excluded: np.ndarray,
) -> None:
    """Adaptive gold rate and reliability per worker, for the assignment engine."""
    from crowd.models import WorkerStanding
    from crowd.services import worker_standings_set

    reliable = engine.reliable_mask(consensus, votes, bar=config.reliable_bar) & ~excluded
    current = {
        worker_id: (rate, flag)
        for worker_id, rate, flag in WorkerStanding.objects.filter(
            project_id=project.pk
        ).values_list("worker_id", "gold_rate", "reliable")
    }
    wanted = {
        worker_id: (json_number(rate), bool(flag))
        for worker_id, rate, flag in zip(
            votes.worker_ids.tolist(), rates.tolist(), reliable.tolist(), strict=True
        )
    }
    changed = {k: v for k, v in wanted.items() if current.get(k) != v}
    if changed:
        worker_standings_set(project=project, standings=changed)


def skill_name(*, project: Project, config: QualityConfig) -> str:
    return config.skill_name or f"project-{project.pk}"


def _skills_write(
    *, project: Project, config: QualityConfig, votes: Votes, stats: GoldStats
) -> None:
    """Skill score per worker with gold answers: 100 × the Beta(1, 1) posterior mean."""
    from crowd.models import WorkerSkill
    from crowd.services import worker_skills_set

    name = skill_name(project=project, config=config)
    answered = np.flatnonzero(stats.seen > 0)
    if not answered.size:
        return
    current = {
        worker_id: (score, evidence)
        for worker_id, score, evidence in WorkerSkill.objects.filter(
            name=name, worker_id__in=votes.worker_ids[answered].tolist()
        ).values_list("worker_id", "score", "evidence")
    }
    scores = {}
    for w in answered.tolist():
        score = round(100.0 * (stats.correct[w] + 1) / (stats.seen[w] + 2), 2)
        scores[int(votes.worker_ids[w])] = (score, int(stats.seen[w]))
    changed = {k: v for k, v in scores.items() if current.get(k) != v}
    if changed:
        worker_skills_set(name=name, scores=changed)


def _gold_retire(*, project: Project, config: QualityConfig, votes: Votes) -> Votes:
    """Retire gold items seen by at least `gold_retire_after` distinct workers."""
    from annotation.services import gold_items_retire

    seen = np.bincount(votes.item_idx, minlength=votes.n_items)
    due = votes.is_gold & ~votes.gold_retired & (seen >= max(config.gold_retire_after, 1))
    if not due.any():
        return votes
    gold_items_retire(project=project, item_ids=votes.item_ids[due].tolist())
    return dataclasses.replace(votes, gold_retired=votes.gold_retired | due)


# --- project -----------------------------------------------------------------------------------


def _project_score_write(
    *,
    project: Project,
    config: QualityConfig,
    votes: Votes,
    consensus: Consensus,
    stats: GoldStats,
    pool: dict[str, Any] | None,
    full: bool,
    now: datetime,
) -> ProjectScore:
    width = len(votes.labels) or 1
    counts = np.bincount(
        votes.item_idx * width + votes.label_idx, minlength=votes.n_items * width
    ).reshape(-1, width)
    voted = counts.sum(axis=1) > 0
    regular = counts[voted & ~votes.is_gold]
    previous = (
        ProjectScore.objects.filter(project_id=project.pk).values_list("details", flat=True).first()
    )
    method = {
        "method": consensus.method,
        "method_requested": config.method,
        "method_reason": consensus.reason,
    }
    if full:
        details: dict[str, Any] = {
            "full_at": now.isoformat(),
            **method,
            **engine.full_details(
                votes,
                consensus,
                stats,
                ordinal=project.task_type == "rating",
                pool=pool or {},
            ),
            "annotation_max_id": votes.annotation_max_id,
        }
    else:
        details = {**(previous or {}), **method}
    score, _ = ProjectScore.objects.update_or_create(
        project=project,
        defaults={
            "fleiss_kappa": fleiss_kappa(regular),
            "krippendorff_alpha": krippendorff_alpha_nominal(regular),
            "items_scored": int(voted.sum()),
            "annotations_scored": len(votes.item_idx),
            "details": details,
            "computed_at": now,
        },
    )
    return score
