"""Write use-cases of the quality engine: scheduling and running the first-cut recompute.

A recompute replaces a project's ItemScore, WorkerScore and ProjectScore rows from its
annotations in one transaction, under a per-project lock, so results are always a consistent
snapshot and a crash leaves the previous snapshot in place.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import numpy as np
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models.fields.json import KT
from django.utils import timezone

from annotation.models import Annotation, Item, Project
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal, vote_shares
from quality.models import ItemScore, ProjectScore, WorkerScore
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


def _pending_key(project_id: int) -> str:
    return f"quality:recompute-pending:{project_id}"


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
        # Calls while the key exists are covered by the pending task, which reads data when
        # it starts.
        if not cache.add(key, 1, timeout=RECOMPUTE_PENDING_TTL_SECONDS):
            return
        # not in a transaction: this runs from transaction.on_commit, after the commit.
        quality_recompute_task.apply_async(args=(project_id,), countdown=RECOMPUTE_DELAY_SECONDS)
    except Exception:
        logger.exception("Could not schedule a quality recompute for project %s", project_id)
        with contextlib.suppress(Exception):
            cache.delete(key)


def quality_recompute_scheduled(*, project_id: int) -> ProjectScore | None:
    """Run a scheduled recompute: reopen the debounce window, then recompute (None if gone).

    The key is cleared *before* reading annotations, so any submission committed after this
    point schedules a new run instead of being lost.
    """
    cache.delete(_pending_key(project_id))
    project = Project.objects.filter(pk=project_id).first()
    if project is None:  # deleted after the task was enqueued: nothing to score
        return None
    return quality_recompute(project=project)


@dataclass(frozen=True)
class _Votes:
    """The project's current votes as parallel arrays, one entry per (item, author)."""

    labels: list[str]  # column order of the count matrix: the label set, then unknown labels
    item_ids: np.ndarray  # unique annotated item ids (sorted)
    worker_ids: np.ndarray  # unique author ids (sorted)
    item_idx: np.ndarray  # per vote: index into item_ids
    worker_idx: np.ndarray  # per vote: index into worker_ids
    label_idx: np.ndarray  # per vote: index into labels
    duration_ms: np.ndarray  # per vote
    gold_label_idx: np.ndarray  # per item: gold label index, -1 for regular items
    is_gold: np.ndarray  # per item: bool


def quality_recompute(*, project: Project) -> ProjectScore:
    """Recompute consensus, worker and project scores from all of the project's annotations.

    Idempotent: the same annotations always give the same rows. Holds a transaction-level
    PostgreSQL advisory lock on (RECOMPUTE_LOCK_NAMESPACE, project id) from before the read
    until commit, so two recomputes of one project never interleave and a waiting one reads
    what the first committed. An advisory lock, not a row lock: the ProjectScore row may not
    exist yet, and locking the Project row FOR UPDATE would block every annotation insert
    (they take FOR KEY SHARE on it through the foreign key). On SQLite (development only) the
    database's single writer lock serialises the writes instead.
    """
    with transaction.atomic():
        _recompute_lock(project_id=project.pk)
        now = timezone.now()  # after the wait: a queued run is stamped later than the first
        votes = _votes_load(project=project)
        counts = _count_matrix(votes)
        _item_scores_write(project=project, votes=votes, counts=counts, now=now)
        _worker_scores_write(project=project, votes=votes, counts=counts, now=now)
        return _project_score_write(project=project, votes=votes, counts=counts, now=now)


def _recompute_lock(*, project_id: int) -> None:
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        # Two int4 keys; project ids beyond 2**31 fold onto others, which only serialises more.
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)",
            [RECOMPUTE_LOCK_NAMESPACE, project_id & 0x7FFFFFFF],
        )


def _votes_load(*, project: Project) -> _Votes:
    """Read the project's annotations in one query and index them for NumPy."""
    rows = list(
        Annotation.objects.filter(project_id=project.pk)
        .order_by("id")
        .values_list("item_id", "author_id", KT("value__label"), "duration_ms")
    )
    rows = [row for row in rows if row[2] is not None]  # malformed values carry no vote
    gold = dict(
        Item.objects.filter(project_id=project.pk, is_gold=True).values_list(
            "id", KT("gold__label")
        )
    )
    configured = project.label_values
    seen = {row[2] for row in rows}
    labels = configured + sorted(seen - set(configured))  # labels no longer in the set go last
    column = {label: index for index, label in enumerate(labels)}

    count = len(rows)
    raw_items = np.fromiter((row[0] for row in rows), dtype=np.int64, count=count)
    raw_workers = np.fromiter((row[1] for row in rows), dtype=np.int64, count=count)
    label_idx = np.fromiter((column[row[2]] for row in rows), dtype=np.int64, count=count)
    duration = np.fromiter((row[3] for row in rows), dtype=np.int64, count=count)
    item_ids, item_idx = np.unique(raw_items, return_inverse=True)
    worker_ids, worker_idx = np.unique(raw_workers, return_inverse=True)

    # A correction is a new annotation: keep only each author's latest vote on an item.
    pair = item_idx * max(len(worker_ids), 1) + worker_idx
    _, last_reversed = np.unique(pair[::-1], return_index=True)
    keep = np.sort(count - 1 - last_reversed)

    # Per item: -1 for a regular item; for a gold item its answer's column, or -2 (matches no
    # vote) when the answer is missing or not a label.
    gold_label_idx = np.array(
        [column.get(gold[i] or "", -2) if i in gold else -1 for i in item_ids.tolist()],
        dtype=np.int64,
    )
    return _Votes(
        labels=labels,
        item_ids=item_ids,
        worker_ids=worker_ids,
        item_idx=item_idx[keep],
        worker_idx=worker_idx[keep],
        label_idx=label_idx[keep],
        duration_ms=duration[keep],
        gold_label_idx=gold_label_idx,
        is_gold=gold_label_idx != -1,
    )


def _count_matrix(votes: _Votes) -> np.ndarray:
    """items × labels vote counts."""
    width = len(votes.labels)
    flat = votes.item_idx * width + votes.label_idx
    return np.bincount(flat, minlength=len(votes.item_ids) * width).reshape(-1, width)


def _item_scores_write(
    *, project: Project, votes: _Votes, counts: np.ndarray, now: datetime
) -> None:
    """Upsert the consensus of every annotated item, writing only rows whose values changed.

    A burst of submissions changes a handful of items, so after the first run a recompute
    writes few rows; `ItemScore.computed_at` is therefore when the item's score last changed.
    """
    previous = {
        item_id: values
        for item_id, *values in ItemScore.objects.filter(project_id=project.pk).values_list(
            "item_id", "majority_label", "agreement", "annotation_count"
        )
    }
    winners, shares = vote_shares(counts)
    changed = []
    for item_id, winner, share, total in zip(
        votes.item_ids.tolist(),
        winners.tolist(),
        shares.tolist(),
        counts.sum(axis=1).tolist(),
        strict=True,
    ):
        label = votes.labels[winner]
        if previous.pop(item_id, None) == [label, share, total]:
            continue
        changed.append(
            ItemScore(
                item_id=item_id,
                project_id=project.pk,
                majority_label=label,
                agreement=share,
                annotation_count=total,
                computed_at=now,
            )
        )
    ItemScore.objects.bulk_create(
        changed,
        batch_size=UPSERT_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["item"],
        update_fields=["project", "majority_label", "agreement", "annotation_count", "computed_at"],
    )
    # What is left in `previous` are items that no longer have any annotation.
    stale = sorted(previous)
    for start in range(0, len(stale), UPSERT_BATCH_SIZE):
        ItemScore.objects.filter(item_id__in=stale[start : start + UPSERT_BATCH_SIZE]).delete()


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
    *, project: Project, votes: _Votes, counts: np.ndarray, now: datetime
) -> None:
    n_workers = len(votes.worker_ids)
    winners, _ = vote_shares(counts)
    totals = counts.sum(axis=1)

    on_gold = votes.is_gold[votes.item_idx]
    correct = on_gold & (votes.label_idx == votes.gold_label_idx[votes.item_idx])
    # Agreement with the majority only where a majority means something: regular items
    # with at least two votes.
    comparable = (~votes.is_gold & (totals >= 2))[votes.item_idx]
    agrees = comparable & (votes.label_idx == winners[votes.item_idx])

    def per_worker(mask: np.ndarray | None = None) -> list[int]:
        chosen = votes.worker_idx if mask is None else votes.worker_idx[mask]
        return np.bincount(chosen, minlength=n_workers).tolist()

    annotation_count, gold_seen, gold_correct = (
        per_worker(),
        per_worker(on_gold),
        per_worker(correct),
    )
    compared, agreed = per_worker(comparable), per_worker(agrees)
    medians = _group_medians(votes.duration_ms, votes.worker_idx, n_workers)
    scores = [
        WorkerScore(
            project_id=project.pk,
            worker_id=worker_id,
            annotation_count=annotation_count[w],
            gold_seen=gold_seen[w],
            gold_correct=gold_correct[w],
            majority_agreement=agreed[w] / compared[w] if compared[w] else None,
            median_duration_ms=None if np.isnan(medians[w]) else int(np.floor(medians[w] + 0.5)),
            computed_at=now,
        )
        for w, worker_id in enumerate(votes.worker_ids.tolist())
    ]
    WorkerScore.objects.bulk_create(
        scores,
        batch_size=UPSERT_BATCH_SIZE,
        update_conflicts=True,
        unique_fields=["project", "worker"],
        update_fields=[
            "annotation_count",
            "gold_seen",
            "gold_correct",
            "majority_agreement",
            "median_duration_ms",
            "computed_at",
        ],
    )
    WorkerScore.objects.filter(project_id=project.pk).exclude(computed_at=now).delete()


def _project_score_write(
    *, project: Project, votes: _Votes, counts: np.ndarray, now: datetime
) -> ProjectScore:
    regular = counts[~votes.is_gold]
    score, _ = ProjectScore.objects.update_or_create(
        project=project,
        defaults={
            "fleiss_kappa": fleiss_kappa(regular),
            "krippendorff_alpha": krippendorff_alpha_nominal(regular),
            "items_scored": len(votes.item_ids),
            "annotations_scored": len(votes.item_idx),
            "computed_at": now,
        },
    )
    return score
