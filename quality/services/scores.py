"""Writing a recompute's results: item, worker and project scores, standings, skills, gold.

Each writer compares with what is stored and writes only rows whose values changed, in batches
of UPSERT_BATCH_SIZE, so a recompute after a burst of submissions touches few rows.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import FloatField
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from annotation.models import Project
from annotation.task_types import task_type_get
from quality.metrics import fleiss_kappa, krippendorff_alpha_nominal, vote_shares
from quality.models import (
    ItemScore,
    ProjectScore,
    QualityConfig,
    WorkerScore,
)
from quality.services import engine
from quality.services.engine import Consensus, GoldStats, Votes, json_number

UPSERT_BATCH_SIZE = 5000


def item_scores_write(
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


def worker_scores_write(
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


def standings_write(
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


def skills_write(
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


def gold_retire(*, project: Project, config: QualityConfig, votes: Votes) -> Votes:
    """Retire gold items seen by at least `gold_retire_after` distinct workers."""
    from annotation.services import gold_items_retire

    seen = np.bincount(votes.item_idx, minlength=votes.n_items)
    due = votes.is_gold & ~votes.gold_retired & (seen >= max(config.gold_retire_after, 1))
    if not due.any():
        return votes
    gold_items_retire(project=project, item_ids=votes.item_ids[due].tolist())
    return dataclasses.replace(votes, gold_retired=votes.gold_retired | due)


# --- project -----------------------------------------------------------------------------------


def project_score_write(
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
                ordinal=task_type_get(project.task_type).ordinal,
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
